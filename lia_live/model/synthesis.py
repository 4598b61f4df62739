"""StyleGAN2-like decoder whose ToFlow layers warp the source's skip features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeneratorConfig
from .layers import BLUR_KERNEL, ConstantInput, ConvLayer, ModulatedConv2d, StyledConv, Upsample
from .motion import Direction


def identity_grid(size: int) -> torch.Tensor:
    """(1, size, size, 2) sampling grid of ``linspace(-1, 1, size)`` in (x, y) order."""
    xs = torch.linspace(-1, 1, size, dtype=torch.float64)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).unsqueeze(0).float()


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, upsample: bool = True, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ConvLayer(in_channel, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Predicts a flow (tanh offsets on the identity grid) and a mask, warps the source features.

    Returns (warped features, warped + decoder features · (1 − mask), flow logits for the next scale).
    The identity grid is a non-persistent buffer built once (the official code rebuilt it in numpy
    and copied it to CUDA on every call). ``grid_sample`` keeps the official defaults:
    bilinear, zero padding, ``align_corners=False``.
    """

    def __init__(self, in_channel: int, style_dim: int, resolution: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.register_buffer("grid", identity_grid(resolution), persistent=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor,
                skip: torch.Tensor | None = None):
        # The flow runs at this module's own precision: reduced-precision backends keep ToFlow in fp32,
        # because a half-precision sampling grid is off by up to half a pixel at 256².
        dtype = self.bias.dtype
        out = self.conv(x.to(dtype), style.to(dtype)) + self.bias  # (B, 3, H, W)
        if skip is not None:
            out = out + self.upsample(skip.to(dtype))
        flow = torch.tanh(out[:, 0:2]).permute(0, 2, 3, 1) + self.grid.to(dtype)  # (B, H, W, 2)
        mask = torch.sigmoid(out[:, 2:3])  # (B, 1, H, W)
        warped = F.grid_sample(feat.to(dtype), flow, mode="bilinear", padding_mode="zeros",
                               align_corners=False) * mask
        return warped.to(x.dtype), (warped + x.to(dtype) * (1.0 - mask)).to(x.dtype), out


class Synthesis(nn.Module):
    def __init__(self, cfg: GeneratorConfig, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.size = cfg.size
        self.style_dim = cfg.style_dim
        self.motion_dim = cfg.motion_dim
        ch = cfg.channels()
        self.direction = Direction(cfg.style_dim, cfg.motion_dim)
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, cfg.style_dim, blur_kernel=blur_kernel)
        # Unused in forward (as upstream) but part of the official state dict.
        self.to_rgb1 = ToRGB(ch[4], upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_channel = ch[4]
        for i in range(3, cfg.log_size + 1):
            out_channel = ch[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, cfg.style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, cfg.style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel))
            self.to_flows.append(ToFlow(out_channel, cfg.style_dim, 2 ** i))
            in_channel = out_channel

    def latent(self, wa: torch.Tensor, alpha: list[torch.Tensor] | None) -> torch.Tensor:
        """Official latent arithmetic: wa, wa + D(α), or wa + D(α_t) − D(α_start) + D(α_src)."""
        if alpha is None:
            return wa
        if len(alpha) > 1:
            return wa + (self.direction(alpha[0]) - self.direction(alpha[2])) + self.direction(alpha[1])
        return wa + self.direction(alpha[0])

    def synthesize(self, latent: torch.Tensor, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """latent (B, D) + source skip features → image (B, 3, S, S), no tanh (clamp when displaying)."""
        out = self.conv1(self.input(latent.shape[0]), latent)  # (B, 512, 4, 4)
        skip = skip_flow = None
        for conv_up, conv, to_rgb, to_flow, feat in zip(self.convs[::2], self.convs[1::2], self.to_rgbs,
                                                        self.to_flows, feats):
            out = conv(conv_up(out, latent), latent)
            warped, out, skip_flow = to_flow(out, latent, feat, skip_flow)
            skip = to_rgb(warped, skip)
        return skip

    def forward(self, wa: torch.Tensor, alpha: list[torch.Tensor] | None,
                feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.synthesize(self.latent(wa, alpha), feats)
