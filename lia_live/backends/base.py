"""The small interface every inference backend implements, and the name registry.

A backend runs the three tensor stages of LIA on some engine:
- ``encode_source(img)``: once per source portrait → (latent w_src, skip features, α_src);
- ``encode_motion(img)``: per frame → α (B, motion_dim);
- ``synthesize(latent, feats)``: per frame → image (B, 3, S, S).
The latent arithmetic (α·Qᵀ, reference, power) is done by the caller with the constant basis Q.
The pipeline never branches on a backend's name: it asks the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import UserError
from ..model import Generator

PRECISIONS = ("fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class SourceState:
    """Everything per-source that the per-frame path reuses."""

    latent: torch.Tensor  # (B, D) appearance latent w_src, float32
    feats: list[torch.Tensor]  # skip features at 8, 16, ..., S, in the backend's dtype
    alpha: torch.Tensor  # (B, M) motion magnitudes of the source, float32


class Backend:
    """Base class. Subclasses override the three stages; inputs/outputs are float32 on ``device``."""

    name = "base"

    def __init__(self, generator: Generator, device: str | torch.device = "cpu", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.config = generator.config
        self.generator = generator.eval().to(self.device)
        with torch.no_grad():
            self.basis = generator.dec.direction.basis().detach().float().clone()  # (D, M)

    def encode_source(self, img: torch.Tensor) -> SourceState:
        raise NotImplementedError

    def encode_motion(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesize(self, latent: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.precision}, {self.device})"


@dataclass
class BackendInfo:
    name: str
    factory: Callable[..., Backend]
    available: Callable[[torch.device], tuple[bool, str]]
    priority: int = 0  # higher wins for --backend auto
    precisions: tuple[str, ...] = field(default=PRECISIONS)
    default_precision: str = "fp32"  # what the backend is meant to run at (tensorrt: fp16)
    cpu_priority: int | None = None  # overrides ``priority`` for --backend auto on CPU devices

    def rank(self, device: torch.device) -> int:
        """Priority for ``auto`` on ``device``."""
        if device.type == "cpu" and self.cpu_priority is not None:
            return self.cpu_priority
        return self.priority


_REGISTRY: dict[str, BackendInfo] = {}


def register_backend(info: BackendInfo) -> None:
    _REGISTRY[info.name] = info


def backend_names() -> list[str]:
    from . import _load_builtin
    _load_builtin()
    return sorted(_REGISTRY)


def backend_info(name: str) -> BackendInfo:
    backend_names()
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of auto, {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_backends(device: str | torch.device = "cpu") -> dict[str, tuple[bool, str]]:
    """{name: (available, reason)} for this machine and device."""
    backend_names()
    dev = torch.device(device)
    return {n: i.available(dev) for n, i in sorted(_REGISTRY.items())}


def resolve_backend_name(name: str, device: str | torch.device = "cpu") -> str:
    """'auto' → the highest-priority backend available on ``device``; otherwise check ``name``."""
    dev = torch.device(device)
    if name != "auto":
        info = backend_info(name)
        ok, why = info.available(dev)
        if not ok:
            raise UserError(f"backend {name!r} is not available on {dev}: {why}")
        return name
    backend_names()
    best = sorted((i for i in _REGISTRY.values() if i.available(dev)[0]), key=lambda i: -i.rank(dev))
    return best[0].name


def default_precision(name: str, device: str | torch.device = "cpu") -> str:
    """The precision a backend is meant to run at (after resolving 'auto')."""
    return backend_info(resolve_backend_name(name, device)).default_precision


def create_backend(name: str, generator: Generator, device: str | torch.device = "cpu",
                   precision: str | None = None, **kw) -> Backend:
    """Build backend ``name`` ('auto' resolved); ``precision=None`` → the backend's default (fp16 for tensorrt)."""
    name = resolve_backend_name(name, device)
    info = backend_info(name)
    precision = precision or info.default_precision
    if precision not in info.precisions:
        raise UserError(f"backend {name!r} does not support precision {precision!r} "
                        f"(supports {', '.join(info.precisions)})")
    return info.factory(generator, device=device, precision=precision, **kw)
