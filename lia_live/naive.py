"""The official LIA per-frame formulation, re-created with its costs, as the benchmark's baseline.

Every frame the official demo calls ``gen(img_source, img_drive, h_start)``, which
- encodes the source *and* the driving frame with ``net_app`` and runs ``fc`` on both,
- recomputes ``torch.qr`` of the motion dictionary on each of its three ``Direction`` calls and
  applies it through ``diag_embed``,
- runs StyleGAN2's modulated convolutions with per-sample weights (grouped convs),
- rebuilds the identity grid with numpy in each of the six ``ToFlow`` calls,
- filters with the single-channel ``upfirdn2d_native`` (full-resolution filter, then strided slicing).

:class:`NaivePath` does exactly that, in fp32, with the weights of a :class:`~lia_live.model.Generator`,
so the benchmark compares the fast per-frame path with an honest baseline that computes the same image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .model import Generator
from .model.layers import (
    Blur,
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    ModulatedConv2d,
    ResBlock,
    ScaledLeakyReLU,
    StyledConv,
    Upsample,
)
from .model.synthesis import ToFlow, ToRGB


def upfirdn2d_native(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                     pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """StyleGAN2's reference ``upfirdn2d_native`` as LIA ships it (one-channel conv over B·C maps)."""
    _, minor, in_h, in_w = x.shape  # (B, C, H, W)
    kh, kw = kernel.shape
    p0, p1 = pad
    out = x.reshape(-1, minor, in_h, 1, in_w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1, 0, 0])
    out = out.reshape(-1, minor, in_h * up, in_w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0): out.shape[2] - max(-p1, 0), max(-p0, 0): out.shape[3] - max(-p1, 0)]
    out = out.reshape(-1, 1, in_h * up + p0 + p1, in_w * up + p0 + p1)
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, kh, kw))
    out = out.reshape(-1, minor, in_h * up + p0 + p1 - kh + 1, in_w * up + p0 + p1 - kw + 1)
    return out[:, :, ::down, ::down]


def _blur(m: Blur, x: torch.Tensor) -> torch.Tensor:
    return upfirdn2d_native(x, m.kernel, pad=m.pad)


def _upsample(m: Upsample, x: torch.Tensor) -> torch.Tensor:
    return upfirdn2d_native(x, m.kernel, up=m.factor, pad=m.pad)


def _equal_conv(m: EqualConv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, m.weight * m.scale, bias=m.bias, stride=m.stride, padding=m.padding)


def _equal_linear(m: EqualLinear, x: torch.Tensor) -> torch.Tensor:
    if m.activation:
        out = F.linear(x, m.weight * m.scale)
        return F.leaky_relu(out + m.bias * m.lr_mul, 0.2) * math.sqrt(2)
    return F.linear(x, m.weight * m.scale, bias=m.bias * m.lr_mul)


def _conv_layer(m: ConvLayer, x: torch.Tensor) -> torch.Tensor:
    for layer in m:
        if isinstance(layer, Blur):
            x = _blur(layer, x)
        elif isinstance(layer, EqualConv2d):
            x = _equal_conv(layer, x)
        elif isinstance(layer, FusedLeakyReLU):
            x = F.leaky_relu(x + layer.bias, 0.2) * math.sqrt(2)
        elif isinstance(layer, ScaledLeakyReLU):
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__} in ConvLayer")
    return x


def _res_block(m: ResBlock, x: torch.Tensor) -> torch.Tensor:
    out = _conv_layer(m.conv2, _conv_layer(m.conv1, x))
    return (out + _conv_layer(m.skip, x)) / math.sqrt(2)


def _modulated_conv(m: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's per-sample weight form: modulate, demodulate, grouped (transposed) conv."""
    batch, in_ch, h, w = x.shape  # (B, Cin, H, W)
    k = m.kernel_size
    s = _equal_linear(m.modulation, style).view(batch, 1, in_ch, 1, 1)
    weight = m.scale * m.weight * s  # (B, Cout, Cin, k, k)
    if m.demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)  # (B, Cout)
        weight = weight * demod.view(batch, m.out_channel, 1, 1, 1)
    if m.upsample:
        x = x.view(1, batch * in_ch, h, w)
        weight = weight.transpose(1, 2).reshape(batch * in_ch, m.out_channel, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
        out = out.view(batch, m.out_channel, out.shape[2], out.shape[3])
        return _blur(m.blur, out)
    weight = weight.view(batch * m.out_channel, in_ch, k, k)
    out = F.conv2d(x.view(1, batch * in_ch, h, w), weight, padding=m.padding, groups=batch)
    return out.view(batch, m.out_channel, out.shape[2], out.shape[3])


def _styled_conv(m: StyledConv, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    out = _modulated_conv(m.conv, x, style)
    return F.leaky_relu(out + m.activate.bias, 0.2) * math.sqrt(2)


def _to_rgb(m: ToRGB, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    out = _conv_layer(m.conv, x) + m.bias
    if skip is not None:
        out = out + _upsample(m.upsample, skip)
    return out


def _to_flow(m: ToFlow, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor,
             skip: torch.Tensor | None):
    out = _modulated_conv(m.conv, x, style) + m.bias  # (B, 3, H, W)
    if skip is not None:
        out = out + _upsample(m.upsample, skip)
    xs = np.linspace(-1, 1, x.size(2))
    xs = np.stack(np.meshgrid(xs, xs), 2)
    grid = torch.tensor(xs).float().unsqueeze(0).repeat(x.size(0), 1, 1, 1).to(x.device)  # (B, H, W, 2)
    sampler = torch.tanh(out[:, 0:2])
    mask = torch.sigmoid(out[:, 2:3])
    flow = sampler.permute(0, 2, 3, 1) + grid
    warped = F.grid_sample(feat, flow, align_corners=False) * mask
    return warped, warped + x * (1 - mask), out


def _direction(weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(weight + 1e-8)  # recomputed per call, as upstream
    return torch.sum(torch.matmul(torch.diag_embed(alpha), q.t()), dim=1)  # (B, D)


class NaivePath:
    """``gen(img_source, img_drive, h_start)`` computed the official way (fp32, no caching at all).

    ``__call__(source, driving, h_start)`` → image (B, 3, S, S); ``h_start=None`` gives absolute motion.
    """

    def __init__(self, generator: Generator):
        self.gen = generator.eval()

    def _net_app(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        convs = self.gen.enc.net_app.convs
        res = []
        h = _conv_layer(convs[0], x)
        res.append(h)
        for block in convs[1:-1]:
            h = _res_block(block, h)
            res.append(h)
        res.append(_equal_conv(convs[-1], h))
        return res[-1].squeeze(-1).squeeze(-1), res[::-1][2:]

    def _fc(self, latent: torch.Tensor) -> torch.Tensor:
        for layer in self.gen.enc.fc:
            latent = _equal_linear(layer, latent)
        return latent

    def motion(self, img: torch.Tensor) -> torch.Tensor:
        """α (B, M) of an image, the official way (full encoder then fc)."""
        with torch.no_grad():
            return self._fc(self._net_app(img)[0])

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, driving: torch.Tensor,
                 h_start: torch.Tensor | None = None) -> torch.Tensor:
        dec = self.gen.dec
        wa, feats = self._net_app(source)  # the source is re-encoded every frame upstream
        alpha_drv = self._fc(self._net_app(driving)[0])
        w = dec.direction.weight
        if h_start is None:
            latent = wa + _direction(w, alpha_drv)
        else:
            alpha_src = self._fc(wa)
            latent = wa + (_direction(w, alpha_drv) - _direction(w, h_start)) + _direction(w, alpha_src)
        x = dec.input.input.repeat(latent.shape[0], 1, 1, 1)  # (B, 512, 4, 4)
        x = _styled_conv(dec.conv1, x, latent)
        skip = skip_flow = None
        for conv_up, conv, to_rgb, to_flow, feat in zip(dec.convs[::2], dec.convs[1::2], dec.to_rgbs,
                                                        dec.to_flows, feats):
            x = _styled_conv(conv, _styled_conv(conv_up, x, latent), latent)
            warped, x, skip_flow = _to_flow(to_flow, x, latent, feat, skip_flow)
            skip = _to_rgb(to_rgb, warped, skip)
        return skip
