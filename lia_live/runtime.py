"""What every tool resolves before it runs the model: the device, the checkpoint, the animator.

Below the CLIs and above the model: the live loop, the offline job, the benchmark and the evaluation all
call these, and none of them knows the command line exists.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .log import log
from .settings import ModelConfig

if TYPE_CHECKING:
    import torch

    from .animator import Animator

DEFAULT_CHECKPOINTS = ("checkpoints/vox.pt", "checkpoints/vox.safetensors")
CHECKPOINT_HELP = ("Official LIA checkpoints (vox.pt, taichi.pt, ted.pt: the authors' release, CC BY-NC 4.0) "
                   "go in ./checkpoints/, or give the file's path («checkpoint» or $LIA_CHECKPOINT).")
DEVICES_HELP = "cpu, cuda, cuda:N or auto"


def canonical_device(device: str | torch.device) -> torch.device:
    """The one form in which every module stores and compares a device: what a tensor on it reports.

    ``torch.device("cuda") != torch.device("cuda:0")`` although a tensor made on either reports ``cuda:0``,
    and ``torch.device("cpu:0") != torch.device("cpu")`` although a CPU tensor reports ``cpu``. So CUDA (and
    other indexed accelerators) get their index — the current device when none is given — and CPU none.
    Compare devices only through this (or :func:`same_device`), never with ``torch.device(...) ==``.
    """
    import torch  # heavy: the CLIs import this module before they know they will run a model

    dev = torch.device(device)
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.index is None:
        mod = getattr(torch, dev.type, None)
        current = getattr(mod, "current_device", None)
        return torch.device(dev.type, current() if callable(current) else 0)
    return dev


def same_device(a: str | torch.device, b: str | torch.device) -> bool:
    """Whether ``a`` and ``b`` name the same device, whatever form each is written in."""
    return canonical_device(a) == canonical_device(b)


def device_context(device: str | torch.device) -> contextlib.AbstractContextManager:
    """``torch.cuda.device(device)`` for a CUDA device (the current device is per thread and defaults to
    cuda:0: streams, captures and compilation must see ``--device cuda:1``), else a no-op."""
    dev = canonical_device(device)
    if dev.type == "cuda":
        import torch

        return torch.cuda.device(dev)
    return contextlib.nullcontext()


def synchronize(device: str | torch.device) -> None:
    """Wait until all work queued on ``device`` (every stream) is done; nothing to wait for on a CPU.

    Before the live stages start: the source latent and a reduced-precision model copy are made on the main
    thread's default stream, which the stages' own streams do not wait on."""
    dev = canonical_device(device)
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize(dev)


def resolve_device(name: str) -> str:
    """'auto' → cuda when PyTorch sees a GPU, else cpu; check cpu / cuda / cuda:N. Returns the canonical
    form (:func:`canonical_device`): ``cpu`` or ``cuda:N`` with the index filled in."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("cpu", "cpu:0"):
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"device {name} asked for, but this PyTorch sees no CUDA GPU "
                            f"(torch {torch.__version__}); use cpu")
        index = int(name[5:]) if ":" in name else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise UserError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    raise UserError(f"unsupported device {name!r}; use {DEVICES_HELP}")


def model_device(cfg: ModelConfig) -> str:
    """The device a model config runs on (:func:`resolve_device`), with its CPU thread count applied."""
    import torch

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    return resolve_device(cfg.device)


def demo_checkpoint() -> Path | None:
    """The small pipeline-demo generator shipped inside the package, if present."""
    p = Path(__file__).resolve().parent / "assets" / "demo_generator.safetensors"
    return p if p.is_file() else None


def resolve_checkpoint(arg: str | os.PathLike | None, allow_demo: bool = True,
                       say: Callable[[str], None] = log) -> Path:
    """The given path, else checkpoints/vox.pt, else $LIA_CHECKPOINT, else the bundled demo model (said)."""
    if arg:
        p = Path(arg)
        if not p.exists():
            raise UserError(f"checkpoint not found: {p}. {CHECKPOINT_HELP}")
        if p.is_dir():
            raise UserError(f"checkpoint is a folder, not a file: {p}")
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
        say(f"note: no official checkpoint found; using the bundled pipeline-demo model ({demo.name}). "
            f"{CHECKPOINT_HELP}")
        return demo
    raise UserError(f"no checkpoint given and none found in ./checkpoints/. {CHECKPOINT_HELP}")


def make_animator(cfg: ModelConfig, motion_power: float = 1.0, announce: bool = True,
                  say: Callable[[str], None] = log) -> Animator:
    """Load the checkpoint on the resolved device and backend, and say loudly (through ``say``) what runs
    where."""
    import torch

    from .animator import Animator
    from .backends import parse_backend_options, resolve_backend_name
    from .model.checkpoint import load_generator

    device = model_device(cfg)
    ckpt = resolve_checkpoint(cfg.checkpoint, say=say)
    backend = resolve_backend_name(cfg.backend, device)
    gen = load_generator(ckpt, device=device)
    anim = Animator(gen, backend=backend, device=device, precision=cfg.precision, motion_power=motion_power,
                    options=parse_backend_options(cfg.backend_options))
    anim.checkpoint = ckpt
    if announce:
        say(f"model {ckpt} ({anim.size}²) | backend {anim.backend.name} | device {anim.device} | "
            f"precision {anim.backend.precision}")
        if anim.device.type == "cpu" and torch.cuda.is_available():
            say(f"WARNING: a CUDA GPU ({torch.cuda.get_device_name(0)}) is available but not used; "
                f"set «device» to cuda (or auto) for real-time speed")
    return anim
