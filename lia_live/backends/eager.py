"""The reference backend: the PyTorch model as written, fp32 by default (fp16/bf16 optional)."""

from __future__ import annotations

import torch

from .base import Backend, BackendInfo, SourceState, register_backend


class EagerBackend(Backend):
    name = "eager"

    def __init__(self, generator, device="cpu", precision="fp32"):
        super().__init__(generator, device, precision)
        if self.dtype != torch.float32:
            self.generator = self.generator.to(self.dtype)

    @torch.no_grad()
    def encode_source(self, img: torch.Tensor) -> SourceState:
        wa, feats = self.generator.enc.net_app(img.to(self.device, self.dtype))
        alpha = self.generator.enc.fc(wa)
        return SourceState(wa.float(), list(feats), alpha.float())

    @torch.no_grad()
    def encode_motion(self, img: torch.Tensor) -> torch.Tensor:
        return self.generator.enc.enc_motion(img.to(self.device, self.dtype)).float()

    @torch.no_grad()
    def synthesize(self, latent: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.generator.dec.synthesize(latent.to(self.dtype), feats).float()


def _available(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available"
    return True, "PyTorch"


register_backend(BackendInfo("eager", EagerBackend, _available, priority=0))
