"""``lia-live``: animate a portrait with your webcam and send it to a virtual camera, in real time.

    lia-live --source face.png                      # webcam 0 → virtual camera
    lia-live --source a.png --source b.png --preview
    lia-live --source face.png --driving clip.mp4 --output out.mp4 --no-vcam
    lia-live backends                               # which inference backends work here
    lia-live bench ...                              # speed benchmark (lia_live.cli.bench)
    lia-live convert vox.pt vox.safetensors         # an official checkpoint in lia-live's format
    lia-live engines build ...                      # TensorRT / ONNX engines ahead of time
    lia-live serve                                  # animate for --remote clients (lia_live.cli.serve)
    lia-live --source face.png --remote HOST:PORT --remote-token TOKEN   # the model runs on that server
    lia-live ui                                     # the control panel (lia_live.cli.ui)
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from ..log import log
from ..options import add_config_args, config_from_args, print_config
from ..remote.settings import RemoteConfig
from ..settings import LiveConfig
from . import backends, bench, convert, engines, serve, ui
from .common import ArgumentParser, user_errors

# ``lia-live NAME ...`` runs NAME's own command line: name → (its main(argv) -> exit code, what it does).
SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "backends": (backends.main, "which inference backends work here"),
    "bench": (bench.main, "speed benchmark of every backend"),
    "convert": (convert.main, "an official checkpoint in lia-live's format"),
    "engines": (engines.main, "build TensorRT / ONNX engines ahead of time"),
    "serve": (serve.main, "animate for --remote clients"),
    "ui": (ui.main_ui, "the control panel"),
}


def build_parser() -> ArgumentParser:
    from ..live import HOTKEY_HELP

    commands = ", ".join(f"'lia-live {name}' ({what})" for name, (_, what) in SUBCOMMANDS.items())
    p = ArgumentParser(prog="lia-live", description="Animate a portrait with a webcam (or a video) and send it "
                       f"to a virtual camera, a preview window and/or a file. Subcommands: {commands}; each has "
                       "--help.", epilog=HOTKEY_HELP + ". Full guide: docs/live.md")
    add_config_args(p, LiveConfig())
    add_config_args(p, RemoteConfig(), "remote",
                    into=p.add_argument_group("remote (the model runs on a 'lia-live serve' server)"))
    p.add_argument("--dry-run", action="store_true", help="check the inputs, print the resolved configuration "
                   "and exit")
    return p


def parse_args(argv=None) -> tuple[LiveConfig, RemoteConfig, bool]:
    """The live config, the remote-mode settings (``--remote`` and friends) and ``--dry-run``."""
    a = build_parser().parse_args(argv)
    return config_from_args(LiveConfig(), a), config_from_args(RemoteConfig(), a, "remote"), a.dry_run


def parse_config(argv=None) -> tuple[LiveConfig, bool]:
    cfg, _, dry_run = parse_args(argv)
    return cfg, dry_run


def parse_remote(argv=None) -> RemoteConfig:
    """The remote-mode settings of the same command line (``--remote`` and friends)."""
    return parse_args(argv)[1]


def check_inputs(cfg: LiveConfig) -> list:
    """What --dry-run (and every run) checks before loading anything: the inputs exist and can be read, the
    outputs can be written. Returns the source portraits read (the run uses them: each is read once)."""
    from ..io import check_driving
    from ..live import check_outputs, read_sources
    from ..paths import regular_file
    from ..templates import read_offsets

    portraits = read_sources(cfg.sources)
    check_driving(cfg.capture.driving)
    if cfg.model.checkpoint is not None:
        regular_file(cfg.model.checkpoint, "checkpoint")  # not found, a folder, a device: one line
    check_outputs(cfg)  # every output against the others and the inputs; --offsets' folder is writable
    if cfg.motion.offsets is not None and Path(cfg.motion.offsets).exists():
        read_offsets(cfg.motion.offsets)  # its values now (their count once the model is known)
    m = cfg.motion
    idle = [f"--reference {m.reference}"] * (m.reference != "first") + \
        [f"--motion-power {m.motion_power:g}"] * (m.motion_power != 1.0)
    if m.mode == "absolute" and idle:
        verb, they = ("shapes", "it applies") if len(idle) == 1 else ("shape", "they apply")
        log(f"warning: {' and '.join(idle)} {verb} relative motion; with --mode absolute {they} only once "
            "hotkey m switches to relative mode")
    return portraits


@user_errors("lia-live")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]][0](argv[1:])
    cfg, remote, dry_run = parse_args(argv)
    portraits = check_inputs(cfg)
    if dry_run:
        print_config(cfg)
        print_config(dataclasses.replace(remote, remote_token="***" if remote.remote_token else None), "remote.")
        return 0
    from ..live import run_live

    if remote.remote is not None:
        from ..remote.session import run_remote

        stats = run_remote(cfg, remote, run=functools.partial(run_live, portraits=portraits))
    else:
        stats = run_live(cfg, portraits=portraits)
    return int(stats.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
