"""The command-line face of every tool, generated from its typed config (:mod:`lia_live.settings`).

``lia-live``, ``lia-animate``, ``lia-eval`` and ``train.run`` each declare their configuration once, as
nested dataclasses whose fields carry ``option(...)`` metadata. :func:`add_config_args` turns such a class
into argparse options (one per field, an argument group per nested group) and :func:`config_from_args` turns
the parse result back into the dataclass. Numbers are validated at parse time (:func:`float_range`,
:func:`int_range`: nan, inf and out-of-range values are one usage line, exit 2), and :func:`user_errors` is
the exit-2 contract for every other mistake a user can make.

This is not the CLI package: ``train`` and the scripts use it too, and nothing here imports
:mod:`lia_live.cli`. Flags are named in one place, :func:`lia_live.settings.field_flags`.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import math
import signal
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import os_error_line
from .log import set_program
from .settings import field_flags, flag_for, is_group, plain
from .signals import EXIT_CODES

SIZE_LIMITS = (16, 7680, 16, 4320)
_WRITE_ERRORS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                 errno.EEXIST)


# ---- the exit-2 contract -------------------------------------------------------------------------------
def user_errors(prog: str, config: type | None = None) -> Callable:
    """Decorate a ``main(argv) -> int``: UserError → one line on stderr and exit code 2; Ctrl-C → 130.

    An ``OSError`` that reaches here with a file name (a folder that cannot be written, a full disk) is the
    user's environment, not a bug: it is reported the same way, as one line with exit code 2. A UserError
    re-raised by a DataLoader worker (its text then holds the worker's traceback) is cut to its last line.
    ``config``: the tool's config class, whose declared flags name its «settings» in messages.
    """
    flag = functools.partial(flag_for, tool=config)

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
                print(f"{prog}: error: {one_line(e.render(flag))}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except OSError as e:
                if e.filename is None and e.errno is None:
                    raise
                what = "cannot write" if e.errno in _WRITE_ERRORS else "file error"
                print(f"{prog}: error: {os_error_line(e, what)}", file=sys.stderr)
                return 2
        return main

    return wrap


def one_line(text: str) -> str:
    """The user's line of an error text, also when a DataLoader worker re-raised it with its traceback."""
    text = text.strip()
    if "Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split("UserError: ", 1)[-1]
    return text


# ---- value parsers (argparse types) ---------------------------------------------------------------------
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
        span = "" if lo is None or hi is None else \
            f" (range {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'})"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}{span}, got {s}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(f"must be {'<' if hi_open else '<='} {hi:g}{span}, got {s}")
        return v

    parse.__name__ = "number"  # argparse shows "invalid number value" for foreign types
    return parse


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


def size_arg(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (even sides within 16..7680 × 16..4320)."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}") from None
    lo_w, hi_w, lo_h, hi_h = SIZE_LIMITS
    if not (lo_w <= w <= hi_w and lo_h <= h <= hi_h) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size {w}x{h}: each side must be even and within 16..7680x4320")
    return w, h


def comma_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """argparse type: a comma-separated subset of ``choices`` (order kept, repeats dropped)."""

    def parse(s: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(m.strip().lower() for m in s.split(",") if m.strip()))
        bad = [m for m in items if m not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {bad[0] if bad else s!r}; choose from {','.join(choices)}")
        return items

    parse.__name__ = "list"
    return parse


# ---- the parser ---------------------------------------------------------------------------------------
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


# ---- dataclass → options → dataclass ------------------------------------------------------------------
def _base_type(tp: Any) -> Any:
    """``int | None`` → int; ``tuple[int, int]`` → tuple; ``Path | None`` → Path."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return tuple
    if args and origin is not None:
        return _base_type(args[0])
    return tp


def _item_type(tp: Any) -> Any:
    """The element type of ``tuple[X, ...]`` / ``tuple[X, X]`` (str when unknown)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is not tuple and args:
        return _item_type(args[0])
    return args[0] if args else str


def _value_type(meta: Mapping[str, Any], tp: Any) -> Callable[[str], Any]:
    """The argparse ``type`` of one value of a field of type ``tp``."""
    rng = meta.get("range") or (None, None)
    if meta.get("parse"):
        return meta["parse"]
    if meta.get("csv"):
        return comma_list(meta["choices"])
    if tp is float:
        return float_range(*rng)
    if tp is int:
        return int_range(*rng)
    if tp is Path:
        return Path
    return str


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value and isinstance(value[0], str) else " ".join(map(str, value))
    return str(value)


def _option_kwargs(f: dataclasses.Field, tp: Any, default: Any, dest: str, help: str, label: str,
                   choices: tuple | None) -> dict:
    """argparse keyword arguments of one (non-boolean) option."""
    meta = {**f.metadata, "choices": choices or f.metadata.get("choices")}
    kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "metavar": meta.get("metavar")}
    base = _base_type(tp)
    if meta.get("repeat"):
        kw.update(action="append", type=_value_type(meta, _item_type(tp)))
    elif meta.get("nargs"):
        kw.update(nargs=meta["nargs"], type=_value_type(meta, _item_type(tp)))
    elif base is tuple and not meta.get("csv") and not meta.get("parse"):
        kw["type"] = size_arg
    else:
        kw["type"] = _value_type(meta, base)
    if meta.get("choices") and not meta.get("csv"):
        kw["choices"] = meta["choices"]
    if kw["metavar"] is None and "choices" not in kw:
        kw["metavar"] = f.name.upper()
    if kw["metavar"] is None:
        del kw["metavar"]
    if meta.get("required"):
        kw["required"] = True
    elif default not in (None, (), "") and "default" not in help:
        help = f"{help} ({label}: {_shown(default)})"
    kw["help"] = help
    return kw


def add_config_args(parser: argparse.ArgumentParser, config: Any, prefix: str = "", *,
                    default_label: str = "default", into: Any = None, group: dict | None = None,
                    only: tuple[str, ...] | None = None) -> None:
    """One option per field of the dataclass instance ``config`` (its values are the defaults shown); nested
    groups (:func:`lia_live.settings.group`) become argument groups. Values land in ``<prefix>.<field>``.

    ``group`` is the metadata of the group field ``config`` sits in: the fields that tool hides, and the
    choices it narrows (see :func:`lia_live.settings.group`); ``only`` shows just those fields of ``config``."""
    hints = typing.get_type_hints(type(config))
    target = into if into is not None else parser
    group = dict(group or {})
    if only is not None:
        group["hide"] = tuple(f.name for f in dataclasses.fields(config) if f.name not in only)
    for f in dataclasses.fields(config):
        meta = f.metadata
        if f.name in group.get("hide", ()) or (meta and not meta.get("cli", True)):
            continue
        value = getattr(config, f.name)
        dest = f"{prefix}.{f.name}" if prefix else f.name
        if is_group(f):
            sub = parser.add_argument_group(meta["group"]) if meta.get("group") else target
            add_config_args(parser, value, dest, default_label=default_label, into=sub, group=dict(meta))
            continue
        help = group.get("helps", {}).get(f.name) or meta.get("help") or f.name.replace("_", " ")
        choices = group.get("choices", {}).get(f.name)
        _add_field(target, f, hints[f.name], value, dest, help, default_label, choices, group)


def _add_field(target, f: dataclasses.Field, tp: Any, default: Any, dest: str, help: str, label: str,
               choices: tuple | None = None, group: dict | None = None) -> None:
    meta = f.metadata
    flags = list(field_flags(f, group))
    if _base_type(tp) is bool:
        if meta.get("toggle"):
            target.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{help} ({label}: {'on' if default else 'off'})")
        else:
            target.add_argument(*flags, dest=dest, action="store_false" if meta.get("negate") else "store_true",
                                default=argparse.SUPPRESS, help=help)
        return
    if meta.get("positional"):
        target.add_argument(dest, type=_value_type(meta, _base_type(tp)), help=help,
                            metavar=meta.get("metavar") or f.name.upper())
        return
    target.add_argument(*flags, **_option_kwargs(f, tp, default, dest, help, label, choices))


def parsed_values(ns: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The options given on the command line under ``prefix`` (dotted names relative to it)."""
    start = prefix + "." if prefix else ""
    return {k[len(start):]: v for k, v in vars(ns).items() if k.startswith(start)}


def config_from_args(config: Any, ns: argparse.Namespace, prefix: str = "") -> Any:
    """``config`` (a dataclass instance: the defaults) with every option given on the command line applied."""
    return apply_values(config, parsed_values(ns, prefix))


def apply_values(config: Any, values: dict[str, Any]) -> Any:
    """``config`` with ``values`` (dotted names: ``{"motion.crop": "none"}``) applied, nested groups included;
    repeated and multi-value options become tuples."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if is_group(f):
            sub = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f.name + ".")}
            if sub:
                changes[f.name] = apply_values(getattr(config, f.name), sub)
        elif f.name in values:
            v = values[f.name]
            changes[f.name] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(config, **changes)


def print_config(config: Any, prefix: str = "") -> None:
    """``--dry-run``: one ``group.name = value`` line per field (values as JSON-friendly data)."""

    def lines(values: dict, prefix: str) -> None:
        for name, value in values.items():
            if isinstance(value, dict):
                lines(value, f"{prefix}{name}.")
            else:
                print(f"{prefix}{name} = {value}")

    lines(plain(config), prefix)
