"""``lia-animate``: animate a source portrait with a driving video or frame folder, offline."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, as_flag
from ..log import log, plural
from ..paths import Place, check_places
from ..settings import ModelConfig
from .common import ArgumentParser, float_range, int_range, user_errors
from .configargs import add_model_args, model_config


@dataclass(frozen=True)
class AnimateConfig:
    source: Path
    driving: Path | None
    output: Path
    model: ModelConfig = ModelConfig()
    mode: str = "relative"
    crop: str = "none"
    source_crop: str = "none"
    fps: float | None = None
    max_frames: int | None = None
    motion_power: float = 1.0
    manipulate: int | None = None
    range: tuple[float, float] = (-3.0, 3.0)
    steps: int = 16
    overwrite: bool = False
    progress: bool = True
    batch_size: int | None = None
    reference: str = "first"
    motion: Path | None = None
    record_motion: Path | None = None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="lia-animate", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--source", required=True, type=Path, help="source portrait image")
    p.add_argument("--driving", type=Path, help="driving video file or folder of frames (sorted by name)")
    p.add_argument("--output", required=True, type=Path,
                   help="OUT.mp4 (H.264 at the driving fps, with its audio) or a folder for PNG frames")
    p.add_argument("--mode", choices=("relative", "absolute"),
                   help="relative (default): motion relative to the first driving frame (official demo); "
                        "absolute: the driving frame's own motion (official evaluation)")
    p.add_argument("--crop", choices=("auto", "none"),
                   help="driving frames: 'none' (default) resizes whole frames (official); 'auto' tracks and crops "
                        "the face")
    p.add_argument("--source-crop", choices=("auto", "none"), default="none",
                   help="source portrait: 'auto' crops the face like the training data")
    p.add_argument("--fps", type=float_range(0, 1000, lo_open=True),
                   help="fps of a frame folder / override the output fps")
    p.add_argument("--max-frames", type=int_range(1, 10**9), help="stop after this many driving frames")
    p.add_argument("--motion-power", type=float_range(0, 2), help="scale of relative motion (0-2; default 1)")
    p.add_argument("--manipulate", type=int_range(0, 4095), metavar="K",
                   help="instead of driving: walk the source along motion direction K (official linear manipulation)")
    p.add_argument("--range", type=float_range(-100, 100), nargs=2, default=(-3.0, 3.0), metavar=("LO", "HI"),
                   help="magnitudes swept by --manipulate")
    p.add_argument("--steps", type=int_range(1, 100000), default=16, help="frames rendered by --manipulate")
    p.add_argument("--reference", choices=("first", "auto", "landmarks"),
                   help="relative mode's reference pose: first (default) = the first driving frame (official demo); "
                        "auto = "
                        "the driving frame whose motion is nearest the portrait's own pose; landmarks = the driving "
                        "frame whose face-mesh head pose and mouth/eye openness are nearest the portrait's")
    p.add_argument("--motion", type=Path, metavar="FILE.npz",
                   help="instead of --driving: replay a motion template recorded with --record-motion")
    p.add_argument("--record-motion", type=Path, metavar="FILE.npz",
                   help="also record the per-frame motion as a template (no face pixels; see docs/live.md)")
    p.add_argument("--batch-size", type=int_range(1, 1024), metavar="N",
                   help="frames per model step (default: 8 on CUDA, 1 on CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (or --record-motion file)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    add_model_args(p)
    return p


# options that only shape how a driving video's motion is read: refused with --motion and --manipulate
DRIVING_ONLY = {"mode": "relative", "crop": "none", "motion_power": 1.0, "reference": "first"}


def refuse_idle_options(a) -> None:
    """Options that would be silently ignored in the chosen mode are refused (one line), then defaulted."""
    if a.driving is None:
        given = [k for k in DRIVING_ONLY if getattr(a, k) is not None]
        if given:
            what = "a --motion template carries each frame's mode, reference and power" if a.motion is not None \
                else "--manipulate walks one motion direction"
            raise UserError(f"{as_flag(given[0])} applies to --driving videos only ({what}); leave it out")
    if a.mode == "absolute":
        for k, what in (("reference", "chooses the reference pose of"), ("motion_power", "scales")):
            if getattr(a, k) is not None:
                raise UserError(f"{as_flag(k)} {what} relative motion; --mode absolute has none")
    for k, v in DRIVING_ONLY.items():
        if getattr(a, k) is None:
            setattr(a, k, v)


def check_paths(a) -> None:
    """Every output against every other and every input, before any work (see lia_live.paths)."""
    check_places([Place("output", a.output, "writer"),
                  Place("record_motion", a.record_motion, what="motion recording")],
                 [Place("source", a.source), Place("driving", a.driving), Place("motion", a.motion),
                  Place("checkpoint", getattr(a, "model.checkpoint", None))], a.overwrite)


def parse_config(argv=None) -> AnimateConfig:
    a = build_parser().parse_args(argv)
    if sum(x is not None for x in (a.manipulate, a.driving, a.motion)) != 1:
        raise UserError("give exactly one of --driving VIDEO_OR_FRAME_DIR, --motion FILE.npz or --manipulate K")
    if a.record_motion is not None and a.driving is None:
        raise UserError("--record-motion records the motion of a --driving video")
    refuse_idle_options(a)
    check_paths(a)
    return AnimateConfig(source=a.source, driving=a.driving, output=a.output, model=model_config(a),
                         mode=a.mode, crop=a.crop, source_crop=a.source_crop, fps=a.fps, max_frames=a.max_frames,
                         motion_power=a.motion_power, manipulate=a.manipulate, range=tuple(a.range),
                         steps=a.steps, overwrite=a.overwrite, progress=a.progress, batch_size=a.batch_size,
                         reference=a.reference, motion=a.motion, record_motion=a.record_motion)


@user_errors("lia-animate")
def main(argv=None) -> int:
    cfg = parse_config(argv)
    from ..offline import run_animate

    res = run_animate(cfg)
    if res.signal_exit is not None:
        if res.frames:
            log(f"stopped early: wrote {plural(res.frames, 'frame')} (a shorter, complete output) to {res.output}")
        else:
            log("stopped before any frame was rendered; nothing was written")
        return res.signal_exit
    note = " (the driving video ended early: see the warning above)" if res.truncated_input else ""
    log(f"wrote {plural(res.frames, 'frame')} to {res.output}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
