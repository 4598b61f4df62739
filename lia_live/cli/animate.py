"""``lia-animate``: animate a source portrait with a driving video or frame folder, offline."""

from __future__ import annotations

import sys

from ..errors import UserError
from ..fsutil import check_output_path
from ..log import log, plural
from ..offline import run_animate
from ..options import add_config_args, config_from_args
from ..settings import AnimateConfig
from .common import ArgumentParser, user_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="lia-animate", description="Animate a source portrait with a driving video, a "
                       "frame folder or a motion template, offline.")
    add_config_args(p, AnimateConfig())
    return p


def parse_config(argv=None) -> AnimateConfig:
    cfg = config_from_args(AnimateConfig(), build_parser().parse_args(argv))
    if sum(x is not None for x in (cfg.manipulate, cfg.driving, cfg.template)) != 1:
        raise UserError("give exactly one of --driving VIDEO_OR_FRAME_DIR, --motion FILE.npz or --manipulate K")
    if cfg.record_motion is not None:
        if cfg.driving is None:
            raise UserError("«record_motion» records the motion of a --driving video")
        check_output_path(cfg.record_motion, cfg.overwrite, "motion recording")
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
