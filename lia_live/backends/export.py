"""Tensor-only, fixed-shape wrappers of LIA's two per-frame graphs, for compilers and exporters.

- :class:`MotionEncoderGraph`: driving crop (1, 3, S, S) → motion magnitudes α (1, M).
- :class:`SynthesisGraph`: latent (1, D) + the six cached source skip features → image (1, 3, S, S).

Both hold no Python-side state that changes between calls and take / return plain tensors, so
``torch.export.export``, ``torch.onnx.export``, ``torch.compile`` and Torch-TensorRT all see the same
static graph. The latent arithmetic (α·Qᵀ, reference pose, power) stays outside, in the Animator.

:func:`export_onnx` writes both graphs as ONNX files (opset ≥ 17) — what ONNX Runtime and ``trtexec`` take.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..fsutil import atomic_path
from ..model import Generator

MIN_OPSET = 17
DEFAULT_OPSET = 18


def feature_shapes(generator: Generator, batch: int = 1) -> list[tuple[int, int, int, int]]:
    """Shapes of the source skip features at resolutions 8, 16, …, S (what ``net_app`` returns)."""
    cfg = generator.config
    ch = cfg.channels(1)
    return [(batch, ch[2 ** i], 2 ** i, 2 ** i) for i in range(3, cfg.log_size + 1)]


class MotionEncoderGraph(nn.Module):
    """crop (B, 3, S, S) in [-1, 1] → α (B, M): ``fc(net_app(crop).latent)``."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.net_app = generator.enc.net_app
        self.fc = generator.enc.fc
        self.size = generator.config.size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        latent, _ = self.net_app(img)  # (B, D); the skip features are dead code here
        return self.fc(latent)  # (B, M)

    def example_inputs(self, batch: int = 1, dtype: torch.dtype = torch.float32,
                       device: str | torch.device = "cpu") -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 3, self.size, self.size, generator=g).mul(2).sub(1).to(device, dtype),)


class SynthesisGraph(nn.Module):
    """(latent (B, D), f8, f16, …, fS) → image (B, 3, S, S), unclamped (no tanh, as upstream)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.dec = generator.dec
        self.style_dim = generator.config.style_dim
        self.shapes = feature_shapes(generator)

    def forward(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        return self.dec.synthesize(latent, list(feats))  # (B, 3, S, S)

    def example_inputs(self, batch: int = 1, dtype: torch.dtype = torch.float32,
                       device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        latent = torch.randn(batch, self.style_dim, generator=g)  # (B, D)
        feats = [torch.randn(batch, *s[1:], generator=g) for s in self.shapes]
        return tuple(t.to(device, dtype) for t in (latent, *feats))


def synthesis_input_names(n_feats: int) -> list[str]:
    return ["latent"] + [f"feat{i}" for i in range(n_feats)]


def export_program(graph: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export.export`` of a graph in eval mode with static shapes (no dynamic dims)."""
    graph.eval()
    with torch.no_grad():
        return torch.export.export(graph, inputs, strict=False)


def export_onnx(generator: Generator, out_dir: str | os.PathLike, opset: int = DEFAULT_OPSET,
                prefix: str = "lia") -> dict[str, Path]:
    """Write ``{prefix}_motion.onnx`` and ``{prefix}_synthesis.onnx`` (fp32, batch 1) into ``out_dir``.

    Uses the dynamo exporter (needs ``onnx`` and ``onnxscript``). Returns {"motion": path, "synthesis": path}.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = generator.eval()
    p = next(gen.parameters())
    if p.dtype != torch.float32 or p.device.type != "cpu":  # export a copy; leave the caller's model as is
        gen = copy.deepcopy(gen).float().cpu()
    motion, synth = MotionEncoderGraph(gen).eval(), SynthesisGraph(gen).eval()
    paths = {"motion": out / f"{prefix}_motion.onnx", "synthesis": out / f"{prefix}_synthesis.onnx"}
    jobs = [(motion, motion.example_inputs(), ["image"], ["alpha"], paths["motion"]),
            (synth, synth.example_inputs(), synthesis_input_names(len(synth.shapes)), ["output"],
             paths["synthesis"])]
    for graph, inputs, in_names, out_names, path in jobs:
        with torch.no_grad():
            prog = torch.onnx.export(graph, inputs, dynamo=True, opset_version=opset,
                                     input_names=in_names, output_names=out_names, external_data=False,
                                     verbose=False, optimize=True)
        if prog is None:
            raise RuntimeError(f"torch.onnx.export returned no program for {path.name}")
        with atomic_path(path) as tmp:
            prog.save(str(tmp))
    return paths
