"""The live loop's frame paths: on the host (OpenCV, :class:`HostFrames`) or on the model's device
(:class:`DeviceFrames`: upload the camera frame once, crop and normalise it there, hand the output frame back
once); :func:`frame_path` picks one.

The per-frame functions here use torch only (no OpenCV), so the same code runs on CPU tensors (the tests
exercise it there) and on CUDA tensors. The CUDA-specific parts (pinned host buffers, the side stream and
events in ``FrameUploader``/``FrameDownloader``) are **not run on a GPU yet**.

Conventions: frames are RGB uint8 ``(H, W, 3)`` tensors (channels last, like the numpy frames elsewhere);
the model takes float ``(1, 3, S, S)`` in [-1, 1]. Geometry follows ``lia_live.tracking``: a ``CropBox``
(cx, cy, side) sampled like ``tracking.crop_square`` (bilinear affine with replicated borders; an area filter
on an integer-aligned window when the box is more than 1.5× the output side).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .imaging import from_tensor, to_tensor
from .runtime import canonical_device
from .tracking import center_box, crop_square

AREA_ABOVE = 1.5  # same switch as tracking.crop_square: box side > 1.5·S → area filter


# ---- checks ---------------------------------------------------------------------------------------------
def check_frame(frame: torch.Tensor, what: str = "frame") -> torch.Tensor:
    """``frame`` must be a uint8 (H, W, 3) tensor; TypeError / ValueError otherwise."""
    if not isinstance(frame, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(frame).__name__}")
    if frame.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{what} must be an RGB (H, W, 3) tensor, got shape {tuple(frame.shape)}")
    return frame


def _check_array(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise TypeError(f"frame must be uint8, got {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frame must be an RGB (H, W, 3) array, got shape {rgb.shape}")
    return rgb


# ---- resampling (float, channels last, values in any range) ----------------------------------------------
@functools.lru_cache(maxsize=64)
def _area_taps(n: int, out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Box filter n → out (shrinking), as cv2 INTER_AREA: output i averages the source interval
    [i·n/out, (i+1)·n/out), end pixels weighted by their overlap. Returns (index, weight), both (out, K);
    cached per (n, out, device) so a steady box costs no set-up kernels."""
    r = n / out
    k = int(math.ceil(r)) + 1
    i = torch.arange(out, device=device, dtype=torch.float64)  # (out,)
    lo, hi = i * r, (i + 1) * r  # (out,)
    j = lo.floor()[:, None] + torch.arange(k, device=device, dtype=torch.float64)  # (out, K) source pixels
    overlap = (torch.minimum(j + 1, hi[:, None]) - torch.maximum(j, lo[:, None])).clamp_(min=0)  # (out, K)
    return j.clamp_(max=n - 1).long(), (overlap / r).float()


def _area_rows(x: torch.Tensor, out: int) -> torch.Tensor:
    """Shrink float (n, ...) along dim 0 to ``out`` rows with the area filter. Each tap gathers whole
    rows (fast on every device); ceil(n/out) + 1 taps."""
    n = x.shape[0]
    if n == out:
        return x
    idx, w = _area_taps(n, out, x.device)  # (out, K) each
    flat = x.reshape(n, -1)  # (n, M)
    y = flat.index_select(0, idx[:, 0]) * w[:, :1]  # (out, M)
    for t in range(1, idx.shape[1]):
        y.addcmul_(flat.index_select(0, idx[:, t]), w[:, t:t + 1])
    return y.reshape(out, *x.shape[1:])


def resize_hwc(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Resize float (H, W, C) like ``imaging.resize``: the area filter (cv2 INTER_AREA) when shrinking,
    bicubic (a = −0.75, cv2 INTER_CUBIC; ``F.interpolate``) when enlarging, nothing when the size
    matches. When one axis shrinks and the other grows, that axis is area-filtered and the other bicubic
    (cv2 would area-filter both). Not clamped; the result may be a non-contiguous (out_h, out_w, C) view."""
    h, w = x.shape[:2]
    if out_h < h:
        x = _area_rows(x, out_h)  # (out_h, W, C)
    if out_w < w:
        x = _area_rows(x.transpose(0, 1).contiguous(), out_w).transpose(0, 1)  # (H', out_w, C)
    if x.shape[:2] == (out_h, out_w):
        return x
    y = F.interpolate(x.permute(2, 0, 1).unsqueeze(0), size=(out_h, out_w), mode="bicubic",
                      align_corners=False)  # (1, C, out_h, out_w)
    return y[0].permute(1, 2, 0)  # (out_h, out_w, C)


# ---- model input ----------------------------------------------------------------------------------------
def _window_rows(lo: int, n: int, limit: int, device: torch.device) -> torch.Tensor:
    return (torch.arange(n, device=device) + lo).clamp_(0, limit - 1)  # (n,) replicated borders


def _crop_area(frame: torch.Tensor, box, size: int) -> torch.Tensor:
    """Area-filtered crop, the tensor twin of ``tracking._crop_area``: integer-aligned ceil(side)² window
    (borders replicated), box-filtered to size². Returns float (1, 3, S, S) in 0..255."""
    h, w = frame.shape[:2]
    half = box.side / 2
    x0, y0 = int(math.floor(box.cx - half)), int(math.floor(box.cy - half))
    n = int(math.ceil(box.side))
    if x0 >= 0 and y0 >= 0 and x0 + n <= w and y0 + n <= h:
        window = frame[y0:y0 + n, x0:x0 + n]  # (n, n, 3) view
    else:
        rows = _window_rows(y0, n, h, frame.device)  # (n,)
        cols = _window_rows(x0, n, w, frame.device)  # (n,)
        window = frame.index_select(0, rows).index_select(1, cols)  # (n, n, 3)
    y = resize_hwc(window.float(), size, size)  # (S, S, 3)
    return y.permute(2, 0, 1).unsqueeze(0)  # (1, 3, S, S)


def _axis_grid(centre: float, side: float, size: int, limit: int, device: torch.device
               ) -> tuple[int, int, torch.Tensor]:
    """Sample positions of one crop axis (cv2 warpAffine convention: crop pixel u ← image
    centre + (u − S/2)·side/S), the image span [lo, hi) that bilinear sampling reads (clipped to the image,
    so grid_sample's "border" padding replicates the image's own edge), and the positions normalised to
    that span for grid_sample(align_corners=False)."""
    step = side / size
    first, last = centre - side / 2, centre - side / 2 + (size - 1) * step
    lo = min(max(int(math.floor(first)), 0), limit - 1)
    hi = min(max(int(math.floor(last)) + 2, lo + 1), limit)
    u = torch.arange(size, device=device, dtype=torch.float32)  # (S,)
    pos = (first - lo) + u * step  # (S,) in span pixels
    return lo, hi, (2 * pos + 1) / (hi - lo) - 1  # (S,) normalised


def _crop_linear(frame: torch.Tensor, box, size: int) -> torch.Tensor:
    """Bilinear crop with replicated borders (tensor twin of the cv2.warpAffine path of
    ``tracking.crop_square``); only the image region the box reads is converted to float.
    Returns float (1, 3, S, S) in 0..255."""
    h, w = frame.shape[:2]
    x0, x1, gx = _axis_grid(box.cx, box.side, size, w, frame.device)
    y0, y1, gy = _axis_grid(box.cy, box.side, size, h, frame.device)
    roi = frame[y0:y1, x0:x1].permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, h', w')
    grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)  # (S, S, 2): (x, y)
    return F.grid_sample(roi, grid.unsqueeze(0), mode="bilinear", padding_mode="border",
                         align_corners=False)  # (1, 3, S, S)


def crop_to_model(frame: torch.Tensor, box, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Crop ``box`` (a ``tracking.CropBox`` in frame pixels) of a uint8 (H, W, 3) frame tensor into the
    model's input: (1, 3, size, size) in [-1, 1], on the frame's device, in ``dtype``.

    Matches ``imaging.to_tensor(tracking.crop_square(frame, box, size))`` up to resampling rounding (that
    path rounds the crop to uint8; this one does not): bilinear affine sampling with replicated borders, or,
    when the box side exceeds 1.5·size, an exact area filter on the same integer-aligned window.
    """
    check_frame(frame)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not box.side > 0:
        raise ValueError(f"the crop box side must be > 0, got {box.side}")
    if box.side > size * AREA_ABOVE:
        x = _crop_area(frame, box, size)  # (1, 3, S, S) 0..255
    else:
        x = _crop_linear(frame, box, size)  # (1, 3, S, S) 0..255
    return (x / 127.5 - 1.0).clamp_(-1, 1).to(dtype).contiguous()  # (1, 3, S, S)


def to_model(frame: torch.Tensor, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A whole frame as model input: its largest centred square (``tracking.center_box``) resized to
    size² — the ``--crop none`` path. (1, 3, size, size) in [-1, 1]."""
    check_frame(frame)
    return crop_to_model(frame, center_box(frame), size, dtype)


def face_to_255(face: torch.Tensor) -> torch.Tensor:
    """A model image (float (1, 3, S, S) in [-1, 1]) or a uint8 (S, S, 3) face → float32 (1, 3, S, S) in
    0..255 (float input clamped to [-1, 1] first, like ``imaging.from_tensor``, but not rounded)."""
    if not isinstance(face, torch.Tensor):
        raise TypeError(f"face must be a torch.Tensor, got {type(face).__name__}")
    if face.dtype == torch.uint8:
        if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
            raise ValueError(f"a uint8 face must be (S, S, 3), got shape {tuple(face.shape)}")
        return face.permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, S, S)
    if not face.is_floating_point():
        raise TypeError(f"face must be uint8 or floating point, got {face.dtype}")
    if face.ndim != 4 or face.shape[:2] != (1, 3) or face.shape[2] != face.shape[3]:
        raise ValueError(f"a float face must be (1, 3, S, S), got shape {tuple(face.shape)}")
    return (face.float().clamp(-1, 1) + 1) * 127.5  # (1, 3, S, S)


def store_u8(dst: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Write float (h, w, 3) values 0..255 into a uint8 (h, w, 3) view, rounded half up and clamped."""
    dst.copy_(x.add(0.5).clamp_(0, 255))  # float → uint8 truncates: floor(x + 0.5)
    return dst


# ---- host ↔ device ----------------------------------------------------------------------------------------
class _HostBuffer:
    """One reused host (H, W, 3) uint8 buffer, re-allocated only when the shape changes; pinned when
    ``pin`` (page-locked memory needs CUDA)."""

    def __init__(self, pin: bool):
        self.pin = pin
        self.tensor: torch.Tensor | None = None
        self.array: np.ndarray | None = None
        self.allocations = 0

    def get(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
        """The buffer for ``shape`` as a tensor and the numpy view of the same memory."""
        if self.tensor is None or self.array is None or tuple(self.tensor.shape) != tuple(shape):
            self.tensor = torch.empty(tuple(shape), dtype=torch.uint8, pin_memory=self.pin)  # (H, W, 3)
            self.array = self.tensor.numpy()
            self.allocations += 1
        return self.tensor, self.array


class FrameUploader:
    """``upload(rgb)`` → the camera frame as a uint8 (H, W, 3) tensor on ``device``.

    CPU: ``torch.from_numpy`` (no copy; the tensor shares the caller's array). CUDA (**not run on a GPU
    yet**): the frame is copied into a reused pinned host buffer (re-allocated when the frame shape
    changes), then copied to the device with ``non_blocking=True`` on a side stream; the current (compute)
    stream waits on an event recorded after that copy, so work queued after ``upload`` sees the frame
    without a host sync. The next ``upload`` waits for the previous copy out of the pinned buffer before
    overwriting it. The returned tensor is new each call (caching allocator; ``record_stream`` tells the
    allocator it is used on the compute stream).
    """

    def __init__(self, device: torch.device | str):
        self.device = canonical_device(device)
        self.cuda = self.device.type == "cuda"
        self._host = _HostBuffer(pin=self.cuda)
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._copied = torch.cuda.Event() if self.cuda else None
        self._pending = False

    def upload(self, rgb: np.ndarray) -> torch.Tensor:
        _check_array(rgb)
        if not self.cuda:
            if self.device.type != "cpu":
                return torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
            return torch.from_numpy(np.ascontiguousarray(rgb))  # (H, W, 3), shares memory when contiguous
        assert self._stream is not None and self._copied is not None
        if self._pending:
            self._copied.synchronize()  # the previous H2D copy has read the pinned buffer
        pinned, array = self._host.get(rgb.shape)  # (H, W, 3) pinned
        np.copyto(array, rgb)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            frame = torch.empty(rgb.shape, dtype=torch.uint8, device=self.device)  # (H, W, 3)
            frame.copy_(pinned, non_blocking=True)
            self._copied.record(self._stream)
        compute.wait_event(self._copied)
        frame.record_stream(compute)
        self._pending = True
        return frame


class FrameDownloader:
    """``download(t)`` → a uint8 (H, W, 3) tensor as a numpy array on the host.

    **The returned array is reused / shared unless ``copy=True``:**
    - CUDA (**not run on a GPU yet**): it is a view of one reused pinned host buffer (re-allocated only
      when the shape changes), overwritten by the next ``download``. The copy is issued ``non_blocking`` on
      the current stream and waited for with an event (not a device-wide sync).
    - CPU: it is ``t.numpy()``, sharing memory with ``t`` — with ``Compositor.compose_tensor`` that is the
      compositor's reused canvas, overwritten by the next compose.
    Consume it (send it, encode it) before the next frame, or pass ``copy=True`` to keep it.
    """

    def __init__(self):
        self._host = _HostBuffer(pin=True)
        self._done: torch.cuda.Event | None = None

    def download(self, t: torch.Tensor, copy: bool = False) -> np.ndarray:
        check_frame(t)
        if t.device.type == "cpu":
            a = t.contiguous().numpy()
            return a.copy() if copy else a
        if t.device.type != "cuda":
            a = t.cpu().numpy()
            return a
        host, array = self._host.get(tuple(t.shape))  # (H, W, 3) pinned
        host.copy_(t, non_blocking=True)
        if self._done is None:
            self._done = torch.cuda.Event()
        self._done.record(torch.cuda.current_stream(t.device))
        self._done.synchronize()
        return array.copy() if copy else array


# ---- the live loop's frame paths ---------------------------------------------------------------------------
class HostFrames:
    """The frame path on the host: OpenCV crop and compose around the model (the faster choice on a CPU)."""

    name = "host"

    def __init__(self, device: torch.device):
        self.device = device

    def model_input(self, image: np.ndarray, box, size: int) -> torch.Tensor:
        return to_tensor(crop_square(image, box, size)).to(self.device)  # (1, 3, S, S)

    def prepare_compositor(self, comp, portrait: np.ndarray, box, size: int) -> None:
        comp.set_source(portrait, box, size)

    def compose(self, comp, face: torch.Tensor) -> np.ndarray:
        return comp.compose(from_tensor(face)[0])


class DeviceFrames(HostFrames):
    """The frame path on the model's device: the camera frame is uploaded once as uint8 (pinned, reused buffer),
    cropped/normalised there, composed there, and downloaded once.

    The default on CUDA (not run on a GPU yet: written from the measured stage costs and the PyTorch
    docs; CPU tests run the same code on CPU tensors).
    """

    name = "device"

    def __init__(self, device: torch.device):
        super().__init__(device)
        self.uploader = FrameUploader(device)
        self.downloader = FrameDownloader()

    def model_input(self, image: np.ndarray, box, size: int) -> torch.Tensor:
        return crop_to_model(self.uploader.upload(image), box, size)  # (1, 3, S, S)

    def prepare_compositor(self, comp, portrait: np.ndarray, box, size: int) -> None:
        comp.set_source_tensor(portrait, box, size, self.device)

    def compose(self, comp, face: torch.Tensor) -> np.ndarray:
        return self.downloader.download(comp.compose_tensor(face), copy=True)


def frame_path(choice: str, device: torch.device) -> HostFrames:
    """``auto``: on the device for CUDA, on the host for CPU (measured: OpenCV's crop-mode compose is 15×
    faster than torch's on a CPU)."""
    if choice == "device" or (choice == "auto" and device.type == "cuda"):
        return DeviceFrames(device)
    return HostFrames(device)
