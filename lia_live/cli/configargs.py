"""Build argparse groups from the config dataclasses of :mod:`lia_live.settings`, and configs from the result.

Every option is declared once, on its dataclass field (help, range, choices, flag); the CLIs only choose
which config groups they expose. Numbers are validated at parse time (finite, within the field's range).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from .common import positive_float

SIZE_LIMITS = (16, 7680, 16, 4320)


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


def int_range(lo: int, hi: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside [{lo}, {hi}]")
        return v
    parse.__name__ = "integer"  # argparse shows "invalid integer value"
    return parse


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """``int | None`` → int; ``tuple[int, int]`` → tuple; ``Path | None`` → Path."""
    if isinstance(tp, str):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return tuple
    if args and origin is not None and origin is not tuple:
        return _base_type(args[0])
    return tp


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, dest_prefix: str,
                    skip: tuple[str, ...] = (), helps: dict[str, str] | None = None) -> None:
    """One option per CLI field of dataclass ``cls``; values land in ``<dest_prefix>.<field>``."""
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta or not meta.get("cli", True) or f.name in skip:
            continue
        dest = f"{dest_prefix}.{f.name}"
        kw: dict[str, Any] = {"dest": dest, "help": (helps or {}).get(f.name, meta.get("help", "")),
                              "default": argparse.SUPPRESS}
        kw["metavar"] = meta.get("metavar") or f.name.upper()
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if tp is bool:
            del kw["metavar"]
            if meta.get("negate"):
                parser.add_argument(meta["negate"], action="store_false", **kw)
            else:
                parser.add_argument(_flag(f), action="store_true", **kw)
            continue
        if meta.get("repeat"):
            item = typing.get_args(hints[f.name])[0] if typing.get_args(hints[f.name]) else str
            kw["type"] = Path if item is Path else str
            parser.add_argument(_flag(f), action="append", **kw)
            continue
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
            del kw["metavar"]
        rng = meta.get("range")
        if f.name == "size" or tp is tuple:
            kw["type"] = size_arg
        elif tp is float:
            kw["type"] = positive_float(*(rng or (None, None)))
        elif tp is int:
            kw["type"] = int_range(*(rng or (-2**63, 2**63 - 1)))
        elif tp is Path:
            kw["type"] = Path
        if default not in (None, (), "") and "default" not in kw["help"]:
            shown = "x".join(map(str, default)) if isinstance(default, tuple) else default
            kw["help"] = f"{kw['help']} (default: {shown})"
        parser.add_argument(_flag(f), **kw)


def config_from_args(cls: type, ns: argparse.Namespace, dest_prefix: str, **fixed: Any) -> Any:
    """Build ``cls`` from the values parsed under ``dest_prefix``; unset options keep the dataclass defaults."""
    values = {k.split(".", 1)[1]: v for k, v in vars(ns).items() if k.startswith(dest_prefix + ".")}
    for f in dataclasses.fields(cls):
        if f.metadata.get("repeat") and f.name in values:
            values[f.name] = tuple(values[f.name])
    return cls(**{**values, **fixed})


def add_model_args(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None,
                   helps: dict[str, str] | None = None) -> None:
    """The model options every tool shares (``--checkpoint --device --backend --precision --backend-option``),
    declared once on :class:`lia_live.settings.ModelConfig`; ``only`` keeps a subset."""
    from ..settings import ModelConfig

    names = {f.name for f in dataclasses.fields(ModelConfig)}
    skip = tuple(names - set(only)) if only is not None else ()
    add_config_args(parser.add_argument_group("model"), ModelConfig, "model", skip=skip, helps=helps)


def model_config(ns: argparse.Namespace):
    """The :class:`~lia_live.settings.ModelConfig` parsed by :func:`add_model_args`."""
    from ..settings import ModelConfig

    return config_from_args(ModelConfig, ns, "model")
