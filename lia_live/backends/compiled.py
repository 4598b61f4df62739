"""``compile``: the two per-frame graphs through ``torch.compile``.

- CPU: inductor with ``freezing`` (weights folded as constants, oneDNN weight prepacking, pointwise
  fusion); the motion encoder runs channels-last. fp32 is exact to eager (~1e-6); bf16 runs the motion
  encoder on oneDNN's bf16 kernels (avx512_bf16 / AMX) while the synthesis stays fp32.
- CUDA: ``mode="max-autotune"`` (Triton autotuning + CUDA graphs), fp16 or bf16 weights.

Compilation is lazy (first call, ~20 s per graph on CPU for the 256 model, longer with autotuning).
"""

from __future__ import annotations

import copy

import torch

from ..export import MotionEncoderGraph, SynthesisGraph
from ..model import Generator
from .base import BackendInfo, register_backend
from .graph import GraphBackend, check_cpu_precision, log, reduced_precision_copy, synthesis_dtype


class CompileBackend(GraphBackend):
    name = "compile"

    def __init__(self, generator: Generator, device="cpu", precision="fp32", mode: str | None = None,
                 channels_last: bool | None = None):
        super().__init__(generator, device, precision)
        check_cpu_precision(precision, self.device, self.name)
        gen = reduced_precision_copy(self.generator, self.dtype, synthesis_dtype(self.dtype, self.device))
        on_cpu = self.device.type == "cpu"
        self.channels_last = on_cpu if channels_last is None else channels_last
        motion, synth = MotionEncoderGraph(gen).eval(), SynthesisGraph(gen).eval()
        if self.channels_last:  # on a copy: the caller's model keeps its memory format
            motion = copy.deepcopy(motion).to(memory_format=torch.channels_last)
        if mode is None and on_cpu:
            kw = {"options": {"freezing": True}}
        else:
            kw = {"mode": mode or "max-autotune"}
        self.mode = kw.get("mode", "inductor+freezing")
        self._motion = torch.compile(motion, dynamic=False, fullgraph=True, **kw)
        self._synth = torch.compile(synth, dynamic=False, fullgraph=True, **kw)
        self._cudagraphs = self.device.type == "cuda" and "max-autotune" in self.mode
        self._compiled = False

    def _first_call(self) -> None:
        if not self._compiled:
            log(f"compile: compiling the per-frame graphs ({self.mode}, {self.precision}, {self.device}); "
                f"the first frame takes a while")
            self._compiled = True

    def motion_fn(self, img: torch.Tensor) -> torch.Tensor:
        self._first_call()
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            return self._motion(img).clone()
        return self._motion(img)

    def synth_fn(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        self._first_call()
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            return self._synth(latent, *feats).clone()
        return self._synth(latent, *feats)

    def describe(self) -> str:
        return f"compile ({self.mode}, {self.precision}, {self.device})"


def _available(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available"
    if device.type not in ("cpu", "cuda"):
        return False, f"torch.compile backend supports cpu and cuda, not {device.type}"
    return True, "torch.compile (inductor)"


register_backend(BackendInfo("compile", CompileBackend, _available, priority=20))
