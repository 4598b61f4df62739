"""Conversions between RGB uint8 images and the model's [-1, 1] NCHW tensors."""

from __future__ import annotations

import numpy as np
import torch

from .errors import UserError


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an H×W×3 image to ``size`` (int → square; (w, h) otherwise); area filter when shrinking."""
    import cv2

    w, h = (size, size) if isinstance(size, int) else size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    shrink = image.shape[0] > h or image.shape[1] > w
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def check_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise UserError(f"{what} must be an RGB H×W×3 array, got {shape}")
    if image.dtype != np.uint8:
        raise UserError(f"{what} must be uint8, got {image.dtype}")
    return image


def to_tensor(image: np.ndarray, size: int | None = None) -> torch.Tensor:
    """RGB uint8 H×W×3 → float32 (1, 3, S, S) in [-1, 1] (resized to ``size`` when given)."""
    check_rgb(image)
    if size is not None:
        image = resize(image, size)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return (t / 127.5 - 1.0).unsqueeze(0)


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → uint8 (B, H, W, 3). Clamped, never min-max normalised."""
    t = t.detach().float().clamp(-1, 1)
    return ((t + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
