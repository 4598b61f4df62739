"""Shared base for backends that run the two exported per-frame graphs on some engine.

The source portrait is encoded once with the fp32 eager encoder (it is not per-frame work); the
per-frame motion encoder and synthesis run on the engine. Subclasses set ``self.motion_fn`` and
``self.synth_fn`` (tensor in, tensor out, on the backend's device). Images go in at the backend's
dtype; the latent and the cached source features stay fp32 (the flow and warp run in fp32).

Batches: ``max_batch`` is the largest batch ``motion_fn`` / ``synth_fn`` take (1 for fixed-shape engines,
None for any); larger batches are split into chunks of that size and concatenated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..errors import UserError
from ..log import log
from ..model import Generator
from .base import Backend, SourceState
from .checks import Check, check_output, test_card

__all__ = ["CHECK_HELP", "GraphBackend", "check_cpu_precision", "log", "reduced_precision_copy", "synthesis_dtype"]

CHECK_HELP = "check reduced precision against fp32 on the first source, fp32 if it diverges (default: on)"


def synthesis_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The synthesis graph's dtype for a backend running at ``dtype`` on ``device``.

    On CPU the synthesis stays fp32 in bf16 mode: measured here it is no faster in bf16 under oneDNN,
    and its flow fields lose accuracy through twelve bf16 layers. The motion encoder does gain.
    """
    return torch.float32 if device.type == "cpu" else dtype


def reduced_precision_copy(generator: Generator, motion_dtype: torch.dtype,
                           synth_dtype: torch.dtype | None = None) -> Generator:
    """A copy with the encoder in ``motion_dtype`` and the decoder in ``synth_dtype`` (default: the same).

    The ToFlow layers (flow conv, grid, warp) always stay fp32: in half precision the sampling grid
    and the 1×1 flow conv are off by up to half a pixel at 256². ``generator`` itself is returned
    when everything is fp32.
    """
    synth_dtype = motion_dtype if synth_dtype is None else synth_dtype
    if motion_dtype == torch.float32 and synth_dtype == torch.float32:
        return generator
    model = copy.deepcopy(generator)
    model.enc.to(motion_dtype)
    model.dec.to(synth_dtype)
    for to_flow in model.dec.to_flows:
        to_flow.float()
    return model


def check_cpu_precision(precision: str, device: torch.device, backend: str) -> None:
    """fp16 on CPU has no fast kernels (minutes per frame): refuse it with a clear message."""
    if device.type == "cpu" and precision == "fp16":
        raise UserError(f"{backend}: fp16 is not supported on CPU (no fast fp16 kernels); "
                        f"use «precision» bf16 or fp32")


class GraphBackend(Backend):
    """Backend running ``MotionEncoderGraph`` / ``SynthesisGraph`` through ``motion_fn`` / ``synth_fn``."""

    motion_fn: Callable[[torch.Tensor], torch.Tensor]
    synth_fn: Callable[..., torch.Tensor]
    max_batch: int | None = 1  # graphs built for batch 1: larger batches run sample by sample

    def __init__(self, generator: Generator, device="cpu", precision="fp32"):
        super().__init__(generator, device, precision)
        self.validated: list[Check] | None = None
        self.check_on_source = False  # reduced precision checked against fp32 at the first source (subclasses)

    @torch.no_grad()
    def encode_source(self, img: torch.Tensor) -> SourceState:
        wa, feats = self.generator.enc.net_app(img.to(self.device, torch.float32))
        alpha = self.generator.enc.fc(wa)  # (B, M)
        state = SourceState(wa.float(), list(feats), alpha.float())  # feats stay fp32: only ToFlow reads them
        if self.check_on_source and self.precision != "fp32":
            self.check_on_source = False
            self.check_precision(img)
        return state

    def check_precision(self, image: torch.Tensor | None = None) -> list[Check]:
        """Reduced precision against the fp32 eager model on ``image`` (the first source): when it diverges
        (real weights can overflow fp16 where seeded ones do not), say so in one line and run fp32 from now on."""
        checks = self.validate(image)
        if not all(c.ok for c in checks):
            detail = "; ".join(str(c) for c in checks if not c.ok)
            log(f"WARNING: {self.name} {self.precision} diverges from fp32 on this source ({detail}); running fp32")
            self.use_fp32()
        return checks

    def use_fp32(self) -> None:
        """Run the per-frame graphs in fp32 from now on (after a failed reduced-precision check)."""
        raise NotImplementedError

    def _chunks(self, batch: int) -> list[slice]:
        step = self.max_batch or batch
        return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]

    @torch.no_grad()
    def encode_motion(self, img: torch.Tensor) -> torch.Tensor:
        img = img.to(self.device, self.dtype)  # (B, 3, S, S)
        parts = [self.motion_fn(img[s]).float() for s in self._chunks(img.shape[0])]  # (b, M) each
        return parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, M)

    @torch.no_grad()
    def synthesize(self, latent: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        latent = latent.to(self.device, torch.float32)  # (B, D)
        parts = [self.synth_fn(latent[s], *[f[s] for f in feats]).float() for s in self._chunks(latent.shape[0])]
        return parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, 3, S, S)

    def _moved_latent(self, latent: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``latent`` moved by motion ``alpha`` through the model's own Direction module (absolute motion)."""
        return latent + self.generator.dec.direction(alpha.float())  # (B, D)

    def warmup(self, iters: int | None = None) -> None:
        """Run both graphs ``iters`` times (default ``warmup_calls``) at batch 1 on a test card: triggers
        lazy compilation or capture. The source check is not run on the test card."""
        iters = self.warmup_calls if iters is None else iters
        if iters <= 0:
            return
        img = test_card(self.config.size).to(self.device)
        pending, self.check_on_source = self.check_on_source, False
        try:
            src = self.encode_source(img)
        finally:
            self.check_on_source = pending
        with torch.no_grad():
            for _ in range(iters):
                self.synthesize(self._moved_latent(src.latent, self.encode_motion(img)), src.feats)

    @torch.no_grad()
    def validate(self, image: torch.Tensor | None = None) -> list[Check]:
        """Compare both graphs with the fp32 eager model on a real input (a photo; a test card if None).

        Motion: α of ``image``; synthesis: the source latent moved by α of the horizontally flipped
        image, with the source's own features — a realistic, non-identity frame.
        """
        img = test_card(self.config.size) if image is None else image[:1]
        img = img.to(self.device, torch.float32)
        enc = self.generator.enc
        wa, feats = enc.net_app(img)
        drv = torch.flip(img, dims=(3,))
        want_alpha = enc.fc(enc.net_app(drv)[0])  # (1, M)
        latent = self._moved_latent(wa, want_alpha)  # (1, D)
        want_img = self.generator.dec.synthesize(latent, feats)  # (1, 3, S, S)
        got_alpha = self.encode_motion(drv)
        got_img = self.synthesize(latent, feats)
        self.validated = [check_output("motion encoder", got_alpha, want_alpha, self.precision, image=False),
                          check_output("synthesis", got_img, want_img, self.precision)]
        return self.validated
