"""Long and out-of-process live runs: flat memory over 2,000 frames, clean shutdown on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest
import torch
from livedata import register_fake_vcam, rss_mb
from media import count_video_frames, small_frames, write_video

from lia_live.capture import IterableCapture
from lia_live.live import LiveConfig, run_live
from lia_live.model.checkpoint import save_generator
from lia_live.tracking import crop_portrait

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_long_run_keeps_memory_flat(tmp_path, astronaut, tiny_generator):
    from lia_live.animator import Animator

    n, warm = 2000, 200
    fake = register_fake_vcam()
    rss = {}

    def on_frame(cam, frame):
        if cam.count in (warm, n):
            rss[cam.count] = rss_mb()

    fake.on_frame = on_frame
    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    face = crop_portrait(astronaut, 120)
    cfg = LiveConfig(sources=(src,)).replace(output={"size": (160, 96), "vcam_backend": "fake"}, run={"stats_every": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = run_live(cfg, capture=IterableCapture(small_frames(face, n, width=160)),
                         animator=Animator(tiny_generator))
    finally:
        torch.set_num_threads(threads)
    growth = rss[n] - rss[warm]
    print(f"RSS after {warm} frames {rss[warm]:.1f} MiB, after {n} frames {rss[n]:.1f} MiB: "
          f"growth {growth:+.1f} MiB; {stats['fps']:.0f} fps; ms {stats['stage_ms_mean']}")
    assert stats["frames"] == n and fake.instances[0].count == n
    assert stats["frames_without_face"] < 0.02 * n
    assert growth < 15.0


def _live_inputs(tmp_path, astronaut, tiny_generator, n):
    """A 160×120 clip of ``n`` frames, the portrait and a tiny checkpoint on disk; no face tracking (the
    signals are what these tests are about)."""
    drive = write_video(tmp_path / "drive.mp4", small_frames(crop_portrait(astronaut, 120), n), fps=30)
    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    ckpt = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, ckpt)
    return ["--source", str(src), "--driving", str(drive), "--checkpoint", str(ckpt), "--backend", "eager",
            "--no-vcam", "--size", "160x96", "--stats-every", "0", "--crop", "none", "--source-crop", "none"]


# lia-live in a child process whose sink stops after sending frame PAUSE_AT until WAIT_FOR signals came in
# (the signal handlers run in that thread, the one the sink runs in): the signals land at a known frame.
GATED_CHILD = """
import sys, time
from lia_live.live import loop
from lia_live.signals import Stopper

PAUSE_AT, WAIT_FOR = int(sys.argv[1]), int(sys.argv[2])
signals = []
handler = Stopper._handler

def counted(self, signum, frame):
    signals.append(signum)
    handler(self, signum, frame)

Stopper._handler = counted
send = loop.Sink._send

def gated(self, out):
    send(self, out)
    if self.timer.sent == PAUSE_AT:
        print("PAUSED", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60
        while len(signals) < WAIT_FOR and time.monotonic() < deadline:
            time.sleep(0.01)

loop.Sink._send = gated
from lia_live.cli.live import main
sys.exit(main(sys.argv[3:]))
"""


def _signal_run(args, signals, pause_at):
    """Run the gated child; when it has sent frame ``pause_at``, send ``signals``, each once the previous
    one was acknowledged (its message on stderr); returns (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", GATED_CHILD, str(pause_at), str(len(signals)), *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    seen = threading.Condition()

    def pump():
        for line in proc.stderr:
            with seen:
                lines.append(line)
                seen.notify_all()

    def wait_for(text):
        with seen:
            assert seen.wait_for(lambda: any(text in ln for ln in lines) or proc.poll() is not None, 120)
        assert any(text in ln for ln in lines), "".join(lines)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        wait_for("PAUSED")
        for i, sig in enumerate(signals):
            proc.send_signal(sig)
            if i + 1 < len(signals):
                wait_for(f"{signal.Signals(sig).name}: ")
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    t.join(5)
    return rc, "".join(lines)


@pytest.mark.slow
def test_sigterm_finalises_the_recording(tmp_path, astronaut, tiny_generator):
    """SIGTERM while frame 5 is being sent: that frame is the last; the recording holds exactly 5 frames."""
    out, js = tmp_path / "rec.mp4", tmp_path / "stats.json"
    args = [*_live_inputs(tmp_path, astronaut, tiny_generator, 12), "--output", str(out), "--stats-json", str(js)]
    rc, err = _signal_run(args, [signal.SIGTERM], pause_at=5)
    assert rc == 143, err  # 128 + SIGTERM, after a complete recording
    assert "SIGTERM: finishing the current frame and shutting down" in err
    stats = json.loads(js.read_text())
    assert stats["frames"] == 5 and count_video_frames(out) == 5  # stopped there, file complete and playable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.mp4", "rec.mp4", "src.png", "stats.json",
                                                          "tiny.safetensors"]


@pytest.mark.slow
def test_double_ctrl_c_keeps_no_recording_and_exits_130(tmp_path, astronaut, tiny_generator):
    """A first Ctrl-C asks for a clean stop; a second one, before the clean stop is done, stops at once: no
    recording is kept (not even a hidden partial file) and the exit code is 130."""
    out = tmp_path / "rec.mp4"
    args = [*_live_inputs(tmp_path, astronaut, tiny_generator, 12), "--output", str(out)]
    rc, err = _signal_run(args, [signal.SIGINT, signal.SIGINT], pause_at=5)
    assert rc == 130, err
    assert "Traceback" not in err and "interrupted; shutting down without finalising the recording" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.mp4", "src.png", "tiny.safetensors"]


def test_stats_file_is_never_replaced_without_overwrite(tmp_path, astronaut, capsys):
    from lia_live.cli.live import main

    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    portrait = tmp_path / "portrait.png"
    portrait.write_bytes(b"the user's picture")
    assert main(["--source", str(src), "--stats-json", str(portrait), "--dry-run"]) == 2
    assert "stats file already exists" in capsys.readouterr().err
    assert portrait.read_bytes() == b"the user's picture"
    assert main(["--source", str(src), "--stats-json", str(tmp_path), "--dry-run"]) == 2
    assert "folder" in capsys.readouterr().err
