"""StyleGAN2 discriminator (as used by LIA), with the official attribute names so its ``dis`` loads.

``convs``: ConvLayer(3, C_S, 1) then ResBlocks halving the resolution down to 4×4; minibatch-stddev
(one feature); ``final_conv`` 3×3; ``final_linear`` EqualLinear(C_4·16 → C_4, lrelu) → EqualLinear(C_4 → 1).

Minibatch-stddev groups are *contiguous* runs of ``group`` samples (StyleGAN2 interleaves them). Samples
are i.i.d., so the statistics are the same; contiguous groups make a batch split across ranks or
accumulation steps compute exactly what one big batch computes, as long as the group divides each part.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lia_live.model.layers import ConvLayer, EqualLinear, ResBlock


def d_channels(channel_multiplier: int = 1, channel_div: int = 1) -> dict[int, int]:
    m = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m,
            1024: 16 * m}
    return {r: max(1, c // channel_div) for r, c in base.items()}


class Discriminator(nn.Module):
    """``Discriminator(size)(x)`` → logits (B, 1) for images x (B, 3, size, size) in [-1, 1]."""

    def __init__(self, size: int = 256, channel_multiplier: int = 1, channel_div: int = 1,
                 stddev_group: int = 4):
        super().__init__()
        ch = d_channels(channel_multiplier, channel_div)
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8:
            raise ValueError(f"discriminator size must be a power of two >= 8, got {size}")
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 4 * 4, ch[4], activation=True),
                                          EqualLinear(ch[4], 1))

    def group_size(self, batch: int) -> int:
        g = min(batch, self.stddev_group)
        while batch % g:
            g -= 1
        return g

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape  # (B, C, 4, 4)
        g = self.group_size(b)
        y = x.float().reshape(b // g, g, self.stddev_feat, c // self.stddev_feat, h, w)  # (B/g, g, F, C/F, H, W)
        y = torch.sqrt(y.var(dim=1, unbiased=False) + 1e-8)  # (B/g, F, C/F, H, W)
        y = y.mean(dim=(2, 3, 4))  # (B/g, F)
        y = y.repeat_interleave(g, dim=0)[:, :, None, None].expand(b, self.stddev_feat, h, w)  # (B, F, H, W)
        return torch.cat([x, y.to(x.dtype)], dim=1)  # (B, C+F, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)  # (B, C4, 4, 4)
        out = self.minibatch_stddev(out)  # (B, C4+1, 4, 4)
        out = self.final_conv(out)  # (B, C4, 4, 4)
        return self.final_linear(out.flatten(1))  # (B, 1)
