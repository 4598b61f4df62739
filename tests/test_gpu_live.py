"""The live loop and the offline job on a CUDA GPU (``pytest -m gpu``; skipped without one).

Runs where only torch, numpy and OpenCV are installed (the lent GPU machine has no mediapipe, scikit-image or
pyvirtualcam): no tracker (``crop none``), a drawn test card, outputs collected in memory.
"""

import cv2
import numpy as np
import pytest
import torch
from livedata import Collect
from media import face_card

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _frames(n=24, w=640, h=480):
    face = face_card(200, mouth=True)
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 80, np.uint8)
        x, y = 220 + int(30 * np.sin(i / 4)), 140 + int(10 * np.cos(i / 5))
        f[y:y + 200, x:x + 200] = face
        out.append(f)
    return out


def _run(tmp_path, generator, device, frame_path, compose, pipeline=True, anim=None):
    from lia_live.animator import Animator
    from lia_live.capture import IterableCapture
    from lia_live.live import LiveConfig, run_live

    src = tmp_path / "card.png"
    cv2.imwrite(str(src), cv2.cvtColor(face_card(256, mouth=True), cv2.COLOR_RGB2BGR))
    sink = Collect()
    cfg = LiveConfig(sources=(src,)).replace(
        motion={"crop": "none", "source_crop": "none"},
        output={"size": (640, 360), "vcam": False, "compose": compose},
        run={"stats_every": 0, "frame_path": frame_path, "pipeline": pipeline})
    anim = anim or Animator(generator.to(device), backend="eager", device=device, precision="fp32")
    stats = run_live(cfg, capture=IterableCapture(_frames(), fps=30), animator=anim, extra_outputs=[sink])
    return stats, np.stack(sink.frames).astype(int)


@pytest.mark.parametrize("compose", ["crop", "paste"])
def test_live_loop_on_cuda_matches_the_cpu(tmp_path, tiny_generator, compose):
    """Device frame path + CUDA streams per stage + pipelining on the GPU == the CPU host path."""
    import copy

    cpu_stats, cpu = _run(tmp_path, copy.deepcopy(tiny_generator), "cpu", "host", compose)
    gpu_stats, gpu = _run(tmp_path, copy.deepcopy(tiny_generator), "cuda", "device", compose)
    assert cpu_stats["frames"] == gpu_stats["frames"] == 24
    assert np.abs(cpu - gpu).mean() < 1.5, np.abs(cpu - gpu).mean()
    assert gpu.std() > 5  # not a black or flat frame


def test_live_loop_with_cuda_graphs_twice_with_one_animator(tmp_path, tiny_generator):
    """Issue 19: paste mode on the device path with the cudagraph backend, captured before the stages start
    (thread-local capture beside the track stage), then a second session with the same animator (a new model
    thread, as the control panel's Stop/Start makes): no new capture, the same frames as the CPU."""
    import copy

    from lia_live.animator import Animator

    _, cpu = _run(tmp_path, copy.deepcopy(tiny_generator), "cpu", "host", "paste")
    anim = Animator(copy.deepcopy(tiny_generator).to("cuda"), backend="cudagraph", device="cuda", precision="fp32")
    for _ in range(2):
        stats, gpu = _run(tmp_path, None, "cuda", "device", "paste", anim=anim)
        assert stats["frames"] == 24 and np.abs(cpu - gpu).mean() < 1.5, np.abs(cpu - gpu).mean()
    assert sorted(anim.backend.graphs) == [("motion", 1), ("synthesis", 1)]
    assert anim.backend.graphs[("motion", 1)].replays >= 48


def test_offline_batches_on_cuda_match_single_steps(tmp_path, tiny_generator):
    from lia_live.animator import Animator
    from lia_live.offline import DrivePlan, animate_video

    anim = Animator(tiny_generator.to("cuda"), backend="eager", device="cuda")
    anim.set_source(face_card(64, mouth=True))
    frames = [cv2.resize(f[100:400, 170:470], (64, 64)) for f in _frames(12)]
    one = np.stack(list(animate_video(anim, frames, DrivePlan(), batch=1))).astype(int)
    eight = np.stack(list(animate_video(anim, frames, DrivePlan(), batch=8))).astype(int)
    assert one.shape == eight.shape == (12, 64, 64, 3)
    assert np.abs(one - eight).max() <= 2
