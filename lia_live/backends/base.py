"""The small interface every inference backend implements, the name registry, and backend options.

A backend runs the three tensor stages of LIA on some engine:
- ``encode_source(img)``: once per source portrait → (latent w_src, skip features, α_src);
- ``encode_motion(img)``: per frame → α (B, motion_dim);
- ``synthesize(latent, feats)``: per frame → image (B, 3, S, S).
The latent arithmetic (α·Qᵀ, reference, power) is done by the caller (the Animator) with the constant
basis Q. The pipeline never branches on a backend's name: it asks the registry.

Backend options: each backend declares the options it takes (:class:`BackendOption`); callers pass them
as ``create_backend(name, gen, options={"mode": "max-autotune"})`` and the CLIs as repeated
``--backend-option KEY=VALUE`` (:func:`parse_backend_options`). Values given as text are converted and
checked by the option's declaration; an unknown key is a :class:`~lia_live.errors.UserError` naming the
keys the backend takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..model import Generator
from ..runtime import canonical_device

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
    max_batch: int | None = None  # largest batch one call runs natively (None: any); larger ones are split
    prefers_batch = False  # True: a batch of N costs clearly less than N calls of batch 1 (worth batching)

    def __init__(self, generator: Generator, device: str | torch.device = "cpu", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.device = canonical_device(device)  # cuda:N, never bare cuda: compared with tensors' devices
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

    warmup_calls = 0  # calls of each per-frame graph that warmup() makes by default (0: nothing to warm up)

    def warmup(self, iters: int | None = None) -> None:
        """Capture, compile or otherwise prepare every per-frame graph at batch 1 (``iters`` calls each;
        default ``warmup_calls``), so that the first frame does not stall. Backends with lazy work override it."""


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


@dataclass(frozen=True)
class BackendOption:
    """One option a backend takes: ``key`` (as written on the command line), its type, help and choices.

    ``kind`` is "str", "int" or "bool"; ``arg`` is the factory's keyword (default: ``key`` with '-' → '_');
    ``range`` (lo, hi): the values an "int" option accepts (every numeric option has one).
    """

    key: str
    help: str
    kind: str = "str"
    choices: tuple[str, ...] | None = None
    arg: str | None = None
    range: tuple[int, int] | None = None

    @property
    def kwarg(self) -> str:
        return self.arg or self.key.replace("-", "_")

    def convert(self, value: Any, backend: str) -> Any:
        """Text → typed value (typed values are checked as they are); a bad value is a UserError."""
        try:
            if self.kind == "bool":
                value = _parse_bool(value) if isinstance(value, str) else bool(value)
            elif self.kind == "int":
                value = int(value)
            else:
                value = str(value)
        except (TypeError, ValueError) as e:
            raise UserError(f"backend {backend!r} option {self.key}: {e}") from None
        if self.choices is not None and value not in self.choices:
            raise UserError(f"backend {backend!r} option {self.key}={value}: choose one of {', '.join(self.choices)}")
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise UserError(f"backend {backend!r} option {self.key}={value}: must be in [{self.range[0]}, "
                            f"{self.range[1]}]")
        return value

    def describe(self) -> str:
        span = f", {self.range[0]}-{self.range[1]}" if self.range else ""
        choices = f" ({'|'.join(self.choices)})" if self.choices else f" ({self.kind}{span})"
        return f"{self.key}{choices}: {self.help}"


def parse_backend_options(items: Sequence[str] | None) -> dict[str, str]:
    """``["mode=max-autotune", "cache=off"]`` (repeated ``--backend-option KEY=VALUE``) → {key: text}."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"«backend_option» expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass
class BackendInfo:
    """A registered backend: its factory, availability test, rank for ``auto`` and what it supports."""

    name: str
    factory: Callable[..., Backend]
    available: Callable[[torch.device], tuple[bool, str]]
    priority: int = 0  # higher wins for --backend auto
    precisions: tuple[str, ...] = field(default=PRECISIONS)
    default_precision: str = "fp32"  # what the backend is meant to run at on CPU (and CUDA unless below)
    cpu_priority: int | None = None  # overrides ``priority`` for --backend auto on CPU devices
    cuda_precision: str | None = None  # default precision on CUDA devices (None: ``default_precision``)
    options: tuple[BackendOption, ...] = ()
    batch_friendly: bool = False  # runs a batch of N natively (Backend.prefers_batch); see default_batch_size

    def rank(self, device: torch.device) -> int:
        """Priority for ``auto`` on ``device``."""
        if device.type == "cpu" and self.cpu_priority is not None:
            return self.cpu_priority
        return self.priority

    def precision_for(self, device: str | torch.device) -> str:
        """The precision this backend runs at by default on ``device``."""
        if torch.device(device).type == "cuda" and self.cuda_precision:
            return self.cuda_precision
        return self.default_precision

    def option(self, key: str) -> BackendOption:
        for opt in self.options:
            if opt.key == key or opt.kwarg == key:
                return opt
        takes = ", ".join(o.key for o in self.options) or "no options"
        raise UserError(f"backend {self.name!r} has no option {key!r} (it takes: {takes})")

    def convert_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """{key: value} from a caller → {factory keyword: typed value}, every key checked."""
        return {self.option(k).kwarg: self.option(k).convert(v, self.name) for k, v in (options or {}).items()}


_REGISTRY: dict[str, BackendInfo] = {}


def register_backend(info: BackendInfo) -> None:
    _REGISTRY[info.name] = info


def backend_names() -> list[str]:
    """Names of every registered backend (loads the built-in ones)."""
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
    """'auto' → the highest-ranked backend available on ``device``; otherwise check ``name``."""
    dev = torch.device(device)
    if name != "auto":
        info = backend_info(name)
        ok, why = info.available(dev)
        if not ok:
            raise UserError(f"backend {name!r} is not available on {dev}: {why}")
        return name
    backend_names()
    best = sorted((i for i in _REGISTRY.values() if i.available(dev)[0]), key=lambda i: -i.rank(dev))
    if not best:
        raise UserError(f"no inference backend is available on {dev}")
    return best[0].name


def default_precision(name: str, device: str | torch.device = "cpu") -> str:
    """The precision a backend is meant to run at on ``device`` (after resolving 'auto')."""
    return backend_info(resolve_backend_name(name, device)).precision_for(device)


def default_batch_size(device: str | torch.device, backend: str = "auto") -> int:
    """Frames per call for offline work (lia-animate, lia-eval ``--batch-size`` default).

    1 on CPU (batching measured no faster there) and for backends with fixed-shape engines; 8 on CUDA for
    batch-friendly backends (eager fp16 on an H200: 11.1 ms/frame at batch 1, 2.4 at batch 8, 1.26 at 32 —
    8 keeps the memory and the frames held in flight small).
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return 1
    return 8 if backend_info(resolve_backend_name(backend, dev)).batch_friendly else 1


def create_backend(name: str, generator: Generator, device: str | torch.device = "cpu",
                   precision: str | None = None, options: Mapping[str, Any] | None = None, **kw) -> Backend:
    """Build backend ``name`` ('auto' resolved) on ``device``.

    ``precision=None`` → the backend's default there (fp16 on CUDA for the compiled paths, fp32 otherwise).
    ``options`` → the backend's declared options (text or typed values; unknown keys are a UserError).
    ``kw`` → further keyword arguments of the factory, for code (``engine_root=...``).
    """
    name = resolve_backend_name(name, device)
    info = backend_info(name)
    precision = precision or info.precision_for(device)
    if precision not in info.precisions:
        raise UserError(f"backend {name!r} does not support precision {precision!r} "
                        f"(supports {', '.join(info.precisions)})")
    return info.factory(generator, device=device, precision=precision, **{**kw, **info.convert_options(options)})
