"""The StyleGAN2 vocabulary LIA is built from, defined once.

Equalised-learning-rate linear/conv layers, a fused leaky ReLU with its bias, FIR blur / up / down
filters whose kernels are buffers, and a modulated convolution written in its static-weight form
(scale input channels by the style, convolve with the fixed weight, scale output channels by the
demodulation factor). That form is the exact same function as StyleGAN2's per-sample weights, but it
batches, exports and compiles like an ordinary convolution.

Attribute names follow the official LIA code so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_KERNEL = (1, 3, 3, 1)


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable FIR kernel: the outer product of ``k`` with itself, normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (depthwise), downsample by striding.

    Same result as StyleGAN2's ``upfirdn2d_native`` for symmetric padding pairs and non-negative pads.
    """
    b, c, h, w = x.shape  # (B, C, H, W)
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    kh, kw = kernel.shape
    weight = torch.flip(kernel, (0, 1)).to(x.dtype).expand(c, 1, kh, kw)
    if pad[0] == pad[1]:  # symmetric: let the convolution pad (no padded copy of the input)
        return F.conv2d(x, weight, stride=down, padding=pad[0], groups=c)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, weight, stride=down, groups=c)


class Blur(nn.Module):
    """FIR low-pass filter with fixed padding; ``upsample_factor`` rescales the kernel's gain."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling (used on the skip paths of ToRGB / ToFlow)."""

    def __init__(self, kernel: Sequence[float] = BLUR_KERNEL, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class FusedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with a per-channel bias of shape (1, C, 1, 1)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, self.negative_slope) * self.scale


class ScaledLeakyReLU(nn.Module):
    def __init__(self, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * 2 ** 0.5


class EqualConv2d(nn.Module):
    """Conv2d whose weight is scaled by 1/sqrt(fan_in) at run time (equalised learning rate)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            if bias is not None:
                out = out + bias
            return F.leaky_relu(out, 0.2) * 2 ** 0.5
        return F.linear(x, self.weight * self.scale, bias=bias)


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [FusedLeakyReLU | ScaledLeakyReLU], as in StyleGAN2."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3×3 convs (the second downsamples) plus a 1×1 downsampling skip, summed / sqrt(2)."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return (out + self.skip(x)) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution in static-weight form.

    Official form: per sample b, ``w_b = scale * W * s_b`` (s_b the style on input channels),
    demodulated by ``rsqrt(sum(w_b**2) + 1e-8)`` per output channel, then a grouped conv.
    Here: ``conv(x * s_b, scale * W) * demod_b``, which is the same function because the style
    scales input channels and the demodulation scales output channels (and commutes with the blur).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        return F.conv2d(x, weight, padding=self.padding)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style.to(self.weight.dtype))  # (B, Cin); the latent may arrive in fp32
        weight = self.weight[0] * self.scale  # (Cout, Cin, k, k)
        if self.demodulate and x.dtype == torch.float16:
            return self._forward_fp16(x, s, weight)
        out = self._conv(x * s[:, :, None, None], weight)
        if self.demodulate:
            wsq = weight.pow(2).sum(dim=(2, 3))  # (Cout, Cin)
            demod = torch.rsqrt(s.pow(2) @ wsq.t() + 1e-8)  # (B, Cout)
            out = out * demod[:, :, None, None]
        return out

    def _forward_fp16(self, x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The same function with fp16 kept in range (StyleGAN2-ADA's recipe, written for this static form).

        Real styles reach tens to hundreds, so ``x * s`` and the convolution before demodulation can pass
        fp16's 65504, and ``+ 1e-8`` is 0 in fp16. The style is pre-normalised per sample by its largest
        magnitude ``m`` and the weight per output channel by its largest magnitude ``c``; since
        demodulation cancels any such scale, the output is ``conv(x·s/m, W/c) · (m·c·demod)``, with the
        demodulation computed in fp32 from the true style and weight (exactly the fp32 factor).
        """
        s32, w32 = s.float(), weight.float()
        demod = torch.rsqrt(s32.pow(2) @ w32.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (B, Cout) fp32
        m = s32.abs().amax(dim=1, keepdim=True).clamp_min(1e-20)  # (B, 1)
        c = w32.abs().amax(dim=(1, 2, 3)).clamp_min(1e-20)  # (Cout,)
        out = self._conv(x * (s32 / m).to(x.dtype)[:, :, None, None], (w32 / c[:, None, None, None]).to(x.dtype))
        return out * (demod * m * c).to(x.dtype)[:, :, None, None]


class NoiseInjection(nn.Module):
    """Kept for weight compatibility; LIA never feeds noise, so with ``noise=None`` it is the identity."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            return x
        return x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
