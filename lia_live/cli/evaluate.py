"""``lia-eval``: score a LIA checkpoint on a test split with L1, LPIPS, AED and AKD (resumable)."""

from __future__ import annotations

import sys

from ..evaluation.report import LABELS
from ..evaluation.runner import run_evaluation
from ..fsutil import check_output_path
from ..log import plural
from ..options import add_config_args, config_from_args
from ..settings import EvalConfig
from .common import ArgumentParser, user_errors


def build_parser() -> ArgumentParser:
    """The ``lia-eval`` argument parser."""
    p = ArgumentParser(prog="lia-eval", description="Score a LIA checkpoint on a test split with L1, LPIPS, AED "
                       "and AKD (resumable).",
                       epilog="Same-identity (default): source = frame 0 of each test video, driving = every frame, "
                              "absolute motion (the official protocol). L1/LPIPS/AED/AKD are averaged over the "
                              "frames of each video, then over videos. See docs/evaluation.md.")
    add_config_args(p, EvalConfig())
    return p


def parse_config(argv=None) -> EvalConfig:
    """Parse the command line into an :class:`~lia_live.settings.EvalConfig`."""
    cfg = config_from_args(EvalConfig(), build_parser().parse_args(argv))
    # resumable: an existing lia-eval folder is fine (checked in detail later); unwritable places are not
    check_output_path(cfg.out, overwrite=True, what="--out", kind="dir")
    if cfg.mode == "relative" and not cfg.cross:
        print("lia-eval: note: --mode relative with source = frame 0 of the same video equals absolute motion "
              "up to float rounding", file=sys.stderr)
    return cfg


@user_errors("lia-eval")
def main(argv=None) -> int:
    """Entry point of ``lia-eval``."""
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
