"""Per-stage timing of the live pipeline on synthetic 640×480 input (no camera needed).

    python scripts/live_bench.py --frames 30 --compose paste --threads 1
    python scripts/live_bench.py --checkpoint checkpoints/vox.pt --device cuda

Runs ``lia_live.live.run_live`` on a generated video (the skimage astronaut moving inside a 640×480
frame), decoding it like a recording, with a fake virtual camera at the output size; prints the stats
as JSON: per-stage mean ms, fps, latency, the non-model overhead, and the RSS growth.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODEL_STAGES = ("motion", "synthesis")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--checkpoint", type=Path, help="default: a seeded random Generator(256)")
    p.add_argument("--backend", default="eager")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--compose", choices=("crop", "paste"), default="crop")
    p.add_argument("--size", default="1280x720", help="output WxH")
    p.add_argument("--detect-every", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    a = p.parse_args(argv)

    import cv2
    import torch
    from skimage import data

    from lia_live.animator import Animator
    from lia_live.capture import FileCapture
    from lia_live.live import LiveConfig, run_live
    from lia_live.model import Generator
    from lia_live.model.checkpoint import load_generator
    from livedata import make_scene, register_fake_vcam, rss_mb, write_video

    if a.threads:
        torch.set_num_threads(a.threads)
    astronaut = data.astronaut()
    if a.checkpoint:
        gen = load_generator(a.checkpoint, device=a.device)
    else:
        torch.manual_seed(0)
        gen = Generator(256).eval()
    anim = Animator(gen, backend=a.backend, device=a.device, precision=a.precision)
    w, h = (int(v) for v in a.size.split("x"))
    fake = register_fake_vcam()
    with tempfile.TemporaryDirectory() as d:
        scene = make_scene(astronaut, n=a.frames, gaps=())
        video, src = Path(d) / "drive.mp4", Path(d) / "src.png"
        write_video(scene.frames(), video, fps=scene.fps)
        cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
        cfg = LiveConfig(sources=(src,), driving=str(video), width=w, height=h, vcam_backend="fake",
                         compose=a.compose, detect_every=a.detect_every, stats_every=0)
        rss0 = rss_mb()
        stats = run_live(cfg, capture=FileCapture(video), animator=anim)
        rss1 = rss_mb()
    ms = stats["stage_ms_mean"]
    report = {"device": str(anim.device), "backend": anim.backend.describe(), "model_size": anim.size,
              "threads": torch.get_num_threads(), "input": "640x480", "output": a.size, "compose": a.compose,
              "frames": stats["frames"], "fps": stats["fps"], "latency_ms_mean": stats["latency_ms_mean"],
              "stage_ms_mean": ms,
              "model_ms": round(sum(ms.get(s, 0) for s in MODEL_STAGES), 3),
              "overhead_ms": round(sum(v for k, v in ms.items() if k not in MODEL_STAGES), 3),
              "rss_growth_mb": round(rss1 - rss0, 1), "vcam_frames": fake.instances[0].count}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
