"""Shared CLI plumbing: the exit-2 contract for user errors, option parsers, the argument parser."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable

from ..errors import UserError, as_flag
from ..log import set_program


def user_errors(prog: str) -> Callable:
    """Decorate a ``main(argv) -> int``: UserError → one line on stderr and exit code 2; Ctrl-C → 130."""

    def wrap(fn):
        @functools.wraps(fn)
        def main(argv=None) -> int:
            set_program(prog)
            try:
                return fn(argv)
            except UserError as e:
                print(f"{prog}: error: {e.render(as_flag)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
        return main

    return wrap


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
