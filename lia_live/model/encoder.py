"""Appearance encoder E (image → latent + skip features) and the linear motion MLP (latent → α)."""

from __future__ import annotations

import torch
from torch import nn

from .config import GeneratorConfig
from .layers import ConvLayer, EqualConv2d, EqualLinear, ResBlock


class EncoderApp(nn.Module):
    """ConvLayer 1×1 → ResBlocks down to 4×4 → 4×4 conv to a ``style_dim`` vector."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        ch = cfg.channels(1)
        self.convs = nn.ModuleList()
        in_channel = ch[cfg.size]
        self.convs.append(ConvLayer(3, in_channel, 1))
        for i in range(cfg.log_size, 2, -1):
            out_channel = ch[2 ** (i - 1)]
            self.convs.append(ResBlock(in_channel, out_channel))
            in_channel = out_channel
        self.convs.append(EqualConv2d(in_channel, cfg.style_dim, 4, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 3, S, S) in [-1, 1] → (latent (B, style_dim), skip features at 8, 16, …, S)."""
        res = []
        h = x
        for conv in self.convs:
            h = conv(h)
            res.append(h)
        latent = res[-1].flatten(1)  # (B, style_dim)
        feats = res[::-1][2:]  # [(B, C8, 8, 8), (B, C16, 16, 16), ..., (B, C_S, S, S)]
        return latent, feats


class Encoder(nn.Module):
    """``net_app`` (shared for source and driving) plus ``fc``: 5 linear layers, no activations."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.net_app = EncoderApp(cfg)
        d = cfg.style_dim
        self.fc = nn.Sequential(*[EqualLinear(d, d) for _ in range(4)], EqualLinear(d, cfg.motion_dim))

    def enc_app(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net_app(x)

    def enc_motion(self, x: torch.Tensor) -> torch.Tensor:
        """Motion magnitudes α (B, motion_dim) of an image."""
        return self.fc(self.net_app(x)[0])

    def forward(self, img_source: torch.Tensor, img_drive: torch.Tensor | None,
                h_start: torch.Tensor | None = None):
        """Official contract: (w_src, [α_drv] or [α_drv, α_src, h_start] or None, source features)."""
        wa, feats = self.net_app(img_source)
        if img_drive is None:
            return wa, None, feats
        alpha_drv = self.enc_motion(img_drive)
        if h_start is None:
            return wa, [alpha_drv], feats
        return wa, [alpha_drv, self.fc(wa), h_start], feats
