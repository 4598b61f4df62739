"""Shared CLI plumbing: the exit-2 contract for user errors, option parsers, the argument parser.

Every number a user types goes through :func:`float_range` / :func:`int_range` here, at parse time: nan,
inf and out-of-range values are refused with one line (argparse's usage error, exit 2) before any work.
"""

from __future__ import annotations

import argparse
import functools
import math
import signal
import sys
from collections.abc import Callable

from ..errors import UserError, as_flag
from ..fsutil import os_error_line
from ..log import set_program
from ..signals import EXIT_CODES


def user_errors(prog: str) -> Callable:
    """Decorate a ``main(argv) -> int``: UserError → one line on stderr and exit code 2; Ctrl-C → 130.

    An ``OSError`` that reaches here with a file name (a folder that cannot be written, a full disk) is the
    user's environment, not a bug: it is reported the same way, as one line with exit code 2.
    """

    def wrap(fn):
        @functools.wraps(fn)
        def main(argv=None) -> int:
            set_program(prog)
            try:
                code = fn(argv)
                if argv is None and code in EXIT_CODES.values():
                    # stopped by a signal, everything is in place: a repeated SIGTERM while the interpreter
                    # shuts down is the same request (not a kill that turns exit 143 into death by signal)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                return code
            except UserError as e:
                print(f"{prog}: error: {e.render(as_flag)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except OSError as e:
                if e.filename is None and e.errno is None:
                    raise
                print(f"{prog}: error: {os_error_line(e, 'cannot write' if _is_write_error(e) else 'file error')}",
                      file=sys.stderr)
                return 2
        return main

    return wrap


def _is_write_error(e: OSError) -> bool:
    import errno

    return e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                       errno.EISDIR, errno.EEXIST)


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in [lo, hi] (``lo_open``/``hi_open`` exclude the bound); nan/inf refused."""

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {s!r}")
        span = _range(lo, hi, lo_open, hi_open)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}{span}, got {s}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}{span}, got {s}")
        return v

    parse.__name__ = "number"  # argparse shows "invalid number value" for foreign types
    return parse


def _range(lo, hi, lo_open, hi_open) -> str:
    if lo is None or hi is None:
        return ""
    return f" (range {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'})"


def positive_float(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    """argparse type: a finite float in [lo, hi] (kept for existing callers; see :func:`float_range`)."""
    return float_range(lo, hi)


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi]."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


class HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` only where it tells something: not for flags (store_true/false), not for
    options without a default, and not when the help text already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                argparse._StoreConstAction, argparse.BooleanOptionalAction))
                or action.default in (None, argparse.SUPPRESS, False) or "default" in text.lower()
                or not action.option_strings or "%(default)" in text):
            return text
        return text + " (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage with exit code 2 (its default) and shows useful defaults."""

    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **kw)
