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
import re
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
from media import count_video_frames, moving_frames, write_png_clips, write_video

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


@pytest.mark.parametrize("sigterms", [1, 2])
def test_sigterm_gives_a_shorter_playable_mp4_and_exit_143(inputs, sigterms):
    """One SIGTERM, or two 0.1 s apart (the second is the same request): a shorter playable mp4, exit 143."""
    out = inputs["tmp"] / "o.mp4"
    long = inputs["tmp"] / "long"
    long.mkdir()
    for i in range(400):
        cv2.imwrite(str(long / f"{i:04d}.png"), cv2.cvtColor(inputs["frames"][i % 20], cv2.COLOR_RGB2BGR))
    args = [a for a in animate_args({**inputs, "folder": long}, out) if a != "--no-progress"]
    proc, chunks = _start_and_wait_for_frames(args)
    proc.send_signal(signal.SIGTERM)
    if sigterms == 2:
        threading.Event().wait(0.1)
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
    from train.data import find_videos, read_frame

    data = write_png_clips(tmp_path / "data", n_clips=1, n_frames=3)
    video = find_videos(data)[0]
    video.frames[1].write_bytes(b"")
    with pytest.raises(UserError, match=f"empty file: {video.frames[1]}"):
        read_frame(video, 1)


def test_broken_training_frames_are_one_line(tmp_path):
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=3)
    for f in data.rglob("*.png"):
        f.write_bytes(b"")
    r = run_cli("train.run", "--preset", "tiny", "--data", data, "--out", tmp_path / "run", "--iters", "1",
                "--no-progress", "--workers", "1")
    one_line_exit_2(r, "training frame is an empty file: ", alone=False)


def test_dataloader_wrapped_user_errors_come_out_as_their_own_line():
    from lia_live.options import one_line  # what every tool's user_errors prints

    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\nlia_live.errors.UserError: training frame is an "
                        "empty file: /d/0.png\n")
    assert one_line(str(wrapped)) == "training frame is an empty file: /d/0.png"
    assert one_line(str(UserError("plain"))) == "plain"


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


# == issue 23: round two ==================================================================================
# -- class 11: outputs that name the same file, outputs that are inputs, special files ---------------------
def _live(capsys, *args) -> tuple[int, str]:
    """``lia-live ... --dry-run`` in-process: (exit code, stderr)."""
    from lia_live.cli.live import main

    rc = main([str(a) for a in args] + ["--dry-run"])
    return rc, capsys.readouterr().err


def test_outputs_naming_one_file_are_refused_before_any_work(inputs, tmp_path, capsys):
    src, drv = inputs["src"], inputs["folder"]
    a = tmp_path / "a.mp4"
    live = ["--source", src, "--driving", drv, "--no-vcam"]
    cases = [
        (["--output", a, "--stats-json", a], "--output and --stats-json name the same file"),
        (["--output", a, "--record-motion", tmp_path / "x" / ".." / "a.mp4"], "--output and --record-motion"),
        (["--offsets", tmp_path / "o.json", "--stats-json", tmp_path / "o.json"], "--stats-json and --offsets"),
        (["--output", tmp_path / "pngs", "--stats-json", tmp_path / "pngs" / "s.json"],
         "lies inside the --output folder"),
    ]
    for extra, needle in cases:
        one_line_exit_2(_live(capsys, *live, *extra, "--overwrite"), needle)
    os.symlink(a, tmp_path / "alias.json")  # a symlink to the video is the video
    one_line_exit_2(_live(capsys, *live, "--output", a, "--stats-json", tmp_path / "alias.json", "--overwrite"),
                    "name the same file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.json", "face.png", "frames", "tiny.safetensors"]


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(inputs, tmp_path, capsys, astronaut):
    from lia_live.cli.animate import main as animate

    clip = write_video(tmp_path / "clip.mp4", moving_frames(astronaut, 4, size=64), fps=10)
    before = clip.read_bytes()
    one_line_exit_2(_live(capsys, "--source", inputs["src"], "--driving", clip, "--no-vcam", "--output", clip,
                          "--overwrite"), "--output " + str(clip) + " is also the --driving input")
    os.link(clip, tmp_path / "hard.mp4")  # a hard link: another name, the same file
    rc = animate([str(a) for a in animate_args({**inputs, "folder": clip}, tmp_path / "hard.mp4", "--overwrite")])
    one_line_exit_2((rc, capsys.readouterr().err), "is also the --driving input")
    rc = animate([str(a) for a in animate_args(inputs, inputs["src"], "--overwrite")])  # a PNG folder over a file
    assert rc == 2
    capsys.readouterr()
    rc = animate([str(a) for a in animate_args(inputs, tmp_path / "o.mp4", "--record-motion", inputs["src"],
                                               "--overwrite")])
    one_line_exit_2((rc, capsys.readouterr().err), "--record-motion " + str(inputs["src"]) + " is also the --source")
    rc = animate([str(a) for a in animate_args(inputs, tmp_path, "--overwrite")])  # the folder holding the inputs
    one_line_exit_2((rc, capsys.readouterr().err), "holds the --source input")
    assert clip.read_bytes() == before and inputs["src"].is_file() and len(list(inputs["folder"].iterdir())) == 20


def test_special_files_are_never_outputs(inputs, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for special in ("/dev/null", fifo):
        for flag in ("--stats-json", "--record-motion", "--offsets"):
            one_line_exit_2(_live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam",
                                  flag, special, "--overwrite"), "special file, not a regular file")
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()
    from lia_live.paths import read_capped

    with pytest.raises(UserError, match="special file"):
        read_capped(fifo, "offsets file", 1024)  # would block forever on open/read


def test_dry_run_catches_an_unwritable_offsets_file(inputs, readonly_dir, capsys):
    one_line_exit_2(_live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam",
                          "--offsets", readonly_dir / "o.json"), "not writable")
    rc, err = _live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam")
    assert rc == 0, err


# -- class 12: files the tool reads back: motion templates, offsets -----------------------------------------
def _template(n: int = 6, m: int = 8, **changes) -> dict:
    """The arrays of a valid motion template (see lia_live.templates), with ``changes`` applied (None drops)."""
    from lia_live.templates import FORMAT

    z = {"format": np.array(FORMAT), "alpha": np.linspace(-1, 1, n * m, dtype=np.float32).reshape(n, m),
         "time": np.arange(n) / 10.0, "power": np.ones(n, np.float32), "relative": np.ones(n, bool),
         "ref_frames": np.array([0], np.int32), "ref_alpha": np.zeros((1, m), np.float32), "fps": np.array(10.0),
         "model_sha256": np.array("ab" * 32), "size": np.array(64, np.int64), "motion_dim": np.array(m, np.int64)}
    z.update(changes)
    return {k: v for k, v in z.items() if v is not None}


def _save_npz(path: Path, arrays: dict) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _nan_row(n=6, m=8):
    a = _template(n, m)["alpha"].copy()
    a[2, 3] = np.nan
    return a


@pytest.mark.parametrize("changes,needle", [
    ({"power": np.array([1, 1, np.nan, 1, 1, 1], np.float32)}, "field 'power' holds 1 non-finite values"),
    ({"power": np.full(6, 7.0, np.float32)}, "field 'power' holds values outside [0, 2]"),
    ({"ref_alpha": np.full((1, 8), np.inf, np.float32)}, "field 'ref_alpha' holds 8 non-finite"),
    ({"alpha": np.full((6, 8), 1e30, np.float32)}, "field 'alpha' holds values outside"),
    ({"alpha": _nan_row()}, "field 'alpha' row 2 is partly NaN"),
    ({"off_frames": np.array([1], np.int32), "off_values": np.full((1, 8), np.nan, np.float32)},
     "field 'off_values' holds 8 non-finite"),
    ({"off_frames": np.array([1], np.int32)}, "'off_frames' and 'off_values' come together"),
    ({"power": np.ones(5, np.float32)}, "field 'power' has shape (5,), expected (6,)"),
    ({"alpha": np.zeros((6, 7), np.float32)}, "field 'alpha' has shape (6, 7), expected (N, 8)"),
    ({"relative": np.ones(6, np.float32)}, "field 'relative' has type float32, expected boolean"),
    ({"alpha": np.zeros((6, 8), np.int64)}, "field 'alpha' has type int64, expected floating point"),
    ({"ref_frames": np.array([9], np.int32)}, "field 'ref_frames' holds frame numbers outside [0, 5]"),
    ({"ref_frames": np.array([3, 1], np.int32), "ref_alpha": np.zeros((2, 8), np.float32)}, "not strictly increasing"),
    ({"fps": np.array(np.inf)}, "field 'fps' is inf"),
    ({"motion_dim": np.array("eight")}, "field 'motion_dim' has type <U5, expected integer"),
    ({"size": np.zeros(3, np.int64)}, "field 'size' has shape (3,), expected a single value"),
    ({"model_sha256": np.array("x")}, "field 'model_sha256' is not a SHA-256"),
    ({"time": None}, "lacks the field 'time'"),
    ({"alpha": np.zeros((0, 8), np.float32), "time": np.zeros(0), "power": np.zeros(0, np.float32),
      "relative": np.zeros(0, bool), "ref_frames": np.zeros(0, np.int32), "ref_alpha": np.zeros((0, 8), np.float32)},
     "holds no frames"),
])
def test_malformed_templates_are_one_line_naming_file_and_field(tmp_path, changes, needle):
    from lia_live.templates import load_template

    path = _save_npz(tmp_path / "t.npz", _template(**changes))
    with pytest.raises(UserError) as e:
        load_template(path)
    assert needle in str(e.value) and str(path) in str(e.value), str(e.value)


def test_damaged_template_files_are_one_line(tmp_path):
    from lia_live.templates import load_template

    good = _save_npz(tmp_path / "good.npz", _template())
    assert len(load_template(good)) == 6
    data = good.read_bytes()
    cases = {"cut.npz": (data[: len(data) // 2], "is not a motion template (.npz archive)"),
             "empty.npz": (b"", "is not a motion template"),
             "text.npz": (b"hello\n", "is not a motion template")}
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=re.escape(needle)):
            load_template(tmp_path / name)
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "renamed.npz")  # a .npy under an .npz name
    with pytest.raises(UserError, match="is not a motion template"):
        load_template(tmp_path / "renamed.npz")
    obj = _template()
    obj["time"] = np.array([{"x": 1}] * 6, dtype=object)
    with open(tmp_path / "obj.npz", "wb") as f:
        np.savez(f, **obj)
    with pytest.raises(UserError, match="field 'time' holds Python objects"):
        load_template(tmp_path / "obj.npz")
    with pytest.raises(UserError, match="motion template not found"):
        load_template(tmp_path / "missing.npz")
    with pytest.raises(UserError, match="motion template is a folder"):
        load_template(tmp_path)
    with pytest.raises(UserError, match="special file"):
        load_template("/dev/zero")


def test_a_long_template_replayed_for_a_few_frames_reads_a_few_frames(tmp_path):
    import time as _time

    from lia_live.templates import load_template

    n = 400_000  # 37 MB: the same code path as the two million frames
    path = _save_npz(tmp_path / "long.npz", _template(n, alpha=np.zeros((n, 8), np.float32),
                                                      time=np.arange(n) / 30.0))
    t0 = _time.perf_counter()
    t = load_template(path, max_frames=5)
    took = _time.perf_counter() - t0
    assert len(t) == 5 and t.alpha.shape == (5, 8) and t.time.nbytes == 40
    assert took < 0.5, took  # measured: 9 ms for two million frames (the whole file: 1 s)
    assert len(list(t.args())) == 5


def test_a_bad_template_through_lia_animate_is_one_line(inputs, tmp_path, capsys):
    from lia_live.cli.animate import main as animate

    bad = _save_npz(tmp_path / "bad.npz", _template(power=np.full(6, np.nan, np.float32)))
    base = ["--source", inputs["src"], "--checkpoint", inputs["ck"], "--backend", "eager", "--device", "cpu",
            "--no-progress", "--output", tmp_path / "o.mp4"]
    rc = animate([str(a) for a in base + ["--motion", bad]])
    one_line_exit_2((rc, capsys.readouterr().err), f"motion template {bad}: field 'power' holds 6 non-finite")
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("content,needle", [
    ('{"format": "lia-live-offsets/1", "offsets": [1e30, 0, 0, 0, 0, 0, 0, 0]}',
     "value 0 is 1e+30; offsets must be finite numbers within ±100"),
    ('{"format": "lia-live-offsets/1", "offsets": [NaN, 0, 0, 0, 0, 0, 0, 0]}', "value 0 is nan"),
    ('{"format": "lia-live-offsets/1", "offsets": [0, 0, 0, 0, 0, 0, 0, "x"]}', "value 7 is 'x', not a number"),
    ('{"format": "lia-live-offsets/1", "offsets": [0, 0, 0, 0, 0, 0, 0, true]}', "value 7 is True, not a number"),
    ('{"format": "lia-live-offsets/1", "offsets": [0, 0]}', "has 2 values; this model has 8 motion directions"),
    ('{"format": "lia-live-offsets/1", "offsets": {"a": 1}}', '"offsets" is dict, expected a list of 8 numbers'),
    ('{"offsets": [0, 0, 0, 0, 0, 0, 0, 0]}', 'is not a lia-live offsets file (its "format" is None'),
    ('"just text"', "holds a JSON str; expected"),
    ("{not json", "is not valid JSON"),
    ("\xff\xfe", "is not a text (UTF-8 JSON) file"),
])
def test_offsets_files_are_checked_value_by_value(tmp_path, tiny_generator, content, needle):
    from lia_live.animator import Animator
    from lia_live.templates import load_offsets

    path = tmp_path / "off.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(UserError) as e:
        load_offsets(path, Animator(tiny_generator))
    assert needle in str(e.value) and str(path) in str(e.value), str(e.value)


def test_offsets_as_a_plain_list_work_and_devices_are_refused(tmp_path, tiny_generator):
    from lia_live.animator import Animator
    from lia_live.templates import load_offsets

    anim = Animator(tiny_generator)
    path = tmp_path / "list.json"
    path.write_text("[0, 0.5, 0, 0, 0, 0, 0, -1]")
    assert load_offsets(path, anim) == [0, 0.5, 0, 0, 0, 0, 0, -1]
    with pytest.raises(UserError, match="offsets file is a device, pipe or other special file"):
        load_offsets("/dev/zero", anim)  # used to read forever, then MemoryError
    with pytest.raises(UserError, match="offsets file is a folder"):
        load_offsets(tmp_path, anim)
    path.write_text("[" + "0, " * 40000 + "0]")
    with pytest.raises(UserError, match="is too large"):
        load_offsets(path, anim)


# -- class 13: every number has a range -----------------------------------------------------------------
@pytest.mark.parametrize("module", ["lia_live.cli.animate", "lia_live.cli.evaluate", "lia_live.cli.live",
                                    "lia_live.cli.bench"])
def test_every_numeric_option_has_a_range(module):
    import argparse
    import importlib

    parser = importlib.import_module(module).build_parser()
    checked = 0
    for action in parser._actions:
        t = action.type
        assert t not in (int, float) or action.choices, f"{action.option_strings} takes any {t.__name__}"
        name = getattr(t, "__name__", "")
        if name not in ("number", "integer") or action.choices:  # choices bound it too
            continue
        for huge in ("1e300", "-1e300", str(10 ** 30), str(-10 ** 30)):
            with pytest.raises(argparse.ArgumentTypeError):
                t(huge)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("value,needle", [("100000", "must be in [1, "), ("-5", "must be in [1, "),
                                          ("0", "must be in [1, "), ("x", "invalid literal")])
def test_backend_thread_counts_are_bounded(value, needle):
    from lia_live.backends import backend_info

    with pytest.raises(UserError, match=re.escape(needle)):
        backend_info("onnxruntime").convert_options({"threads": value})
    assert backend_info("onnxruntime").convert_options({"threads": "2"}) == {"threads": 2}


def test_every_int_backend_option_declares_its_range():
    from lia_live.backends import backend_info, backend_names

    ints = [(n, o.key) for n in backend_names() for o in backend_info(n).options if o.kind == "int"]
    assert ints and all(backend_info(n).option(k).range is not None for n, k in ints), ints


# -- class 14: options that do not apply to the mode --------------------------------------------------------
@pytest.mark.parametrize("extra,needle", [
    (["--motion", "T", "--mode", "absolute"], "--mode applies to --driving videos only (a --motion template"),
    (["--motion", "T", "--motion-power", "1.5"], "--motion-power applies to --driving videos only"),
    (["--motion", "T", "--reference", "auto"], "--reference applies to --driving videos only"),
    (["--motion", "T", "--crop", "auto"], "--crop applies to --driving videos only"),
    (["--manipulate", "1", "--mode", "absolute"], "--mode applies to --driving videos only (--manipulate"),
    (["--driving", "D", "--mode", "absolute", "--reference", "landmarks"], "--mode absolute has none"),
    (["--driving", "D", "--mode", "absolute", "--motion-power", "0.5"], "--motion-power scales relative motion"),
])
def test_options_that_do_not_apply_are_refused(inputs, tmp_path, capsys, extra, needle):
    from lia_live.cli.animate import main as animate

    template = _save_npz(tmp_path / "t.npz", _template())
    subst = {"T": template, "D": inputs["folder"]}
    rc = animate([str(a) for a in ["--source", inputs["src"], "--output", tmp_path / "o.mp4",
                                   *(subst.get(e, e) for e in extra)]])
    one_line_exit_2((rc, capsys.readouterr().err), needle)


def test_live_warns_once_about_reference_in_absolute_mode(inputs, capsys):
    rc, err = _live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam", "--mode",
                    "absolute", "--reference", "auto")
    assert rc == 0 and err.count("warning: --reference auto shapes relative motion") == 1, err
    rc, err = _live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam", "--mode",
                    "absolute", "--motion-power", "1.5")
    assert rc == 0 and err.count("warning: --motion-power 1.5 shapes relative motion") == 1, err


# -- class 15: state read back: training checkpoints, lia-eval records -------------------------------------
def test_resume_auto_with_a_damaged_newest_checkpoint_names_the_older_one(tmp_path):
    from train.checkpoints import list_checkpoints
    from train.config import preset_config
    from train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = preset_config("tiny")
    cfg.data, cfg.out, cfg.progress = str(write_png_clips(tmp_path / "data", 2, 4)), str(tmp_path / "run"), False
    cfg.iters, cfg.batch_size, cfg.save_every, cfg.keep = 2, 2, 1, 5
    Trainer(cfg, torch.device("cpu")).run()
    first, newest = list_checkpoints(tmp_path / "run" / "checkpoints")[-2:]
    newest.write_bytes(newest.read_bytes()[:1000])  # an interrupted copy
    cfg.resume, cfg.iters = "auto", 3
    with pytest.raises(UserError) as e:
        Trainer(cfg, torch.device("cpu"))
    msg = str(e.value)
    assert "newest checkpoint is damaged" in msg and f"pass --resume {first}" in msg and newest.name in msg, msg
    assert "\n" not in msg and newest.stat().st_size == 1000  # nothing removed behind the user's back


def test_eval_resume_scores_again_when_frames_changed_or_records_are_odd(inputs, tmp_path):
    from lia_live.evaluation.runner import run_evaluation
    from lia_live.settings import EvalConfig, ModelConfig

    vid = tmp_path / "data" / "test" / "vidA"
    vid.mkdir(parents=True)
    for i, f in enumerate(inputs["frames"][:3]):
        cv2.imwrite(str(vid / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "eval"
    cfg = EvalConfig(model=ModelConfig(checkpoint=inputs["ck"], device="cpu"), data=tmp_path / "data", out=out,
                     metrics=("l1",), domain="face", progress=False)
    said: list[str] = []
    first = run_evaluation(cfg, log=said.append)
    assert first["per_video"]["vidA"]["frames"] == 3
    again = run_evaluation(cfg, log=said.append)
    assert again["per_video"] == first["per_video"] and "already scored" in said[-1]  # reused as it is
    cv2.imwrite(str(vid / "003.png"), cv2.cvtColor(inputs["frames"][3], cv2.COLOR_RGB2BGR))  # frames changed
    said.clear()
    second = run_evaluation(cfg, log=said.append)
    assert second["per_video"]["vidA"]["frames"] == 4, said
    assert any("scoring vidA again: its frames changed since it was scored" in s for s in said), said
    rec_path = out / "per_video" / "vidA.json"
    for odd in ({**json.loads(rec_path.read_text()), "frames": "4"}, [1, 2], "x" * 10):
        rec_path.write_text(json.dumps(odd))
        said.clear()
        assert run_evaluation(cfg, log=said.append)["overall"]["l1"] == pytest.approx(second["overall"]["l1"])
        assert any("scoring vidA again" in s for s in said), said


# -- class 16: what users read: GIFs, faceless clips, counts ---------------------------------------------------
def test_a_gif_reads_the_same_as_source_and_as_driving(tmp_path, capsys):
    from PIL import Image

    from lia_live.io import open_frames, read_image

    frames = [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(1, 5)]
    Image.fromarray(frames[0]).save(tmp_path / "a.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]], duration=100, loop=0)
    Image.fromarray(frames[2]).save(tmp_path / "still.gif")
    as_source = read_image(tmp_path / "a.gif", "source image")
    as_driving = list(open_frames(tmp_path / "a.gif"))
    assert len(as_driving) == 4 and np.array_equal(as_source, as_driving[0])
    assert as_source.shape == (48, 64, 3) and abs(float(as_source.mean()) - 30) <= 2
    assert "is an animated GIF: using its first frame" in capsys.readouterr().err
    assert abs(float(read_image(tmp_path / "still.gif").mean()) - 90) <= 2
    assert "animated" not in capsys.readouterr().err
    (tmp_path / "bad.gif").write_bytes(b"GIF89a and then nothing")
    with pytest.raises(UserError, match="source image is not a readable image"):
        read_image(tmp_path / "bad.gif", "source image")


def test_a_driving_clip_without_any_face_is_refused_and_keeps_nothing(inputs, tmp_path, capsys):
    from lia_live.cli.animate import main as animate

    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(4):
        cv2.imwrite(str(blank / f"{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    out = tmp_path / "o.mp4"
    rc = animate([str(a) for a in animate_args({**inputs, "folder": blank}, out, "--crop", "auto")])
    one_line_exit_2((rc, capsys.readouterr().err), f"no face found in any of the 4 frames of {blank}", alone=False)
    assert not out.exists() and leftovers(tmp_path) == []


def test_ctrl_c_keeps_the_motion_recording_in_step_with_the_video(inputs, tmp_path, monkeypatch, capsys):
    """A real SIGINT after 3 written frames (batch 4: motion is recorded a batch ahead): video and template
    hold the same frames, and a replay of the template matches the video frame for frame."""
    from lia_live import offline
    from lia_live.cli.animate import main as animate
    from lia_live.templates import load_template

    real_open = offline.open_writer

    def open_writer(*a, **kw):
        w = real_open(*a, **kw)
        write = w.write

        def write_then_signal(rgb):
            write(rgb)
            if w.frames == 3:
                os.kill(os.getpid(), signal.SIGINT)
        w.write = write_then_signal
        return w

    monkeypatch.setattr(offline, "open_writer", open_writer)
    out, rec = tmp_path / "pngs", tmp_path / "m.npz"
    rc = animate([str(a) for a in animate_args(inputs, out, "--record-motion", rec, "--batch-size", "4")])
    err = capsys.readouterr().err
    assert rc == 130, err
    written = len(list(out.iterdir()))
    assert 3 <= written < 20 and len(load_template(rec)) == written, err
    assert f"motion recorded: {rec} ({written} frames)" in err and leftovers(tmp_path) == []
    monkeypatch.setattr(offline, "open_writer", real_open)
    replay = tmp_path / "replay"
    assert animate([str(a) for a in ["--source", inputs["src"], "--checkpoint", inputs["ck"], "--backend", "eager",
                                     "--device", "cpu", "--no-progress", "--output", replay, "--motion", rec]]) == 0
    assert len(list(replay.iterdir())) == written


# -- class 17: signals against a real lia-live process: every writer stops at the same frame ------------------
def _live_until_frames(inputs, out: Path, rec: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start lia-live on a 400-frame folder (file output + motion recording) and return once it has
    reported its first stats line (frames are flowing)."""
    long = inputs["tmp"] / "long"
    long.mkdir()
    for i in range(400):
        cv2.imwrite(str(long / f"{i:04d}.png"), cv2.cvtColor(inputs["frames"][i % 20], cv2.COLOR_RGB2BGR))
    args = ["--source", inputs["src"], "--driving", long, "--checkpoint", inputs["ck"], "--backend", "eager",
            "--device", "cpu", "--no-vcam", "--output", out, "--record-motion", rec, "--crop", "none",
            "--source-crop", "none", "--stats-every", "0.2", "--size", "128x128"]
    proc = subprocess.Popen([sys.executable, "-m", "lia_live.cli.live", *map(str, args)], cwd=ROOT, env=ENV,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def reader():
        for line in proc.stderr:
            lines.append(line)
            if " fps | latency" in line:
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    assert ready.wait(300), "".join(lines)
    return proc, lines


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGTERM, signal.SIGTERM)])
def test_live_signals_keep_the_video_and_the_recording_in_step(inputs, signals):
    """Ctrl-C: exit 130, the video and the motion recording hold the same frames. Two SIGTERMs 0.1 s apart:
    the second is the same request (exit 143), the mp4 is kept, and no hidden partial file is left."""
    from lia_live.templates import load_template

    out, rec = inputs["tmp"] / "o.mp4", inputs["tmp"] / "m.npz"
    proc, lines = _live_until_frames(inputs, out, rec)
    for i, sig in enumerate(signals):
        if i:
            threading.Event().wait(0.1)
        proc.send_signal(sig)
    rc = proc.wait(120)
    err = "".join(lines)
    assert rc == {signal.SIGINT: 130, signal.SIGTERM: 143}[signals[0]], err
    n = count_video_frames(out)
    assert 1 <= n < 400 and len(load_template(rec)) == n, err
    assert f"motion recorded: {rec} ({n} frame{'' if n == 1 else 's'})" in err and "Traceback" not in err
    assert leftovers(inputs["tmp"]) == []


def test_live_on_a_clip_without_any_face_says_so_and_keeps_nothing(inputs, tmp_path, capsys):
    from lia_live.cli.live import main

    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(blank / f"{i}.png"), np.full((96, 128, 3), 50 * i, np.uint8))
    out, js = tmp_path / "o.mp4", tmp_path / "s.json"
    rc = main([str(a) for a in ["--source", inputs["src"], "--driving", blank, "--checkpoint", inputs["ck"],
                                "--backend", "eager", "--device", "cpu", "--no-vcam", "--output", out,
                                "--stats-json", js, "--stats-every", "0"]])
    one_line_exit_2((rc, capsys.readouterr().err), f"no face found in any of the 3 frames of {blank}", alone=False)
    assert not out.exists() and not js.exists() and leftovers(tmp_path) == []


def test_one_frame_is_one_frame(inputs, tmp_path, capsys):
    from lia_live.cli.live import main

    rc = main([str(a) for a in ["--source", inputs["src"], "--driving", inputs["folder"], "--checkpoint",
                                inputs["ck"], "--backend", "eager", "--device", "cpu", "--no-vcam", "--output",
                                tmp_path / "o.mp4", "--record-motion", tmp_path / "m.npz", "--max-frames", "1",
                                "--crop", "none", "--stats-every", "0"]])
    err = capsys.readouterr().err
    assert rc == 0 and "done: 1 frame |" in err and "(1 frame)" in err and "1 frames" not in err, err


def test_dry_run_checks_the_offsets_values(inputs, tmp_path, capsys):
    off = tmp_path / "off.json"
    off.write_text('{"format": "lia-live-offsets/1", "offsets": [0, Infinity]}')
    one_line_exit_2(_live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam",
                          "--offsets", off), f"offsets file {off}: value 1 is inf")
    off.write_text("[0, 0.5]")  # the count is checked once the model is loaded
    rc, err = _live(capsys, "--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam", "--offsets", off)
    assert rc == 0, err


def test_offsets_set_in_python_say_what_was_wrong():
    from lia_live.motion import MotionController

    ctrl = MotionController(4)
    with pytest.raises(UserError, match=r"got 4 values, 1 of them not finite$"):
        ctrl.set_offsets([0, 0, float("nan"), 0])
    with pytest.raises(UserError, match=r"got 3 values$"):
        ctrl.set_offsets([0, 0, 0])


def test_special_files_as_inputs_are_named_as_such(inputs, capsys):
    base = ["--source", inputs["src"], "--driving", inputs["folder"], "--no-vcam"]
    one_line_exit_2(_live(capsys, *base, "--checkpoint", "/dev/zero"), "checkpoint is a device, pipe or other")
    one_line_exit_2(_live(capsys, *base[2:], "--source", "/dev/zero"), "source image is a device, pipe or other")
    one_line_exit_2(_live(capsys, *base[2:], "--source", inputs["folder"]), "source image is a folder")


def test_eval_run_record_read_back_is_checked(inputs, tmp_path):
    from lia_live.evaluation.runner import run_evaluation
    from lia_live.settings import EvalConfig, ModelConfig

    out = tmp_path / "eval"
    out.mkdir()
    cfg = EvalConfig(model=ModelConfig(checkpoint=inputs["ck"], device="cpu"), data=inputs["folder"], out=out,
                     metrics=("l1",), domain="face", progress=False)
    for content, needle in ((b"[1, 2]", "is not a lia-eval run record"), (b"{", "is not valid JSON"),
                            (b" " * (2 << 20), "is too large")):
        (out / "run.json").write_bytes(content)
        with pytest.raises(UserError, match=needle):
            run_evaluation(cfg, log=lambda s: None)
        assert (out / "run.json").read_bytes() == content  # the user's folder is left as it was


@pytest.mark.parametrize("flag,value,needle", [
    ("--size", str(2 ** 20), "size must be a power of two in [64, 2048]"),
    ("--style-dim", str(10 ** 9), "<= style_dim (1000000000) <= 4096"),
    ("--channel-div", str(10 ** 9), "channel_div in [1, 512]"),
])
def test_training_numbers_have_ranges(tmp_path, flag, value, needle, capsys):
    from train.run import main

    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, value, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_eval_out_overlapping_the_data_is_refused(inputs, tmp_path):
    from lia_live.evaluation.runner import run_evaluation
    from lia_live.settings import EvalConfig, ModelConfig

    data = tmp_path / "data"
    (data / "test" / "vidA").mkdir(parents=True)
    for out, needle in ((data / "test" / "report", "overlap"), (data, "overlap"), (tmp_path, "overlap")):
        cfg = EvalConfig(model=ModelConfig(checkpoint=inputs["ck"], device="cpu"), data=data, out=out,
                         metrics=("l1",), domain="face", progress=False)
        with pytest.raises(UserError, match=needle):
            run_evaluation(cfg, log=lambda s: None)
    assert not (data / "test" / "report").exists()


def test_an_engine_sidecar_that_is_not_an_object_means_rebuild(tmp_path):
    from lia_live.backends.cache import EngineSpec, commit, is_stale, sidecar

    spec = EngineSpec(kind="onnxruntime", graph="motion", weights="ab" * 32, size=64, precision="fp32", extra={})
    path = tmp_path / "e.onnx"
    commit(path, spec, lambda tmp: tmp.write_bytes(b"an engine"), built_by="test")
    assert is_stale(path, spec) == (False, "up to date")
    sidecar(path).write_text("[1, 2]")
    assert is_stale(path, spec) == (True, "metadata is not a JSON object")


@pytest.mark.parametrize("flag,value,needle", [
    ("--iters", str(10 ** 30), "argument --iters: must be <= 1000000000, got 1000000000000000000000000000000"),
    ("--workers", "100000", "argument --workers: must be <= "),
    ("--lr", "1e300", "argument --lr: must be <= 10 (range [0, 10]), got 1e300"),
])
def test_training_numbers_out_of_their_declared_range_are_usage_errors(tmp_path, flag, value, needle, capsys):
    """The ranges are declared on TrainConfig's fields: the command line refuses them at parse time (exit 2)."""
    from train.config import TrainConfig
    from train.run import main

    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, value, "--dry-run"])
    assert e.value.code == 2 and needle in capsys.readouterr().err
    with pytest.raises(UserError, match=r"iters 1000000000000 is outside \[1, 1e\+09\]"):
        TrainConfig(iters=10 ** 12).validate()  # a config built in code: the same declared range


def test_training_out_overlapping_the_data_is_refused(tmp_path, capsys):
    from train.run import main

    data = write_png_clips(tmp_path / "data", 1, 2)
    for out in (data / "run", data, tmp_path):
        assert main(["--preset", "tiny", "--data", str(data), "--out", str(out), "--iters", "1"]) == 2
        err = capsys.readouterr().err
        assert "overlap" in err and len(err.strip().splitlines()) == 1, err
    assert not (data / "run").exists()
