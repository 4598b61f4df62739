"""``lia-live``: animate a portrait with your webcam and send it to a virtual camera, in real time.

    lia-live --source face.png                      # webcam 0 → virtual camera
    lia-live --source a.png --source b.png --preview
    lia-live --source face.png --driving clip.mp4 --output out.mp4 --no-vcam
    lia-live backends                               # which inference backends work here
    lia-live bench ...                              # speed benchmark (lia_live.cli.bench)
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from .common import ArgumentParser, positive_float, user_errors

SUBCOMMANDS = ("backends", "bench")


def _size(text: str) -> tuple[int, int]:
    import argparse

    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size {w}x{h}: each side must be even and within 16..7680x4320")
    return w, h


def build_parser() -> ArgumentParser:
    from ..live import HOTKEY_HELP

    p = ArgumentParser(prog="lia-live", description="Animate a portrait with a webcam (or a video) and send it "
                       "to a virtual camera, a preview window and/or a file. Subcommands: 'lia-live backends', "
                       "'lia-live bench ...'.", epilog=HOTKEY_HELP + ". Full guide: docs/live.md")
    g = p.add_argument_group("model")
    g.add_argument("--source", action="append", required=True, type=Path, metavar="IMAGE",
                   help="source portrait; repeat for several (hotkey n switches)")
    g.add_argument("--checkpoint", type=Path, help="LIA checkpoint; default checkpoints/vox.pt, then "
                   "$LIA_CHECKPOINT, then the bundled demo model")
    g.add_argument("--backend", default="auto", help="inference backend (auto = fastest available; "
                   "see 'lia-live backends')")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                   help="default: the backend's own (fp16 for tensorrt, fp32 otherwise)")
    g = p.add_argument_group("input")
    g.add_argument("--driving", default="0", help="camera index, stream URL, video file or frame folder")
    g.add_argument("--camera-size", type=_size, default=(1280, 720), metavar="WxH",
                   help="requested camera resolution")
    g.add_argument("--camera-fps", type=positive_float(1, 240), help="requested camera fps "
                   "(for a file or folder: its frame rate)")
    g.add_argument("--no-mjpg", dest="mjpg", action="store_false", help="do not ask the camera for MJPG")
    g = p.add_argument_group("tracking and motion")
    g.add_argument("--crop", choices=("auto", "none"), default="auto",
                   help="driving frames: auto = track the face (VoxCeleb-style square); none = centre square")
    g.add_argument("--source-crop", choices=("auto", "none"), default="auto",
                   help="source portrait: auto = crop like the training data; none = use as is (centre square)")
    g.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="run the face detector every N frames (every frame while the face is lost)")
    g.add_argument("--mode", choices=("relative", "absolute"), default="relative",
                   help="relative: motion relative to a reference pose taken at start (hotkey r retakes it)")
    g.add_argument("--motion-power", type=positive_float(0, 2), default=1.0,
                   help="scale of the relative motion, 0-2")
    g.add_argument("--ease", type=positive_float(0, 60), default=1.0, metavar="SECONDS",
                   help="when the face is lost, ease back to the neutral pose with this time constant")
    g = p.add_argument_group("output")
    g.add_argument("--compose", choices=("crop", "paste"), default="crop",
                   help="crop: the animated head; paste: pasted back into the full source portrait")
    g.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="output size (aspect kept)")
    g.add_argument("--fps", type=positive_float(1, 240), help="output fps (default 30; a file output from "
                   "a video input keeps the video's fps)")
    g.add_argument("--no-vcam", dest="vcam", action="store_false", help="do not open a virtual camera")
    g.add_argument("--vcam-device", help="virtual camera device (e.g. /dev/video9)")
    g.add_argument("--vcam-backend", help="pyvirtualcam backend (v4l2loopback, obs, unitycapture)")
    g.add_argument("--preview", action="store_true", help="show input | output with stats; enables hotkeys")
    g.add_argument("--output", type=Path, metavar="FILE.mp4", help="also record to FILE.mp4 (or a PNG folder)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    g = p.add_argument_group("run")
    g.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    g.add_argument("--stats-every", type=positive_float(0, 3600), default=5.0, metavar="SECONDS",
                   help="print fps and per-stage ms this often (0: only at exit)")
    g.add_argument("--stats-json", type=Path, metavar="FILE", help="write the run's stats as JSON at exit")
    g.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    return p


def parse_config(argv=None):
    from ..live import LiveConfig

    a = build_parser().parse_args(argv)
    if a.detect_every < 1:
        raise UserError(f"--detect-every must be >= 1, got {a.detect_every}")
    if a.max_frames is not None and a.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {a.max_frames}")
    return LiveConfig(sources=tuple(a.source), driving=str(a.driving), checkpoint=a.checkpoint,
                      backend=a.backend, device=a.device, precision=a.precision, mode=a.mode,
                      motion_power=a.motion_power, source_crop=a.source_crop, crop=a.crop,
                      detect_every=a.detect_every, compose=a.compose, width=a.size[0], height=a.size[1],
                      fps=a.fps or 30.0, fps_given=a.fps is not None, camera_width=a.camera_size[0],
                      camera_height=a.camera_size[1], camera_fps=a.camera_fps, mjpg=a.mjpg, vcam=a.vcam,
                      vcam_device=a.vcam_device, vcam_backend=a.vcam_backend, preview=a.preview,
                      output=a.output, overwrite=a.overwrite, stats_json=a.stats_json,
                      stats_every=a.stats_every, max_frames=a.max_frames, ease_seconds=a.ease), a.dry_run


def list_backends(argv) -> int:
    """``lia-live backends [--device D]``: every registered backend and whether it works here."""
    from ..backends import (available_backends, backend_info, default_batch_size, default_precision, engine_dir,
                            resolve_backend_name)
    from ..runtime import resolve_device

    p = ArgumentParser(prog="lia-live backends", description="List inference backends and their availability.")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    auto = resolve_backend_name("auto", device)
    print(f"device {device}; --backend auto → {auto} ({default_precision(auto, device)}); "
          f"default --batch-size {default_batch_size(device, auto)}; engine cache {engine_dir()}")
    for name, (ok, why) in available_backends(device).items():
        print(f"  {name:<12} {'yes' if ok else 'no ':<4} {why}")
        for opt in backend_info(name).options:
            print(f"  {'':<12}      --backend-option {opt.describe()}")
    return 0


def run_bench(argv) -> int:
    """``lia-live bench ...``: the benchmark's own command line (``lia_live.cli.bench``)."""
    from .bench import main as bench_main

    return bench_main(argv)


@user_errors("lia-live")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "backends":
        return list_backends(argv[1:])
    if argv and argv[0] == "bench":
        return run_bench(argv[1:])
    cfg, dry_run = parse_config(argv)
    if dry_run:
        for k, v in asdict(cfg).items():
            print(f"{k} = {v}")
        return 0
    from ..live import run_live

    run_live(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
