"""``lia-animate``: animate a source portrait with a driving video or frame folder, offline."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UserError, as_flag
from ..log import log, plural
from ..offline import run_animate
from ..options import add_config_args, apply_values, parsed_values
from ..paths import check_animate_places
from ..settings import AnimateConfig
from .common import ArgumentParser, user_errors

# options that only shape how a driving video's motion is read: refused with --motion and --manipulate
DRIVING_ONLY = ("motion.mode", "motion.crop", "motion.motion_power", "motion.reference")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="lia-animate", description="Animate a source portrait with a driving video, a "
                       "frame folder or a motion template, offline.")
    add_config_args(p, AnimateConfig())
    return p


def refuse_idle_options(cfg: AnimateConfig, given: dict[str, Any]) -> None:
    """Options given on the command line that would be silently ignored in the chosen mode are refused (one line)."""
    if cfg.driving is None:
        idle = [k for k in DRIVING_ONLY if k in given]
        if idle:
            what = "a --motion template carries each frame's mode, reference and power" if cfg.template is not None \
                else "--manipulate walks one motion direction"
            raise UserError(f"{as_flag(idle[0])} applies to --driving videos only ({what}); leave it out")
    if cfg.motion.mode == "absolute":
        for key, what in (("motion.reference", "chooses the reference pose of"), ("motion.motion_power", "scales")):
            if key in given:
                raise UserError(f"{as_flag(key)} {what} relative motion; --mode absolute has none")


def check_paths(cfg: AnimateConfig) -> None:
    """Every output against every other and every input, before any work (see lia_live.paths)."""
    check_animate_places(cfg)


def parse_config(argv=None) -> AnimateConfig:
    given = parsed_values(build_parser().parse_args(argv))
    cfg = apply_values(AnimateConfig(), given)
    if sum(x is not None for x in (cfg.manipulate, cfg.driving, cfg.template)) != 1:
        raise UserError("give exactly one of --driving VIDEO_OR_FRAME_DIR, --motion FILE.npz or --manipulate K")
    if cfg.record_motion is not None and cfg.driving is None:
        raise UserError("--record-motion records the motion of a --driving video")
    refuse_idle_options(cfg, given)
    check_paths(cfg)
    return cfg


@user_errors("lia-animate")
def main(argv=None) -> int:
    res = run_animate(parse_config(argv))
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
