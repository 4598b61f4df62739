"""One way to tell the user something: ``log(msg)`` → ``<program>: msg`` on stderr, one line.

The program name is set once by each console script (``set_program("lia-animate")``); library code never
names a program itself, so a message from shared code reads right in every tool.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from .errors import UserError, as_flag

_PROGRAM = ["lia-live"]
_FLAGS = [False]  # a command-line tool is running: show «settings» as its flags


def set_program(name: str, flags: bool = True) -> None:
    """Name the running tool (called by the CLI entry points, which also name settings as flags)."""
    _PROGRAM[0] = name
    _FLAGS[0] = flags


def program() -> str:
    return _PROGRAM[0]


def render(msg: str) -> str:
    """``msg`` as the running tool says it: each ``«setting»`` as its flag in a command-line tool, else as the
    setting's name."""
    return UserError(msg).render(as_flag if _FLAGS[0] else (lambda n: n)) if "«" in msg else msg


def log(msg: str) -> None:
    """Progress, warnings and notes: one line on stderr, prefixed with the tool's name."""
    print(f"{_PROGRAM[0]}: {render(msg)}", file=sys.stderr, flush=True)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "frame")`` → "1 frame"; ``plural(3, "frame")`` → "3 frames"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def progress_bar(total: int | None, desc: str, unit: str = "frame", enabled: bool = True, initial: int = 0) -> Any:
    """The one progress bar of every tool (on stderr; ``enabled=False``: a silent stand-in with the same
    methods: ``update``, ``set_postfix``, ``set_postfix_str``, ``close``)."""
    return tqdm(total=total or None, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not enabled)
