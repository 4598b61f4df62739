"""Helpers for the remote-mode tests: a served tiny model, portraits, driving frames, a paced capture."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from lia_live.capture.base import Capture, Frame

TOKEN = "test-token"


def tiny_generator():
    from lia_live.model import Generator, GeneratorConfig

    torch.manual_seed(0)
    return Generator.from_config(GeneratorConfig(size=64, style_dim=64, motion_dim=8, channel_div=8)).eval()


@contextlib.contextmanager
def serving(gen, **cfg):
    """A RemoteServer for ``gen`` on a free loopback port, in a background thread; yields it."""
    from lia_live.animator import Animator
    from lia_live.remote import RemoteServer, ServeConfig

    server = RemoteServer(Animator(gen), ServeConfig(**{"port": 0, **cfg}), TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def address(server) -> str:
    host, port = server.address
    return f"{host}:{port}"


def portraits(astronaut: np.ndarray) -> list[np.ndarray]:
    """Four clearly different portraits (the astronaut, mirrored, inverted, channels swapped), 128²."""
    import cv2

    face = cv2.resize(np.ascontiguousarray(astronaut[0:300, 100:400]), (128, 128), interpolation=cv2.INTER_AREA)
    return [face, np.ascontiguousarray(face[:, ::-1]), 255 - face, np.ascontiguousarray(face[..., ::-1])]


def driving(face: np.ndarray, n: int, width: int = 96) -> list[np.ndarray]:
    """``n`` frames (width × 3/4 width) with ``face`` drifting and nodding (cheap; no tracker needed)."""
    import cv2

    h = width * 3 // 4
    face = cv2.resize(face, (h, h), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        m = np.float32([[1, 0, 6 * math.sin(i / 4.0)], [0, 1, 4 * math.cos(i / 5.0)]])
        moved = cv2.warpAffine(face, m, (h, h), borderMode=cv2.BORDER_REFLECT)
        frame = np.full((h, width, 3), 90, np.uint8)
        x = (width - h) // 2
        frame[:, x:x + h] = moved
        out.append(frame)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


class PacedCapture(Capture):
    """Frames from a list, cycled, one per ``period`` seconds (like a camera) until :meth:`end` is called."""

    live = False
    name = "paced"

    def __init__(self, frames: list[np.ndarray], period: float = 0.015):
        self.frames, self.period = frames, period
        self.index = 0
        self._end = False
        self._next = time.perf_counter()

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._end:
            return None
        wait = self._next - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self._next = time.perf_counter() + self.period
        image = self.frames[self.index % len(self.frames)]
        frame = Frame(image, time.perf_counter(), self.index, self.index / 30.0)
        self.index += 1
        return frame

    def end(self) -> None:
        self._end = True

    @property
    def finished(self) -> bool:
        return self._end
