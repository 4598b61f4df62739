"""Never lie, never lose work: one test per class of failure (issue 10).

Classes: full disk, --overwrite of folders, signals against a real child process, read-only / impossible
output places, odd numbers on the command line, damaged checkpoints and weights, odd images, unsupported
devices, state left by a failed lia-eval run, help texts.

Read-only folders and full disks: as root, permission bits do not stop writes, so these tests mount a small
tmpfs (read-only, or 256 KiB) when ``mount`` works; otherwise a read-only folder is made with ``chmod`` (as a
normal user) and a full disk is simulated by making every file write fail with ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from livedata import count_video_frames
from media import moving_frames, write_video

from lia_live.errors import CheckpointError, UserError
from lia_live.fsutil import PARTIAL_MARK, atomic_dir, check_output_path
from lia_live.model.checkpoint import save_generator

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# -- helpers ------------------------------------------------------------------------------------------
def _mount_tmpfs(where: Path, opts: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture()
def readonly_dir(tmp_path):
    """A folder nothing can be written to: a read-only tmpfs (root) or a 0555 folder (normal user)."""
    ro = tmp_path / "ro"
    if _mount_tmpfs(ro, "ro,size=64k"):
        yield ro
        _umount(ro)
    elif os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
    else:
        pytest.skip("running as root without mount: no way to make a read-only folder")


@pytest.fixture()
def full_disk(tmp_path, monkeypatch):
    """(folder, how): a 256 KiB tmpfs ('tmpfs'), or a folder whose file writes fail with ENOSPC ('injected')."""
    small = tmp_path / "small"
    if _mount_tmpfs(small, "size=256k"):
        yield small, "tmpfs"
        _umount(small)
        return
    small.mkdir()
    import builtins

    real_open = builtins.open
    budget = {"bytes": 200_000}

    class Limited:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            budget["bytes"] -= len(data)
            if budget["bytes"] < 0:
                raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
            return self.f.write(data)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def limited_open(file, mode="r", *a, **kw):
        f = real_open(file, mode, *a, **kw)
        return Limited(f) if "w" in mode and str(file).startswith(str(small)) else f

    monkeypatch.setattr(builtins, "open", limited_open)
    yield small, "injected"


def leftovers(folder: Path) -> list[str]:
    """Hidden partial files/folders anywhere below ``folder``."""
    return [p.name for p in folder.rglob("*") if PARTIAL_MARK in p.name]


def noise(n: int, size: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def run_cli(module: str, *args, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


def one_line_exit_2(r: subprocess.CompletedProcess | tuple[int, str], needle: str, alone: bool = True) -> None:
    """Exit 2 with one error line holding ``needle``; ``alone``: nothing else was printed (it failed before
    any work; after the model was announced, that announcement line may precede it)."""
    rc, err = (r.returncode, r.stderr) if isinstance(r, subprocess.CompletedProcess) else r
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and needle in lines[-1], err
    assert len(lines) == 1 if alone else sum(": error:" in ln for ln in lines) == 1, err


@pytest.fixture()
def inputs(tmp_path, tiny_generator, astronaut):
    ck = save_generator(tiny_generator, tmp_path / "tiny.safetensors")
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    frames = moving_frames(astronaut, 20)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return {"ck": ck, "src": src, "folder": folder, "frames": frames, "tmp": tmp_path}


def animate_args(inputs, output, *extra):
    return ["--source", inputs["src"], "--driving", inputs["folder"], "--checkpoint", inputs["ck"],
            "--output", output, "--backend", "eager", "--device", "cpu", "--no-progress", *extra]


# -- class 1: full disk -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_full_disk_is_an_error_and_leaves_nothing(full_disk, kind):
    from lia_live.io import open_writer

    folder, how = full_disk
    target = folder / ("o.mp4" if kind == "mp4" else "pngs")
    w = open_writer(target, 25)
    with pytest.raises(UserError, match="no space left on device") as e:
        for f in noise(400 if kind == "mp4" else 100):
            w.write(f)
        w.close()
    assert "nothing was kept" in str(e.value)
    assert not target.exists() and leftovers(folder) == [] and list(folder.iterdir()) == [], how


def test_lia_animate_on_a_full_disk_exits_2_and_keeps_nothing(inputs, tmp_path):
    tiny = tmp_path / "tiny_fs"
    if not _mount_tmpfs(tiny, "size=4k"):
        pytest.skip("needs mount (root) for a real 4 KiB file system; the writers' own test injects the failure")
    try:
        big = inputs["tmp"] / "big"
        big.mkdir()
        for i, f in enumerate(noise(120, 64)):
            cv2.imwrite(str(big / f"{i:03d}.png"), f)
        for out in (tiny / "o.mp4", tiny / "pngs"):
            r = run_cli("lia_live.cli.animate", *animate_args({**inputs, "folder": big}, out))
            one_line_exit_2(r, "no space left on device", alone=False)
            assert "nothing was kept" in r.stderr and list(tiny.iterdir()) == [], r.stderr
    finally:
        _umount(tiny)


# -- class 2: --overwrite replaces whole outputs, only on success ----------------------------------------
def test_overwrite_replaces_a_png_folder_whole_and_only_on_success(tmp_path):
    from lia_live.io import open_writer

    out = tmp_path / "pngs"
    w = open_writer(out, 25)
    for f in noise(10, 32):
        w.write(f)
    w.close()
    assert len(list(out.iterdir())) == 10
    with pytest.raises(UserError, match="already exists"):
        open_writer(out, 25)
    w = open_writer(out, 25, overwrite=True)  # a failed overwrite keeps the old folder whole
    w.write(noise(1, 32)[0])
    w.abort()
    assert len(list(out.iterdir())) == 10 and leftovers(tmp_path) == []
    w = open_writer(out, 25, overwrite=True)
    for f in noise(3, 32, seed=1):
        w.write(f)
    assert len(list(out.iterdir())) == 10  # untouched until the new one is complete
    w.close()
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert leftovers(tmp_path) == []


def test_atomic_dir_replaces_or_refuses(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(UserError, match="already exists"):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old.txt"] and leftovers(tmp_path) == []
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and leftovers(tmp_path) == []


# -- class 3: signals against a real child process ----------------------------------------------------------
def _start_and_wait_for_frames(args: list, min_frames: int = 2) -> tuple[subprocess.Popen, list[str]]:
    """Start lia-animate with its progress bar on and return once it reports ``min_frames`` rendered."""
    proc = subprocess.Popen([sys.executable, "-m", "lia_live.cli.animate", *map(str, args)], cwd=ROOT, env=ENV,
                            stderr=subprocess.PIPE, text=True)
    chunks: list[str] = []
    ready = threading.Event()

    def reader():
        buf = ""
        while True:
            c = proc.stderr.read(1)
            if not c:
                ready.set()
                return
            buf += c
            chunks.append(c)
            if c in "\r\n":
                if f"| {min_frames}/" in buf or any(f"| {k}/" in buf for k in range(min_frames, min_frames + 50)):
                    ready.set()
                buf = ""

    threading.Thread(target=reader, daemon=True).start()
    assert ready.wait(300), "".join(chunks)
    return proc, chunks


def test_sigterm_gives_a_shorter_playable_mp4_and_exit_143(inputs):
    out = inputs["tmp"] / "o.mp4"
    long = inputs["tmp"] / "long"
    long.mkdir()
    for i in range(400):
        cv2.imwrite(str(long / f"{i:04d}.png"), cv2.cvtColor(inputs["frames"][i % 20], cv2.COLOR_RGB2BGR))
    args = [a for a in animate_args({**inputs, "folder": long}, out) if a != "--no-progress"]
    proc, chunks = _start_and_wait_for_frames(args)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(120)
    err = "".join(chunks)
    assert rc == 143, err
    assert "SIGTERM" in err and "stopped early" in err and "Traceback" not in err
    n = count_video_frames(out)
    assert 2 <= n < 400, err
    assert f"wrote {n} frames" in err
    assert leftovers(inputs["tmp"]) == []


def test_second_ctrl_c_keeps_nothing(inputs, monkeypatch):
    """A second Ctrl-C (KeyboardInterrupt from the Stopper) mid-run: exit 130, no output, no partial file."""
    from lia_live import offline
    from lia_live.cli.animate import main

    real = offline.animate_video

    def interrupted(*a, **kw):
        for i, f in enumerate(real(*a, **kw)):
            if i == 3:
                raise KeyboardInterrupt
            yield f

    monkeypatch.setattr(offline, "animate_video", interrupted)
    for out in (inputs["tmp"] / "o.mp4", inputs["tmp"] / "pngs"):
        assert main([str(a) for a in animate_args(inputs, out)]) == 130
        assert not out.exists() and leftovers(inputs["tmp"]) == []


def test_error_mid_run_keeps_nothing(inputs, monkeypatch, capsys):
    """A failure after some frames (here: a frame that cannot be read) removes what was started."""
    bad = inputs["folder"] / "f010.png"
    bad.write_bytes(b"")  # 0-byte frame in the middle
    from lia_live.cli.animate import main

    for out in (inputs["tmp"] / "o.mp4", inputs["tmp"] / "pngs"):
        rc = main([str(a) for a in animate_args(inputs, out)])
        one_line_exit_2((rc, capsys.readouterr().err), f"frame is an empty file: {bad}", alone=False)
        assert not out.exists() and leftovers(inputs["tmp"]) == []


# -- class 4: places that cannot be written --------------------------------------------------------------
def test_check_output_path_refuses_impossible_places(tmp_path, readonly_dir):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="below a file"):
        check_output_path(f / "out.mp4")
    with pytest.raises(UserError, match="is a folder"):
        check_output_path(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        check_output_path(f, overwrite=True, kind="dir")
    with pytest.raises(UserError, match="already exists"):
        check_output_path(f)
    with pytest.raises(UserError, match="not writable"):
        check_output_path(readonly_dir / "o.mp4")
    with pytest.raises(UserError, match="not writable"):
        check_output_path(readonly_dir / "new" / "deeper", kind="dir")
    assert check_output_path(f, overwrite=True) == f
    assert list(readonly_dir.iterdir()) == []


def test_check_writer_path_creates_nothing(tmp_path):
    from lia_live.io import check_writer_path

    assert check_writer_path(tmp_path / "new" / "pngs") == tmp_path / "new" / "pngs"
    with pytest.raises(UserError, match="output folder does not exist"):
        check_writer_path(tmp_path / "new" / "o.mp4")
    with pytest.raises(UserError, match="must end in .mp4"):
        check_writer_path(tmp_path / "o.avi")
    (tmp_path / "o.mp4").write_bytes(b"user's")
    with pytest.raises(UserError, match="already exists"):
        check_writer_path(tmp_path / "o.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


def test_check_driving_for_dry_runs(inputs, tmp_path):
    from lia_live.io.video import check_driving

    check_driving("0")
    check_driving("rtsp://camera.local/stream")
    check_driving(str(inputs["folder"]))
    with pytest.raises(UserError, match="driving video or frame folder not found"):
        check_driving(str(tmp_path / "missing.mp4"))


def test_every_tool_refuses_a_read_only_output_in_one_line(inputs, readonly_dir, tmp_path):
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, readonly_dir / "o.mp4"))
    one_line_exit_2(r, "not writable")
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, readonly_dir / "pngs"))
    one_line_exit_2(r, "not writable")
    r = run_cli("lia_live.cli.evaluate", "--checkpoint", inputs["ck"], "--data", inputs["folder"],
                "--out", readonly_dir / "eval", "--metrics", "l1", "--domain", "face", "--no-progress")
    one_line_exit_2(r, "not writable")
    r = run_cli("lia_live.cli.live", "convert", inputs["ck"], readonly_dir / "c.safetensors")
    one_line_exit_2(r, "not writable")
    data = tmp_path / "data"
    from traindata import write_png_clips

    write_png_clips(data, n_clips=2, n_frames=3)
    r = run_cli("train.run", "--preset", "tiny", "--data", data, "--out", readonly_dir / "run", "--iters", "1",
                "--no-progress")
    one_line_exit_2(r, "not writable")
    f = tmp_path / "plain.txt"
    f.write_text("x")
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, f / "o.mp4"))
    one_line_exit_2(r, "below a file")
    # a read-only working folder is fine when the output goes elsewhere
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, tmp_path / "elsewhere.mp4"), cwd=readonly_dir)
    assert r.returncode == 0, r.stderr


# -- class 5: numbers: nan, inf and out-of-range refused at parse time, one place ------------------------------
@pytest.mark.parametrize("module,args", [
    ("lia_live.cli.animate", ["--fps", "nan"]),
    ("lia_live.cli.animate", ["--fps", "inf"]),
    ("lia_live.cli.animate", ["--fps", "-5"]),
    ("lia_live.cli.animate", ["--motion-power", "nan"]),
    ("lia_live.cli.animate", ["--range", "nan", "3"]),
    ("lia_live.cli.live", ["--fps", "nan"]),
    ("lia_live.cli.live", ["--camera-fps", "nan"]),
    ("lia_live.cli.live", ["--ease", "nan"]),
    ("lia_live.cli.live", ["--stats-every", "inf"]),
    ("lia_live.cli.live", ["--motion-power", "nan"]),
    ("train.run", ["--lr", "nan"]),
    ("train.run", ["--jitter", "inf"]),
    ("train.run", ["--vgg-scales", "1", "nan"]),
])
def test_odd_numbers_are_refused_at_parse_time(module, args, capsys):
    import importlib

    mod = importlib.import_module(module)
    base = {"lia_live.cli.animate": ["--source", "s.png", "--driving", "d.mp4", "--output", "o.mp4"],
            "lia_live.cli.live": [], "train.run": ["--data", "x"]}[module]
    parser = mod.build_parser() if hasattr(mod, "build_parser") else __import__("train.config").config.build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(base + args)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert ("finite" in err or "must be" in err) and args[0] in err, err


def test_float_range_parser():
    import argparse

    from lia_live.cli.common import float_range

    p = float_range(0, 2)
    assert p("1.5") == 1.5 and p("0") == 0.0 and p("2") == 2.0
    for bad in ("nan", "inf", "-inf", "-0.1", "2.01", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            p(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="> 0"):
        float_range(0, 10, lo_open=True)("0")


# -- class 6: damaged checkpoints and weights ---------------------------------------------------------
def _safetensors(path: Path, meta: dict | None, tensors: dict | None = None) -> Path:
    from safetensors.torch import save_file

    save_file(tensors or {"enc.x": torch.zeros(2)}, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("meta,needle", [
    ({"lia_live_config": "{not json"}, "malformed generator config"),
    ({"lia_live_config": json.dumps({"size": 64, "colour": 3})}, "unknown generator config keys"),
    ({"lia_live_config": json.dumps({"size": 2 ** 30})}, "outside [1, 1024]"),
    ({"lia_live_config": json.dumps({"size": "big"})}, "must be an integer"),
    ({"lia_live_config": json.dumps([64])}, "expected a JSON object"),
])
def test_malformed_safetensors_metadata_is_one_line(tmp_path, meta, needle):
    from lia_live.model.checkpoint import load_generator

    with pytest.raises(CheckpointError, match=needle.replace("[", r"\[")):
        load_generator(_safetensors(tmp_path / "m.safetensors", meta))


def test_damaged_checkpoints_exit_2_in_one_line(inputs, tmp_path, tiny_generator):
    sd = {k: v for k, v in tiny_generator.state_dict().items()}
    sd[next(iter(sd))] = "not a tensor"
    torch.save({"format": "lia-live", "version": 1, "config": tiny_generator.config.to_dict(), "gen": sd},
               tmp_path / "nontensor.pt")
    (tmp_path / "text.pt").write_text("hello, I am a text file\n")
    cases = {
        tmp_path / "nontensor.pt": "is not a tensor",
        tmp_path / "text.pt": "not a readable PyTorch checkpoint (another file type)",
        _safetensors(tmp_path / "bad.safetensors", {"lia_live_config": "{"}): "malformed generator config",
    }
    for ck, needle in cases.items():
        r = run_cli("lia_live.cli.animate", *animate_args({**inputs, "ck": ck}, tmp_path / "o.mp4"))
        one_line_exit_2(r, needle)
        assert "weights_only" not in r.stderr


def test_text_file_as_lpips_weights_is_refused_without_unsafe_advice(tmp_path):
    from lia_live.evaluation.lpips_weights import load_alexnet_convs

    txt = tmp_path / "alex.pth"
    txt.write_text("just text\n")
    with pytest.raises(UserError) as e:
        load_alexnet_convs(txt)
    assert "not a PyTorch weights file" in str(e.value) and "weights_only" not in str(e.value)
    torch.save({"features.0.weight": "x"}, tmp_path / "odd.pth")
    with pytest.raises(UserError, match="not an AlexNet state dict"):
        load_alexnet_convs(tmp_path / "odd.pth")


# -- class 7: odd images and frames -------------------------------------------------------------------
def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_odd_images_are_one_line(tmp_path):
    from lia_live.io import read_image

    with pytest.raises(UserError, match="larger than the image decoder allows"):
        read_image(_png_header_only(tmp_path / "huge.png", 60000, 60000), "source image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="empty file"):
        read_image(tmp_path / "empty.png")


def test_zero_byte_training_frame_names_the_file(tmp_path):
    from traindata import write_png_clips

    from train.data import find_videos, read_frame

    data = write_png_clips(tmp_path / "data", n_clips=1, n_frames=3)
    video = find_videos(data)[0]
    video.frames[1].write_bytes(b"")
    with pytest.raises(UserError, match=f"empty file: {video.frames[1]}"):
        read_frame(video, 1)


def test_broken_training_frames_are_one_line(tmp_path):
    from traindata import write_png_clips

    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=3)
    for f in data.rglob("*.png"):
        f.write_bytes(b"")
    r = run_cli("train.run", "--preset", "tiny", "--data", data, "--out", tmp_path / "run", "--iters", "1",
                "--no-progress", "--workers", "1")
    one_line_exit_2(r, "training frame is an empty file: ", alone=False)


def test_dataloader_wrapped_user_errors_come_out_as_their_own_line():
    from train.run import _one_line

    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nlia_live.errors.UserError: training frame is an "
                        "empty file: /d/0.png\n")
    assert _one_line(wrapped) == "training frame is an empty file: /d/0.png"
    assert _one_line(UserError("plain")) == "plain"


def test_truncated_video_is_reported(tmp_path, astronaut, capsys, inputs):
    from lia_live.io import open_frames

    full = write_video(tmp_path / "full.mp4", moving_frames(astronaut, 60, size=64, step=1), faststart=True)
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # an interrupted download: the index announces 60 frames
    src = open_frames(cut)
    n = sum(1 for _ in src)
    assert len(src) == 60 and 0 < n < 59
    assert src.truncated
    err = capsys.readouterr().err
    assert f"ended after {n} frames of the 60" in err and "truncated" in err
    # as a user runs it (a fresh process: OpenCV reads its FFmpeg log level once): no raw FFmpeg lines
    r = run_cli("lia_live.cli.animate", *animate_args({**inputs, "folder": cut}, tmp_path / "o.mp4"))
    assert r.returncode == 0, r.stderr
    assert f"wrote {n} frames" in r.stderr and "driving video ended early" in r.stderr
    assert "[h264" not in r.stderr and "partial file" not in r.stderr, r.stderr


# -- class 8: devices ------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["mps", "tpu", "cuda:x"])
def test_unsupported_devices_are_one_line(inputs, device, tmp_path):
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, tmp_path / "o.mp4", "--device", device))
    one_line_exit_2(r, "unsupported device")


# -- class 9: state a failed run leaves behind ---------------------------------------------------------
def test_failed_eval_leaves_no_run_record_and_single_videos_are_their_own_run(inputs, tmp_path, astronaut,
                                                                            monkeypatch):
    from lia_live.evaluation import runner
    from lia_live.evaluation.runner import run_evaluation
    from lia_live.settings import EvalConfig, ModelConfig

    vids = tmp_path / "vids"
    vids.mkdir()
    a = write_video(vids / "a.mp4", moving_frames(astronaut, 4, size=64), fps=10)
    b = write_video(vids / "b.mp4", moving_frames(astronaut, 4, size=64, step=5), fps=10)
    out = tmp_path / "eval"
    model = ModelConfig(checkpoint=inputs["ck"], device="cpu")
    cfg = EvalConfig(model=model, data=a, out=out, metrics=("l1",), domain="face", progress=False)

    def broken(*_a, **_k):
        raise UserError("simulated failure before anything was scored")

    with monkeypatch.context() as m:
        m.setattr(runner, "evaluate_video", broken)
        with pytest.raises(UserError, match="simulated"):
            run_evaluation(cfg, log=lambda s: None)
    assert not out.exists()  # nothing left: the corrected rerun is accepted
    doc = run_evaluation(cfg, log=lambda s: None)
    assert doc["overall"]["videos"] == 1
    assert json.loads((out / "run.json").read_text())["data"] == str(a.resolve())
    with pytest.raises(UserError, match="other settings"):  # another video of that folder is another run
        run_evaluation(EvalConfig(model=model, data=b, out=out, metrics=("l1",), domain="face", progress=False),
                       log=lambda s: None)


# -- class 10: what users read ----------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["lia_live.cli.animate", "lia_live.cli.evaluate", "lia_live.cli.live"])
def test_help_shows_no_noise_defaults(module, capsys):
    import importlib

    parser = importlib.import_module(module).build_parser()
    text = " ".join(parser.format_help().split())
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text
    assert text.lower().count("default: default") == 0
    for chunk in text.split("(default:")[1:]:
        assert "default" not in chunk.split(")")[0]


def test_train_needs_data_and_says_so(capsys):
    from train.run import main

    assert main(["--preset", "tiny", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "--data is required" in err and len(err.strip().splitlines()) == 1
    from train.config import build_parser

    assert "--data DATA required:" in " ".join(build_parser().format_help().split())


def test_messages_say_the_right_program_and_number(inputs, tmp_path):
    r = run_cli("lia_live.cli.animate", *animate_args(inputs, tmp_path / "one", "--max-frames", "1"))
    assert r.returncode == 0, r.stderr
    assert "lia-animate: wrote 1 frame to" in r.stderr and "lia-live:" not in r.stderr
