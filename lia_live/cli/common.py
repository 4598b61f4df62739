"""Shared CLI plumbing: the exit-2 contract for user errors, device and checkpoint resolution."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Callable

from ..errors import UserError

DEFAULT_CHECKPOINTS = ("checkpoints/vox.pt", "checkpoints/vox.safetensors")
CHECKPOINT_HELP = ("Official LIA checkpoints (vox.pt, taichi.pt, ted.pt: the authors' release, CC BY-NC 4.0) "
                   "go in ./checkpoints/ or are named with --checkpoint / $LIA_CHECKPOINT.")


def user_errors(prog: str) -> Callable:
    """Decorate a ``main(argv) -> int``: UserError → one line on stderr and exit code 2; Ctrl-C → 130."""

    def wrap(fn):
        @functools.wraps(fn)
        def main(argv=None) -> int:
            try:
                return fn(argv)
            except UserError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
        return main

    return wrap


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but this PyTorch sees no CUDA GPU "
                        f"(torch {torch.__version__}); use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda") and name != "mps":
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return name


def demo_checkpoint() -> Path | None:
    """The small pipeline-demo generator shipped inside the package, if present."""
    p = Path(__file__).resolve().parent.parent / "assets" / "demo_generator.safetensors"
    return p if p.is_file() else None


def resolve_checkpoint(arg: str | None, allow_demo: bool = True) -> Path:
    """--checkpoint, else checkpoints/vox.pt, else $LIA_CHECKPOINT, else the bundled demo model."""
    if arg:
        p = Path(arg)
        if not p.exists():
            raise UserError(f"checkpoint not found: {p}. {CHECKPOINT_HELP}")
        return p
    for c in DEFAULT_CHECKPOINTS:
        if Path(c).is_file():
            return Path(c)
    env = os.environ.get("LIA_CHECKPOINT")
    if env:
        if not Path(env).is_file():
            raise UserError(f"$LIA_CHECKPOINT points to a missing file: {env}")
        return Path(env)
    demo = demo_checkpoint() if allow_demo else None
    if demo is not None:
        print(f"note: no official checkpoint found; using the bundled pipeline-demo model ({demo.name}). "
              f"{CHECKPOINT_HELP}", file=sys.stderr)
        return demo
    raise UserError(f"no checkpoint given and none found in ./checkpoints/. {CHECKPOINT_HELP}")


def positive_float(lo: float | None = None, hi: float | None = None):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is outside [{lo}, {hi}]")
        return v
    return parse


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage with exit code 2 (its default) and shows defaults."""

    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*a, **kw)
