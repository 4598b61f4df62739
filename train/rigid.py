"""Rigid pairs with a known flow: an optional auxiliary loss that teaches the ToFlow layers to warp.

Not part of the official recipe (off by default). With ``--rigid-pairs K`` the last K pairs of every
micro-batch drive the generator with a random similarity transform of their own source frame (rotation
±15°, scale ×0.85–1.15, shift ±10 % of the frame; border padding), so the right backward flow is known at
every resolution: ``affine_grid(θ)``. ``--flow-weight W`` adds ``W · Σ_levels mean |flow − affine_grid(θ)|``
over those pairs to the generator loss (normalised [-1, 1] coordinates, the space ``grid_sample`` reads).
``--mask-weight M`` adds ``M · mean(1 − mask)`` of the two finest ToFlow levels over the same pairs: everything
a rigid move shows is in the source, so there the output may come from the warped features alone.

Why: a model trained on one identity can learn to *generate* the face from its weights instead of warping
the source's features (its masks close over the face at the fine levels and the flow there is never
corrected, since no gradient reaches a flow that is masked out). The pipeline-demo model did exactly that
(``docs/training.md``); supervising the flow everywhere reopens the warping path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lia_live.model.synthesis import ToFlow

MAX_ROTATE_DEG = 15.0
MAX_SCALE = 0.15
MAX_SHIFT = 0.1


def random_similarity(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) ``affine_grid`` matrices (output → input coordinates) of random similarity transforms."""
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64) * 2 - 1  # (n, 4) in [-1, 1)
    angle = u[:, 0] * math.radians(MAX_ROTATE_DEG)
    scale = 1 + u[:, 1] * MAX_SCALE
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * MAX_SHIFT], 1),
                         torch.stack([sin, cos, u[:, 3] * MAX_SHIFT], 1)], 1)  # (n, 2, 3)
    return theta.float()


def target_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size, size, 2) sampling grid of ``theta`` at one resolution (``align_corners=False``, as the model)."""
    return F.affine_grid(theta, [theta.shape[0], 1, size, size], align_corners=False)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(n, 3, S, S) images moved by ``theta`` (bilinear, border padding)."""
    grid = target_grid(theta.to(images.device), images.shape[-1]).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FlowProbe:
    """Records the sampling grid every ToFlow layer of ``module`` uses during a forward (forward hooks)."""

    def __init__(self, module: nn.Module):
        self.flows: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._record) for m in module.modules() if isinstance(m, ToFlow)]

    def _record(self, layer: nn.Module, _inputs, outputs) -> None:
        logits = outputs[2]  # (B, 3, H, W): flow offsets (2) and mask (1), before tanh / sigmoid
        grid = layer.get_buffer("grid")  # (1, H, W, 2) identity grid
        self.flows.append(torch.tanh(logits[:, 0:2].float()).permute(0, 2, 3, 1) + grid.float())  # (B, H, W, 2)
        self.masks.append(torch.sigmoid(logits[:, 2:3].float()))  # (B, 1, H, W)

    def clear(self) -> None:
        self.flows, self.masks = [], []

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def flow_loss(flows: list[torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """Σ over levels of the mean |flow − target| of the last ``len(theta)`` samples of each recorded flow."""
    k = theta.shape[0]
    total = flows[0].new_zeros(())
    for flow in flows:
        total = total + (flow[-k:] - target_grid(theta.to(flow.device), flow.shape[1])).abs().mean()
    return total


def mask_loss(masks: list[torch.Tensor], k: int) -> torch.Tensor:
    """Mean of ``1 − mask`` over the last ``k`` samples at the two finest recorded levels."""
    return torch.stack([(1 - m[-k:]).mean() for m in masks[-2:]]).mean()
