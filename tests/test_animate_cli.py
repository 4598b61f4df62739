"""lia-animate end to end on generated inputs with a tiny checkpoint (as a user runs it)."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import moving_frames, read_video, write_video

from lia_live.model.checkpoint import save_generator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def inputs(tmp_path, tiny_generator, astronaut):
    ck = save_generator(tiny_generator, tmp_path / "tiny.safetensors")
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    frames = moving_frames(astronaut, 12)
    video = write_video(tmp_path / "drive.mp4", frames, fps=10, audio_seconds=1.2)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames[:7]):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return {"ck": ck, "src": src, "video": video, "folder": folder, "tmp": tmp_path}


def animate(*args):
    """Run lia-animate (eager backend unless the test names another: argparse keeps the last)."""
    return subprocess.run([sys.executable, "-m", "lia_live.cli.animate", "--no-progress", "--backend", "eager",
                           *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_video_in_mp4_out_with_audio(inputs):
    out = inputs["tmp"] / "out.mp4"
    r = animate("--source", inputs["src"], "--driving", inputs["video"], "--checkpoint", inputs["ck"],
                "--output", out)
    assert r.returncode == 0, r.stderr
    frames, fps, has_audio = read_video(out)
    assert len(frames) == 12 and frames[0].shape == (64, 64, 3)
    assert fps == pytest.approx(10, abs=0.01)
    assert has_audio


def test_frame_folder_to_png_dir_matches_animator(inputs, tiny_generator, astronaut):
    out = inputs["tmp"] / "pngs"
    r = animate("--source", inputs["src"], "--driving", inputs["folder"], "--checkpoint", inputs["ck"],
                "--output", out, "--mode", "absolute")
    assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(7)]
    # lossless: identical to the library's own output for the same frame
    from lia_live.animator import Animator

    anim = Animator(tiny_generator)
    anim.set_source(astronaut)
    frame = cv2.cvtColor(cv2.imread(str(inputs["folder"] / "f003.png")), cv2.COLOR_BGR2RGB)
    want = anim.step(frame)
    got = cv2.cvtColor(cv2.imread(str(files[3])), cv2.COLOR_BGR2RGB)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_auto_backend_is_announced_and_matches_eager(inputs, monkeypatch):
    from lia_live.backends import resolve_backend_name

    engines = inputs["tmp"] / "engines"
    monkeypatch.setenv("LIA_ENGINE_DIR", str(engines))  # the subprocess builds its engines there
    outs = {}
    for backend, expected in (("eager", "eager"), ("auto", resolve_backend_name("auto", "cpu"))):
        outs[backend] = inputs["tmp"] / f"b_{backend}"
        r = animate("--source", inputs["src"], "--driving", inputs["folder"], "--checkpoint", inputs["ck"],
                    "--output", outs[backend], "--max-frames", "3", "--backend", backend)
        assert r.returncode == 0, r.stderr
        assert f"backend {expected} " in r.stderr
    if resolve_backend_name("auto", "cpu") == "onnxruntime":
        assert len(list(engines.glob("*.onnx"))) == 2  # exported into the engine cache, not the checkout
    a = [cv2.imread(str(p)).astype(int) for p in sorted(outs["eager"].iterdir())]
    b = [cv2.imread(str(p)).astype(int) for p in sorted(outs["auto"].iterdir())]
    assert len(a) == len(b) == 3
    assert max(np.abs(x - y).max() for x, y in zip(a, b)) <= 1


def test_relative_and_absolute_differ_and_first_relative_frame_has_no_motion(inputs):
    rel, ab = inputs["tmp"] / "rel", inputs["tmp"] / "abs"
    for mode, out in (("relative", rel), ("absolute", ab)):
        r = animate("--source", inputs["src"], "--driving", inputs["folder"], "--checkpoint", inputs["ck"],
                    "--output", out, "--mode", mode, "--max-frames", "3")
        assert r.returncode == 0, r.stderr
        assert len(list(out.iterdir())) == 3
    a = cv2.imread(str(rel / "00002.png")).astype(int)
    b = cv2.imread(str(ab / "00002.png")).astype(int)
    assert np.abs(a - b).mean() > 0.5


def test_manipulation_writes_steps_frames(inputs):
    out = inputs["tmp"] / "manip"
    r = animate("--source", inputs["src"], "--checkpoint", inputs["ck"], "--output", out,
                "--manipulate", "2", "--range", "-3", "3", "--steps", "5")
    assert r.returncode == 0, r.stderr
    imgs = [cv2.imread(str(p)).astype(int) for p in sorted(out.iterdir())]
    assert len(imgs) == 5
    assert np.abs(imgs[0] - imgs[-1]).mean() > 0.5  # walking the direction changes the image
    bad = animate("--source", inputs["src"], "--checkpoint", inputs["ck"], "--output", inputs["tmp"] / "m2",
                  "--manipulate", "99")
    assert bad.returncode == 2 and "direction index in [0, 7]" in bad.stderr


@pytest.mark.parametrize("case,needle", [
    ("no_source", "source image not found"),
    ("no_driving", "driving video or frame folder not found"),
    ("exists", "output already exists"),
    ("bad_video", "cannot read video"),
    ("cuda", "sees no CUDA GPU"),
])
def test_user_errors_are_one_line_exit_2(inputs, case, needle):
    tmp = inputs["tmp"]
    args = {"--source": inputs["src"], "--driving": inputs["video"], "--checkpoint": inputs["ck"],
            "--output": tmp / "o.mp4"}
    extra = []
    if case == "no_source":
        args["--source"] = tmp / "missing.png"
    elif case == "no_driving":
        args["--driving"] = tmp / "missing.mp4"
    elif case == "exists":
        (tmp / "o.mp4").write_bytes(b"user's file")
    elif case == "bad_video":
        bad = tmp / "bad.mp4"
        bad.write_bytes(b"not a video at all")
        args["--driving"] = bad
    elif case == "cuda":
        extra = ["--device", "cuda"]
    r = animate(*[x for kv in args.items() for x in kv], *extra)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    if case == "exists":
        assert (tmp / "o.mp4").read_bytes() == b"user's file"


def test_no_checkpoint_anywhere_says_where_to_put_one(inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("LIA_CHECKPOINT", raising=False)
    from lia_live import runtime

    monkeypatch.setattr(runtime, "demo_checkpoint", lambda: None)
    monkeypatch.chdir(tmp_path)
    from lia_live.cli.animate import main

    code = main(["--source", str(inputs["src"]), "--driving", str(inputs["video"]), "--output", "o.mp4"])
    assert code == 2
