"""The reference backend: the PyTorch model as written, fp32 by default (fp16/bf16 optional).

In fp16/bf16 a cast copy of the model runs the per-frame graphs (see ``graph.reduced_precision_copy``:
ToFlow stays fp32; on CPU bf16 applies to the motion encoder only, via oneDNN's bf16 kernels on CPUs
with avx512_bf16 / AMX). The source is always encoded in fp32. Any batch size runs natively.

On CUDA eager is launch-bound (about 67 convolutions plus their pointwise ops per frame, each a Python
dispatch: 9.7 ms fp32, 11.1 ms fp16 per frame on an H200) — the ``cudagraph`` backend removes that
dispatch; eager stays the reference every other backend is checked against, so it keeps fp32 by default.
"""

from __future__ import annotations

import torch

from .base import BackendInfo, BackendOption, register_backend
from .graph import CHECK_HELP, GraphBackend, check_cpu_precision, reduced_precision_copy, synthesis_dtype


class EagerBackend(GraphBackend):
    name = "eager"
    max_batch = None
    prefers_batch = True

    def __init__(self, generator, device="cpu", precision="fp32", check: bool = True):
        super().__init__(generator, device, precision)
        # ``self.generator`` stays the fp32 reference; a cast copy runs reduced precisions.
        check_cpu_precision(precision, self.device, self.name)
        self.model = reduced_precision_copy(self.generator, self.dtype, synthesis_dtype(self.dtype, self.device))
        self.check_on_source = check  # reduced precision: checked against fp32 on the first source
        self.warmup_calls = 1 if self.device.type == "cuda" else 0  # CUDA: cuDNN's choice, the allocator's growth

    def use_fp32(self) -> None:
        self.model = self.generator
        self.precision, self.dtype = "fp32", torch.float32

    def motion_fn(self, img: torch.Tensor) -> torch.Tensor:
        return self.model.enc.enc_motion(img)  # (B, M)

    def synth_fn(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        return self.model.dec.synthesize(latent, list(feats))  # (B, 3, S, S)


def _available(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available"
    if device.type not in ("cpu", "cuda"):
        return False, f"eager backend supports cpu and cuda, not {device.type}"
    return True, "PyTorch"


register_backend(BackendInfo(
    "eager", EagerBackend, _available, priority=0, batch_friendly=True,
    options=(BackendOption("check", CHECK_HELP, kind="bool"),)))
