"""Live-test doubles: a public-domain portrait moving along a known path (:func:`make_scene`), a fake virtual
camera, an output that keeps frames, resident memory. Clips (videos, PNG folders) are made by tests/media.py.

The scene:

The skimage astronaut's head (a square patch around its VoxCeleb crop) is pasted into a 640×480 textured
background at a position that follows a smooth Lissajous path; during the ``gaps`` frame ranges the head
is outside the frame. ``truth[i]`` is where the VoxCeleb crop centre must be (None during gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scene:
    """Everything needed to regenerate the frames and check a tracker against them."""

    patch: np.ndarray  # (P, P, 3) the head patch pasted in every frame
    crop_offset: tuple[float, float]  # VoxCeleb crop centre relative to the patch's top-left
    crop_side: float  # VoxCeleb crop side in frame pixels
    width: int = 640
    height: int = 480
    n: int = 120
    fps: float = 30.0
    gaps: tuple[tuple[int, int], ...] = ()
    amplitude: tuple[float, float] = (120.0, 50.0)
    period_s: float = 6.0

    def position(self, i: int) -> tuple[float, float] | None:
        """Top-left of the patch in frame i (None while the head is out of the frame)."""
        if any(a <= i < b for a, b in self.gaps):
            return None
        t = i / self.fps
        p = self.patch.shape[0]
        w = 2 * math.pi * t / self.period_s
        cx = self.width / 2 + self.amplitude[0] * math.sin(w)
        cy = self.height / 2 + self.amplitude[1] * math.sin(2 * w)
        return cx - p / 2, cy - p / 2

    def truth(self, i: int) -> tuple[float, float] | None:
        """The expected crop centre in frame i (None during gaps)."""
        pos = self.position(i)
        if pos is None:
            return None
        return pos[0] + self.crop_offset[0], pos[1] + self.crop_offset[1]

    def background(self) -> np.ndarray:
        y, x = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        r = 90 + 40 * np.sin(x / 97.0) + 20 * np.cos(y / 53.0)
        g = 110 + 30 * np.cos(x / 71.0 + y / 131.0)
        b = 120 + 35 * np.sin(y / 89.0)
        return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)  # (H, W, 3)

    def frame(self, i: int, bg: np.ndarray | None = None) -> np.ndarray:
        out = (self.background() if bg is None else bg).copy()
        pos = self.position(i)
        if pos is None:
            return out
        x0, y0 = int(round(pos[0])), int(round(pos[1]))
        p = self.patch.shape[0]
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(self.width, x0 + p), min(self.height, y0 + p)
        if fx1 > fx0 and fy1 > fy0:
            out[fy0:fy1, fx0:fx1] = self.patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
        return out

    def frames(self):
        bg = self.background()
        for i in range(self.n):
            yield self.frame(i, bg)


def make_scene(portrait: np.ndarray, n: int = 120, patch_size: int = 300, width: int = 640, height: int = 480,
               gaps=((40, 60),), fps: float = 30.0, amplitude=(120.0, 50.0), period_s: float = 6.0) -> Scene:
    """Cut a square head patch (1.5× the VoxCeleb crop) out of ``portrait`` and build a moving scene."""
    import cv2

    from lia_live.tracking import find_portrait_box

    box = find_portrait_box(portrait, "test portrait")
    side = 1.5 * box.side
    x0, y0 = box.cx - side / 2, box.cy - side / 2
    scale = patch_size / side
    m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
    patch = cv2.warpAffine(portrait, m, (patch_size, patch_size), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REPLICATE)
    offset = ((box.cx - x0) * scale, (box.cy - y0) * scale)
    return Scene(patch, offset, box.side * scale, width, height, n, fps, tuple(gaps), tuple(amplitude), period_s)


class FakeVirtualCamera:
    """A pyvirtualcam backend that records what it receives (register with ``register_fake_vcam``).

    Keeps the count, the shapes, and the last ``keep`` frames; ``on_frame`` is called with each frame.
    """

    instances: list[FakeVirtualCamera] = []
    on_frame = None
    keep = 64

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "fake0"
        self.count = 0
        self.shapes: set = set()
        self.frames: list[np.ndarray] = []
        self.closed = False
        FakeVirtualCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.count += 1
        self.shapes.add(frame.shape)
        self.frames.append(np.array(frame, copy=True))
        if len(self.frames) > self.keep:
            self.frames.pop(0)
        if FakeVirtualCamera.on_frame is not None:
            FakeVirtualCamera.on_frame(self, frame)

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return self.fourcc


def register_fake_vcam(name: str = "fake") -> type[FakeVirtualCamera]:
    import pyvirtualcam

    FakeVirtualCamera.instances = []
    FakeVirtualCamera.on_frame = None
    pyvirtualcam.register_backend(name, FakeVirtualCamera)
    return FakeVirtualCamera


def rss_mb() -> float:
    """Resident memory of this process in MiB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    raise RuntimeError("cannot read RSS")


class Collect:
    """An output that keeps a copy of every frame it is sent (``run_live(..., extra_outputs=[Collect()])``)."""

    def __init__(self):
        self.frames = []

    def send(self, rgb):
        self.frames.append(rgb.copy())

    def close(self):
        pass


class ReplayGraph:
    """Stands in for a captured CUDA graph: replay recomputes fn on the static inputs *into* the static output."""

    def __init__(self, fn, inputs, out):
        self.fn, self.inputs, self.out = fn, inputs, out

    def replay(self):
        import torch  # only the CUDA-graph tests need it

        with torch.no_grad():
            self.out.copy_(self.fn(*self.inputs))
