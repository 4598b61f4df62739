"""One way to tell the user something: ``log(msg)`` → ``<program>: msg`` on stderr, one line.

The program name is set once by each console script (``set_program("lia-animate")``); library code never
names a program itself, so a message from shared code reads right in every tool.
"""

from __future__ import annotations

import sys

_PROGRAM = ["lia-live"]


def set_program(name: str) -> None:
    """Name the running tool (called by the CLI entry points)."""
    _PROGRAM[0] = name


def program() -> str:
    return _PROGRAM[0]


def log(msg: str) -> None:
    """Progress, warnings and notes: one line on stderr, prefixed with the tool's name."""
    print(f"{_PROGRAM[0]}: {msg}", file=sys.stderr, flush=True)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "frame")`` → "1 frame"; ``plural(3, "frame")`` → "3 frames"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
