"""``lia-live``: animate a portrait with your webcam and send it to a virtual camera, in real time.

    lia-live --source face.png                      # webcam 0 → virtual camera
    lia-live --source a.png --source b.png --preview
    lia-live --source face.png --driving clip.mp4 --output out.mp4 --no-vcam
    lia-live backends                               # which inference backends work here
    lia-live bench ...                              # speed benchmark (lia_live.cli.bench)
    lia-live serve                                  # animate for --remote clients (lia_live.cli.serve)
    lia-live --source face.png --remote HOST:PORT --remote-token TOKEN   # the model runs on that server
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ..log import log
from ..remote.settings import RemoteConfig
from ..settings import CaptureConfig, LiveConfig, ModelConfig, MotionConfig, OutputConfig, RunConfig
from .common import ArgumentParser, user_errors
from .configargs import add_config_args, config_from_args

SUBCOMMANDS = ("backends", "bench", "serve", "ui")


GROUPS = (("model", ModelConfig, "model"), ("capture", CaptureConfig, "input"),
          ("motion", MotionConfig, "tracking and motion"), ("output", OutputConfig, "output"),
          ("run", RunConfig, "run"))


def build_parser() -> ArgumentParser:
    from ..live import HOTKEY_HELP

    p = ArgumentParser(prog="lia-live", description="Animate a portrait with a webcam (or a video) and send it "
                       "to a virtual camera, a preview window and/or a file. Subcommands: 'lia-live backends', "
                       "'lia-live bench ...', 'lia-live serve ...', 'lia-live ui ...' (the control panel).",
                       epilog=HOTKEY_HELP + ". Full guide: docs/live.md",
                       formatter_class=argparse.HelpFormatter)
    p.add_argument("--source", action="append", required=True, type=Path, metavar="IMAGE",
                   help="source portrait; repeat for several (hotkey n switches)")
    for name, cls, title in GROUPS:
        add_config_args(p.add_argument_group(title), cls, name)
    add_config_args(p.add_argument_group("remote (the model runs on a 'lia-live serve' server)"), RemoteConfig,
                    "remote")
    p.add_argument("--dry-run", action="store_true", help="check the inputs, print the resolved configuration "
                   "and exit")
    return p


def parse_config(argv=None):
    a = build_parser().parse_args(argv)
    groups = {name: config_from_args(cls, a, name) for name, cls, _ in GROUPS}
    return LiveConfig(sources=tuple(a.source), **groups), a.dry_run


def parse_remote(argv=None) -> RemoteConfig:
    """The remote-mode settings of the same command line (``--remote`` and friends)."""
    return config_from_args(RemoteConfig, build_parser().parse_args(argv), "remote")


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


def list_backends(argv) -> int:
    """``lia-live backends [--device D]``: every registered backend and whether it works here."""
    from ..backends import (
        available_backends,
        backend_info,
        default_batch_size,
        default_precision,
        engine_dir,
        resolve_backend_name,
    )
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
    if argv and argv[0] == "serve":
        from .serve import main as serve_main

        return serve_main(argv[1:])
    if argv and argv[0] == "ui":
        from .ui import main_ui

        return main_ui(argv[1:])
    cfg, dry_run = parse_config(argv)
    remote = parse_remote(argv)
    portraits = check_inputs(cfg)
    if dry_run:
        for group, values in cfg.to_dict().items():
            if isinstance(values, dict):
                for k, v in values.items():
                    print(f"{group}.{k} = {v}")
            else:
                print(f"{group} = {values}")
        for k, v in vars(remote).items():
            print(f"remote.{k} = {'***' if k == 'remote_token' and v else v}")
        return 0
    from ..live import run_live

    if remote.remote is not None:
        from ..remote.client import run_remote

        stats = run_remote(cfg, remote, run=functools.partial(run_live, portraits=portraits))
    else:
        stats = run_live(cfg, portraits=portraits)
    return int(stats.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
