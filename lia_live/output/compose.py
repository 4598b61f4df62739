"""Compose the animated face into the output frame: letterboxed crop, or pasted back into the portrait.

Everything that depends only on the source (letterboxed portrait, feathered mask in output pixels, the
crop→output affine, the region it touches) is computed once in ``set_source``; per frame the paste mode
warps the model image into that region and blends it there.

Two APIs on one ``Compositor``: numpy/OpenCV (``set_source``, ``compose``, ``passthrough``: uint8 arrays)
and torch (``set_source_tensor``, ``compose_tensor``, ``passthrough_tensor``: uint8 (H, W, 3) tensors on
any device, no OpenCV per frame; the CUDA use is not run on a GPU yet). torch is imported only by the
tensor methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..runtime import canonical_device, same_device

if TYPE_CHECKING:
    import torch


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


@dataclass(frozen=True)
class PastePlan:
    """What paste-back precomputes per source: the letterboxed portrait, the region the face lands in
    (x0, y0, x1, y1 in output pixels), the crop → region affine and the feathered mask over the region."""

    bg: np.ndarray  # (out_h, out_w, 3) uint8
    roi: tuple[int, int, int, int]
    affine: np.ndarray  # (2, 3) float64
    mask: np.ndarray  # (h, w, 1) float32


class Compositor:
    """``compose(face)`` → the output frame for one model image (RGB uint8 S²).

    ``mode='crop'``: the face, resized to fit the output. ``mode='paste'``: the face pasted back into the
    full source portrait (``set_source(portrait, box)``) through a feathered mask, the portrait fitted to
    the output.
    """

    MODES = ("crop", "paste")

    def __init__(self, out_w: int, out_h: int, mode: str = "crop", feather: float = 0.12):
        if mode not in self.MODES:
            raise UserError(f"unknown «compose» mode {mode!r}; choose crop or paste")
        self.out_w, self.out_h, self.mode, self.feather = out_w, out_h, mode, feather
        self._paste: PastePlan | None = None
        self._size = 0
        self._t: dict = {}  # tensor-path state: see set_source_tensor / _canvas

    def set_source(self, portrait: np.ndarray, box, size: int) -> None:
        """Precompute the paste for ``portrait`` whose ``box`` (a tracking.CropBox) was cropped to size²."""
        self._size = size
        if self.mode != "paste":
            return
        import cv2

        f = fit_rect(portrait.shape[1], portrait.shape[0], self.out_w, self.out_h)
        bg = letterbox(portrait, self.out_w, self.out_h)
        m = box.matrix(size)  # image → crop
        s, tx, ty = m[0, 0], m[0, 2], m[1, 2]
        k = f.scale / s  # crop → output scale
        ox, oy = f.x0 - tx * k, f.y0 - ty * k  # output position of crop pixel (0, 0)
        x0, y0 = max(f.x0, int(np.floor(ox))), max(f.y0, int(np.floor(oy)))
        x1 = min(f.x0 + f.w, int(np.ceil(ox + k * size)))
        y1 = min(f.y0 + f.h, int(np.ceil(oy + k * size)))
        if x1 <= x0 or y1 <= y0:
            raise UserError("the source crop lies outside the source image; use «compose» crop")
        affine = np.array([[k, 0, ox - x0], [0, k, oy - y0]], np.float64)  # crop → ROI pixels
        mask = cv2.warpAffine(feather_mask(size, self.feather), affine, (x1 - x0, y1 - y0),
                              flags=cv2.INTER_LINEAR, borderValue=(0.0,))
        self._paste = PastePlan(bg, (x0, y0, x1, y1), affine, mask[:, :, None])  # mask (h, w, 1)

    def _require_paste(self, what: str = "set_source() must be called before compose()") -> PastePlan:
        if self._paste is None:
            raise RuntimeError(f"Compositor.{what} in paste mode")
        return self._paste

    def compose(self, face: np.ndarray) -> np.ndarray:
        if self.mode == "crop":
            return letterbox(face, self.out_w, self.out_h)
        plan = self._require_paste()
        import cv2

        x0, y0, x1, y1 = plan.roi
        warped = cv2.warpAffine(face, plan.affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)  # (h, w, 3)
        out = plan.bg.copy()
        bg = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (bg + plan.mask * (warped.astype(np.float32) - bg) + 0.5).astype(np.uint8)
        return out

    def passthrough(self, frame: np.ndarray) -> np.ndarray:
        """The real camera frame fitted to the output."""
        return letterbox(frame, self.out_w, self.out_h)

    # ---- tensor path (torch; same results as the numpy path within resampling rounding) -----------------
    def set_source_tensor(self, portrait: np.ndarray, box, size: int, device: torch.device | str) -> None:
        """``set_source`` plus its device twin: in paste mode the letterboxed portrait (the output canvas),
        the feathered mask over the paste region, that region of the portrait as float, and the sampling
        grid (region pixels → face pixels, the crop→output affine) are computed once and kept on
        ``device``. Crop mode needs no source (``compose_tensor`` works without this call)."""
        import torch

        from ..frames import _check_array

        _check_array(portrait)
        self.set_source(portrait, box, size)
        dev = canonical_device(device)  # compared with the face's device per frame: one form only
        self._t = {}
        if self.mode != "paste":
            return
        plan = self._require_paste()
        x0, y0, x1, y1 = plan.roi
        canvas = torch.from_numpy(plan.bg).to(dev, copy=True)  # (H, W, 3) uint8; never plan.bg itself
        a = plan.affine  # crop → ROI pixels: (x, y) = k·(u, v) + (ox', oy')
        k, ox, oy = a[0, 0], a[0, 2], a[1, 2]
        xs = torch.arange(x1 - x0, dtype=torch.float64)  # (w,)
        ys = torch.arange(y1 - y0, dtype=torch.float64)  # (h,)
        gx = (2 * (xs - ox) / k + 1) / size - 1  # (w,) face x, normalised (align_corners=False)
        gy = (2 * (ys - oy) / k + 1) / size - 1  # (h,)
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)  # (h, w, 2)
        self._t = {
            "device": dev, "size": size, "canvas": canvas,
            "grid": grid.float().unsqueeze(0).to(dev),  # (1, h, w, 2)
            "mask": torch.from_numpy(np.ascontiguousarray(plan.mask[:, :, 0])).to(dev)[None, None],  # (1,1,h,w)
            "bg": torch.from_numpy(plan.bg[y0:y1, x0:x1]).to(dev).permute(2, 0, 1)[None].float(),  # (1,3,h,w)
        }

    def _canvas(self, key: str, device: torch.device) -> torch.Tensor:
        """A reused black (out_h, out_w, 3) uint8 canvas on ``device`` for one kind of frame."""
        import torch

        c = self._t.get(key)
        if c is None or not same_device(c.device, device):
            c = torch.zeros((self.out_h, self.out_w, 3), dtype=torch.uint8, device=device)
            self._t[key] = c
        return c

    def compose_tensor(self, face: torch.Tensor, copy: bool = False) -> torch.Tensor:
        """The output frame for one model image, as a uint8 (out_h, out_w, 3) tensor on the face's device.

        ``face``: float (1, 3, S, S) in [-1, 1] (the model's output; clamped) or uint8 (S, S, 3).
        **The result is the compositor's reused canvas**, overwritten by the next ``compose_tensor``; pass
        ``copy=True`` to get a tensor of your own. Paste mode needs ``set_source_tensor`` first (same device).
        """
        from ..frames import face_to_255, resize_hwc, store_u8

        if self.mode == "crop":
            x = face_to_255(face)  # (1, 3, S, S) 0..255 float
            s = x.shape[-1]
            f = fit_rect(s, s, self.out_w, self.out_h)
            out = self._canvas(f"crop{s}", x.device)
            face_hwc = x[0].permute(1, 2, 0).contiguous()  # (S, S, 3)
            store_u8(out[f.y0:f.y0 + f.h, f.x0:f.x0 + f.w], resize_hwc(face_hwc, f.h, f.w))
            return out.clone() if copy else out
        import torch
        import torch.nn.functional as F

        if "grid" not in self._t:
            raise RuntimeError("Compositor.set_source_tensor() must be called before compose_tensor() in "
                               "paste mode")
        if isinstance(face, torch.Tensor) and not same_device(face.device, self._t["device"]):
            raise ValueError(f"face is on {face.device} but the source was set on {self._t['device']}")
        x = face_to_255(face)  # (1, 3, S, S) 0..255 float
        if x.shape[-1] != self._t["size"]:
            raise ValueError(f"face is {x.shape[-1]}² but the source was set for {self._t['size']}²")
        x0, y0, x1, y1 = self._require_paste().roi
        warped = F.grid_sample(x, self._t["grid"], mode="bilinear", padding_mode="border",
                               align_corners=False)  # (1, 3, h, w)
        bg = self._t["bg"]  # (1, 3, h, w)
        out = self._t["canvas"]  # (H, W, 3) uint8: the portrait; only the ROI changes per frame
        store_u8(out[y0:y1, x0:x1], torch.addcmul(bg, self._t["mask"], warped - bg)[0].permute(1, 2, 0))
        return out.clone() if copy else out

    def passthrough_tensor(self, frame: torch.Tensor, copy: bool = False) -> torch.Tensor:
        """The camera frame (uint8 (H, W, 3) tensor) fitted to the output, as a uint8 (out_h, out_w, 3)
        tensor on its device. **Reused canvas** (its own, not compose_tensor's): overwritten by the next
        ``passthrough_tensor``; ``copy=True`` for a tensor of your own."""
        from ..frames import check_frame, resize_hwc, store_u8

        check_frame(frame)
        h, w = frame.shape[:2]
        f = fit_rect(w, h, self.out_w, self.out_h)
        key = f"pass{w}x{h}"
        out = self._canvas(key, frame.device)
        region = out[f.y0:f.y0 + f.h, f.x0:f.x0 + f.w]
        if (f.w, f.h) == (w, h):
            region.copy_(frame)
        else:
            store_u8(region, resize_hwc(frame.float(), f.h, f.w))
        return out.clone() if copy else out
