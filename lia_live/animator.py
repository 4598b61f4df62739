"""Set the source once, step many: the per-session LIA state machine.

>>> anim = Animator(load_generator("checkpoints/vox.pt"))
>>> anim.set_source(portrait_rgb_uint8)        # encodes the source once
>>> anim.set_reference(first_webcam_crop)     # relative motion (None → absolute)
>>> out = anim.step(webcam_crop)              # RGB uint8, model size
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .backends import Backend, SourceState, create_backend
from .errors import UserError
from .imaging import from_tensor, to_tensor
from .model import Generator
from .runtime import device_context, synchronize

_OWN = object()  # sentinel: use the animator's own reference


class Animator:
    """Animates one source portrait with driving frames.

    Latent per frame (relative): ``w_src + α_src·Qᵀ + power · (α_t − α_ref)·Qᵀ`` — with power 1 this is
    the official ``w_src + D(α_t) − D(α_ref) + D(α_src)``. Absolute (no reference): ``w_src + α_t·Qᵀ``.
    """

    def __init__(self, generator: Generator | Backend, *, backend: str = "eager", device: str = "cpu",
                 precision: str | None = None, motion_power: float = 1.0, options: dict | None = None):
        if isinstance(generator, Backend):
            self.backend = generator
        else:
            self.backend = create_backend(backend, generator, device=device, precision=precision, options=options)
        self.size = self.backend.config.size
        self.device = self.backend.device
        self.basis = self.backend.basis.to(self.device)  # (D, M)
        self.motion_power = float(motion_power)
        self.source: SourceState | None = None
        self.alpha_ref: torch.Tensor | None = None
        self.checkpoint: Path | None = None  # where the weights came from, when loaded from a file
        self.model_sha256: str | None = None  # cached by lia_live.templates.model_hash

    # ---- tensor level (batches) -------------------------------------------------------------
    def set_source_tensor(self, img: torch.Tensor) -> SourceState:
        """img (1 or B, 3, S, S) in [-1, 1]."""
        self._check_tensor(img)
        self.source = self.backend.encode_source(img.to(self.device))
        return self.source

    def motion(self, img: torch.Tensor) -> torch.Tensor:
        """α (B, M) of driving images (B, 3, S, S) in [-1, 1]."""
        self._check_tensor(img)
        return self.backend.encode_motion(img.to(self.device))

    def latent(self, alpha: torch.Tensor | None, alpha_ref: torch.Tensor | None | object = _OWN,
               power: float | None = None, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Latent (B, D) for motion ``alpha`` (B, M) — the one place the latent arithmetic lives.

        relative (a reference α_ref): ``w_src + (α_src + power·(α − α_ref) + offset)·Qᵀ``;
        absolute (``alpha_ref=None``): ``w_src + (α + offset)·Qᵀ``; ``alpha=None``: the portrait as it is,
        ``w_src + (α_src + offset)·Qᵀ``. ``alpha_ref``/``power`` default to the animator's own
        (:meth:`set_reference`, ``motion_power``).
        """
        src = self.require_source()
        ref = self.alpha_ref if alpha_ref is _OWN else alpha_ref
        assert ref is None or isinstance(ref, torch.Tensor)
        power = self.motion_power if power is None else power
        if alpha is None:
            coeff = src.alpha  # (1, M)
        elif ref is None:
            coeff = alpha  # (B, M)
        else:
            coeff = src.alpha + (alpha - ref) * power  # (B, M)
        if offset is not None:
            coeff = coeff + offset.to(coeff.device)
        return src.latent + coeff @ self.basis.t()  # (B, D)

    def render_latent(self, latent: torch.Tensor) -> torch.Tensor:
        src = self.require_source()
        feats = src.feats
        if latent.shape[0] != feats[0].shape[0]:
            feats = [f.expand(latent.shape[0], -1, -1, -1) for f in feats]
        return self.backend.synthesize(latent, feats)

    def render(self, alpha: torch.Tensor | None, alpha_ref: torch.Tensor | None | object = _OWN,
               power: float | None = None, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Image (B, 3, S, S), unclamped, for motion ``alpha`` (see :meth:`latent`)."""
        return self.render_latent(self.latent(alpha, alpha_ref, power, offset))

    def render_direction(self, direction: int, amount: float) -> torch.Tensor:
        """The official linear manipulation: the portrait moved by ``amount`` along motion direction ``direction``."""
        m = self.basis.shape[1]
        if not 0 <= direction < m:
            raise UserError(f"motion direction must be in [0, {m - 1}], got {direction}")
        offset = torch.zeros(1, m, device=self.device)
        offset[0, direction] = amount
        return self.render(None, offset=offset)

    def warm_up(self) -> None:
        """Capture / compile / warm up the backend's per-frame graphs at batch 1 and wait for the device.

        Call it from the thread that will make the per-frame calls, before any other thread works on the
        device: ``torch.compile``'s CUDA-graph trees keep per-thread state in torch 2.11 (a warm-up on one
        thread and calls from another fail: pytorch/pytorch#123177), and a CUDA-graph capture is best made
        while nothing else runs. The device-wide synchronisation makes the source and the model copies,
        built on the caller's default stream, visible to the stages' own streams. All of it runs inside
        ``torch.cuda.device(device)``: the current device is per thread (``--device cuda:1``).
        """
        with device_context(self.device):
            self.backend.warmup()
        synchronize(self.device)

    def step_tensor(self, img: torch.Tensor) -> torch.Tensor:
        return self.render(self.motion(img))

    # ---- image level (RGB uint8) --------------------------------------------------------------
    def set_source(self, image: np.ndarray) -> SourceState:
        """Encode the source portrait (RGB uint8 H×W×3, resized to the model size if needed) once."""
        return self.set_source_tensor(to_tensor(image, self.size))

    def set_reference(self, frame: np.ndarray | torch.Tensor | None) -> None:
        """Store α of ``frame`` as the reference pose (relative motion); ``None`` → absolute motion."""
        if frame is None:
            self.alpha_ref = None
            return
        if isinstance(frame, torch.Tensor) and frame.ndim == 2:
            self.alpha_ref = frame.to(self.device, torch.float32)
            return
        t = frame if isinstance(frame, torch.Tensor) else to_tensor(frame, self.size)
        self.alpha_ref = self.motion(t)

    @property
    def relative(self) -> bool:
        return self.alpha_ref is not None

    def step(self, frame: np.ndarray) -> np.ndarray:
        """Animate the source with one driving frame (RGB uint8) → RGB uint8 at the model size."""
        self.require_source()
        return from_tensor(self.step_tensor(to_tensor(frame, self.size)))[0]

    def require_source(self) -> SourceState:
        if self.source is None:
            raise RuntimeError("Animator.set_source(image) must be called before step()/render()")
        return self.source

    def _check_tensor(self, img: torch.Tensor) -> None:
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != self.size or img.shape[3] != self.size:
            raise UserError(f"expected images of shape (B, 3, {self.size}, {self.size}), got {tuple(img.shape)}")
