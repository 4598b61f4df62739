"""Training checkpoints: atomic writes, keep the last K, find the newest, load with ``weights_only=True``.

A checkpoint is a lia-live ``.pt`` (``format``, ``version``, ``config``, ``gen``) so ``load_generator``
and ``lia-animate`` read it directly, plus ``dis``, ``g_optim``, ``d_optim``, ``iter`` (iterations done),
``train_config`` (plain dict) and ``rng`` (RNG states as tensors). Only tensors and primitives.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from lia_live.errors import UserError
from lia_live.model.checkpoint import FORMAT, save_generator, torch_load_safe

NAME = re.compile(r"^ckpt-(\d{7,})\.pt$")


def checkpoint_path(folder: Path, iteration: int) -> Path:
    return folder / f"ckpt-{iteration:07d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoints (temp files of interrupted writes are ignored), oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def newest_checkpoint(folder: Path) -> Path | None:
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def _cpu(obj: Any) -> Any:
    """Deep copy of a state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def _default_permissions(path: Path) -> None:
    """Temp files are created 0600; give the finished checkpoint the usual umask permissions."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_checkpoint(folder: Path, iteration: int, gen, dis, g_optim, d_optim, train_config: dict,
                    keep: int) -> Path:
    """Write ``ckpt-<iter>.pt`` atomically (temp file + rename), then delete all but the newest ``keep``."""
    path = checkpoint_path(folder, iteration)
    extra = {"dis": _cpu(dis.state_dict()), "g_optim": _cpu(g_optim.state_dict()),
             "d_optim": _cpu(d_optim.state_dict()), "iter": int(iteration), "train_config": dict(train_config),
             "rng": rng_state()}
    save_generator(gen, path, extra=extra)
    _default_permissions(path)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def newest_readable_before(path: Path) -> Path | None:
    """The newest checkpoint older than ``path`` in its folder that loads (for a damaged newest one)."""
    older = [p for p in list_checkpoints(path.parent) if NAME.match(p.name) and p.name < path.name]
    for p in reversed(older):
        try:
            load_checkpoint(p)
        except UserError:
            continue
        return p
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint (``weights_only=True``); UserError when it is not one of ours."""
    ckpt = torch_load_safe(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "iter" not in ckpt:
        raise UserError(f"{path} is not a lia-live training checkpoint (no format/iter entries)")
    for key in ("gen", "dis", "g_optim", "d_optim"):
        if key not in ckpt:
            raise UserError(f"{path} is missing '{key}'; cannot resume from it")
    return ckpt
