"""Load and save LIA generators.

Formats:
- official LIA training saves (``vox.pt``, ``taichi.pt``, ``ted.pt``, ``vox512.pt``): a dict with ``gen``
  (and ``dis``, ``g_optim``, ``d_optim``, ``args``: an ``argparse.Namespace``). Loaded with
  ``torch.load(weights_only=True)`` with exactly one extra allowed type, ``argparse.Namespace``;
  the architecture is inferred from the weights.
- lia-live's own ``.pt``: ``{"format": "lia-live", "version": 1, "config": {...}, "gen": state_dict, ...}``
  (tensors and primitives only).
- ``.safetensors``: the generator's state dict with the config as JSON in the metadata.

Nothing is ever unpickled with ``weights_only=False``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..fsutil import atomic_path
from .config import GeneratorConfig
from .generator import Generator

FORMAT = "lia-live"
VERSION = 1
SAFE_GLOBALS = [argparse.Namespace]


TORCH_ZIP_MAGIC = b"PK\x03\x04"


def looks_like_torch_file(path: Path) -> bool:
    """True when the file starts like a ``torch.save`` file (zip archive or a legacy pickle stream)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == TORCH_ZIP_MAGIC or head[:1] == b"\x80"


def unsafe_detail(e: BaseException) -> str | None:
    """For a weights-only refusal: the offending global it names ("" if none is named); None when the
    error is not a refusal (a damaged stream). Never the advice to turn the check off."""
    text = str(e)
    for line in text.splitlines():
        low = line.lower()
        if "unsupported global" in low or "unsupported operand" in low:
            return line.strip().split(" To allowlist")[0].split(" Re-running")[0]
    return "" if "weights only load failed" in text.lower() else None


def torch_load_safe(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` beyond plain types.

    Raises CheckpointError with one clear line for missing, truncated, non-checkpoint and unsafe files.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint is a directory, not a file: {path}")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint is empty: {path}")
        if not looks_like_torch_file(path):
            raise CheckpointError(f"not a readable PyTorch checkpoint (another file type): {path}")
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = unsafe_detail(e)
        if detail is None:
            raise CheckpointError(f"not a readable PyTorch checkpoint (damaged): {path}") from None
        hint = ": " + detail if detail else ""
        raise CheckpointError(f"refused to load {path}: it asks to run or build arbitrary Python objects"
                              f"{hint} (only tensors, plain types and argparse.Namespace are allowed)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, KeyError,
            IndexError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint is empty: {path}") from None
        raise CheckpointError(f"not a readable PyTorch checkpoint (truncated or another file type): {path} "
                              f"({first})") from None


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DistributedDataParallel / torch.compile prefixes."""
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def infer_config(sd: Mapping[str, torch.Tensor]) -> GeneratorConfig:
    """Architecture of an official-layout generator state dict, read off its weight shapes."""
    try:
        n_convs = len({k.split(".")[3] for k in sd if k.startswith("enc.net_app.convs.")})
        size = 2 ** n_convs
        style_dim = sd["enc.fc.0.weight"].shape[0]
        motion_dim = sd["dec.direction.weight"].shape[1]
        enc_first = sd["enc.net_app.convs.0.0.weight"].shape[0]
        enc_4 = sd["dec.input.input"].shape[1]
        channel_div = max(1, 512 // enc_4)
        ch_size_official = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}[size] // channel_div
        if enc_first != ch_size_official:
            raise CheckpointError(f"unexpected encoder width {enc_first} for size {size}")
        last_conv = max(int(k.split(".")[2]) for k in sd if k.startswith("dec.convs."))
        dec_last = sd[f"dec.convs.{last_conv}.conv.weight"].shape[1]
        channel_multiplier = max(1, dec_last // ch_size_official)
        return GeneratorConfig(size, style_dim, motion_dim, channel_multiplier, channel_div)
    except (KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"weights do not look like a LIA generator (cannot infer its architecture: "
                              f"{e})") from None


def build_generator(sd: Mapping[str, torch.Tensor], cfg: GeneratorConfig | None = None,
                    source: str = "checkpoint") -> Generator:
    """Generator with ``sd`` loaded strictly; a mismatch names the first missing/unexpected keys."""
    sd = _strip_prefix(sd)
    cfg = cfg or infer_config(sd)
    gen = Generator.from_config(cfg)
    own = gen.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}" + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}"
                         + (f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""))
        raise CheckpointError(f"{source} does not match the LIA generator architecture: " + "; ".join(parts))
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        k, got, want = bad[0]
        raise CheckpointError(f"{source} does not match the LIA generator architecture: {k} has shape {got}, "
                              f"expected {want}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
    gen.load_state_dict(sd, strict=True)
    return gen.eval()


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig | None]:
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - safetensors is a core dependency
        raise CheckpointError("loading .safetensors needs the 'safetensors' package") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError / OSError types
        raise CheckpointError(f"not a readable safetensors file (truncated or another type): {path} "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} is not a tensor")
    cfg = _config_from(meta["lia_live_config"], path) if "lia_live_config" in meta else None
    return sd, cfg


#: Largest values a generator config may claim: beyond them a file is damaged or foreign (a 2048-px or
#: 64k-wide LIA would need far more memory than any checkpoint of this project).
CONFIG_LIMITS = {"size": 1024, "style_dim": 4096, "motion_dim": 4096, "channel_multiplier": 8, "channel_div": 512}


def _config_from(raw: Any, path: Path) -> GeneratorConfig:
    """GeneratorConfig from checkpoint metadata (JSON text or a dict); CheckpointError for anything malformed."""
    try:
        d = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                raise ValueError(f"{k} must be an integer, got {v!r}")
            if k in CONFIG_LIMITS and not 1 <= int(v) <= CONFIG_LIMITS[k]:
                raise ValueError(f"{k} = {v} is outside [1, {CONFIG_LIMITS[k]}]")
        return GeneratorConfig.from_dict(d)
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: malformed generator config in its metadata ({first})") from None


def read_generator_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], GeneratorConfig | None, dict]:
    """(generator state dict, stored config or None, the whole checkpoint dict) of any supported file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        sd, cfg = _load_safetensors(path)
        return sd, cfg, {}
    ckpt = torch_load_safe(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is a PyTorch file but not a LIA checkpoint (holds {type(ckpt).__name__})")
    cfg = None
    if ckpt.get("format") == FORMAT:
        if "config" not in ckpt:
            raise CheckpointError(f"{path}: lia-live checkpoint without its generator config")
        cfg = _config_from(ckpt["config"], path)
    if "gen" in ckpt and isinstance(ckpt["gen"], dict):
        sd = ckpt["gen"]
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: generator entry {str(bad[0])!r} is not a tensor "
                                  f"({type(sd[bad[0]]).__name__}); the file is damaged or not a LIA checkpoint")
    elif all(isinstance(v, torch.Tensor) for v in ckpt.values()) and any(k.startswith(("enc.", "dec.")) for k in ckpt):
        sd = ckpt  # a bare generator state dict
    else:
        keys = ", ".join(list(map(str, ckpt))[:6])
        raise CheckpointError(f"{path} holds no generator weights (no 'gen' entry; top-level keys: {keys})")
    return sd, cfg, ckpt


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a LIA generator from an official or lia-live checkpoint (``.pt`` or ``.safetensors``), in eval mode."""
    sd, cfg, _ = read_generator_state(path)
    return build_generator(sd, cfg, source=str(path)).to(device)


def save_generator(gen: Generator, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Save in lia-live format (``.pt``) or as ``.safetensors``, atomically (temp file + rename)."""
    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        meta = {"lia_live_config": json.dumps(gen.config.to_dict()), "format": FORMAT, "version": str(VERSION)}
        with atomic_path(path) as tmp:
            save_file(sd, str(tmp), metadata=meta)
    else:
        obj = {"format": FORMAT, "version": VERSION, "config": gen.config.to_dict(), "gen": sd, **(extra or {})}
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    return path
