"""LIA generator with the official attribute names (``enc``, ``dec``) so official weights load 1:1."""

from __future__ import annotations

import torch
from torch import nn

from .config import GeneratorConfig
from .encoder import Encoder
from .synthesis import Synthesis


class Generator(nn.Module):
    """``Generator(size=256, style_dim=512, motion_dim=20, channel_multiplier=1)``.

    ``forward(img_source, img_drive, h_start=None)`` reconstructs the source animated by the driving
    frame: absolute motion without ``h_start``; relative motion (``h_start`` = α of the reference
    driving frame) with it. Images are (B, 3, S, S) in [-1, 1].
    """

    def __init__(self, size: int = 256, style_dim: int = 512, motion_dim: int = 20,
                 channel_multiplier: int = 1, channel_div: int = 1, *, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig(size, style_dim, motion_dim, channel_multiplier, channel_div)
        self.enc = Encoder(self.config)
        self.dec = Synthesis(self.config)

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> Generator:
        return cls(config=cfg)

    @property
    def size(self) -> int:
        return self.config.size

    def forward(self, img_source: torch.Tensor, img_drive: torch.Tensor | None,
                h_start: torch.Tensor | None = None) -> torch.Tensor:
        wa, alpha, feats = self.enc(img_source, img_drive, h_start)
        return self.dec(wa, alpha, feats)
