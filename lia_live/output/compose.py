"""Compose the animated face into the output frame: letterboxed crop, or pasted back into the portrait.

Everything that depends only on the source (letterboxed portrait, feathered mask in output pixels, the
crop→output affine, the region it touches) is computed once in ``set_source``; per frame the paste mode
warps the model image into that region and blends it there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class Fit:
    """Where an image of size (w, h) lands when fitted inside the output, aspect kept."""

    scale: float
    x0: int
    y0: int
    w: int
    h: int


def fit_rect(w: int, h: int, out_w: int, out_h: int) -> Fit:
    s = min(out_w / w, out_h / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return Fit(s, (out_w - nw) // 2, (out_h - nh) // 2, nw, nh)


def letterbox(image: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Fit an RGB image inside out_w×out_h (aspect kept, black bars)."""
    from ..imaging import resize

    f = fit_rect(image.shape[1], image.shape[0], out_w, out_h)
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    canvas[f.y0:f.y0 + f.h, f.x0:f.x0 + f.w] = resize(image, (f.w, f.h))
    return canvas


def feather_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """size² float32 mask: 1 inside, smooth fall-off to 0 over ``feather``·size at the square's edges."""
    ramp = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 0.5  # (S,)
    ramp = np.clip(ramp / max(1.0, feather * size), 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    return np.outer(ramp, ramp).astype(np.float32)  # (S, S)


class Compositor:
    """``compose(face)`` → the output frame for one model image (RGB uint8 S²).

    ``mode='crop'``: the face, resized to fit the output. ``mode='paste'``: the face pasted back into the
    full source portrait (``set_source(portrait, box)``) through a feathered mask, the portrait fitted to
    the output.
    """

    MODES = ("crop", "paste")

    def __init__(self, out_w: int, out_h: int, mode: str = "crop", feather: float = 0.12):
        if mode not in self.MODES:
            raise UserError(f"unknown --compose {mode!r}; choose crop or paste")
        self.out_w, self.out_h, self.mode, self.feather = out_w, out_h, mode, feather
        self._bg: np.ndarray | None = None
        self._roi: tuple[int, int, int, int] | None = None
        self._affine: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._size = 0

    def set_source(self, portrait: np.ndarray, box, size: int) -> None:
        """Precompute the paste for ``portrait`` whose ``box`` (a tracking.CropBox) was cropped to size²."""
        self._size = size
        if self.mode != "paste":
            return
        import cv2

        f = fit_rect(portrait.shape[1], portrait.shape[0], self.out_w, self.out_h)
        self._bg = letterbox(portrait, self.out_w, self.out_h)
        m = box.matrix(size)  # image → crop
        s, tx, ty = m[0, 0], m[0, 2], m[1, 2]
        k = f.scale / s  # crop → output scale
        ox, oy = f.x0 - tx * k, f.y0 - ty * k  # output position of crop pixel (0, 0)
        x0, y0 = max(f.x0, int(np.floor(ox))), max(f.y0, int(np.floor(oy)))
        x1 = min(f.x0 + f.w, int(np.ceil(ox + k * size)))
        y1 = min(f.y0 + f.h, int(np.ceil(oy + k * size)))
        if x1 <= x0 or y1 <= y0:
            raise UserError("the source crop lies outside the source image; use --compose crop")
        self._roi = (x0, y0, x1, y1)
        self._affine = np.array([[k, 0, ox - x0], [0, k, oy - y0]], np.float64)  # crop → ROI pixels
        mask = cv2.warpAffine(feather_mask(size, self.feather), self._affine, (x1 - x0, y1 - y0),
                              flags=cv2.INTER_LINEAR, borderValue=0)
        self._mask = mask[:, :, None]  # (h, w, 1)

    def compose(self, face: np.ndarray) -> np.ndarray:
        if self.mode == "crop":
            return letterbox(face, self.out_w, self.out_h)
        if self._bg is None:
            raise RuntimeError("Compositor.set_source() must be called before compose() in paste mode")
        import cv2

        x0, y0, x1, y1 = self._roi
        warped = cv2.warpAffine(face, self._affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)  # (h, w, 3)
        out = self._bg.copy()
        bg = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (bg + self._mask * (warped.astype(np.float32) - bg) + 0.5).astype(np.uint8)
        return out

    def passthrough(self, frame: np.ndarray) -> np.ndarray:
        """The real camera frame fitted to the output."""
        return letterbox(frame, self.out_w, self.out_h)
