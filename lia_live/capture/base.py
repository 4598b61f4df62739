"""The capture interface shared by cameras and files."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One captured frame: RGB uint8 H×W×3, when it was captured (``time.perf_counter()``, for latency), its
    index, and its media time in seconds (index / fps for files, the capture time for cameras), which drives
    smoothing and easing so a file gives the same result at any processing speed."""

    image: np.ndarray
    captured: float
    index: int
    media_time: float


class Capture:
    """Base class. ``live`` captures drop stale frames; others deliver every frame in order."""

    live = False
    name = "capture"
    fps = 30.0

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame (live: the newest one not yet returned), or None if none came in ``timeout``."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """True once no frame will ever come again (end of a file)."""
        return False

    @property
    def lost(self) -> bool:
        """True while a live source is disconnected and being reopened."""
        return False

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


class IterableCapture(Capture):
    """Frames from any iterable of RGB uint8 arrays, in order (tests, recordings, generators)."""

    def __init__(self, frames: Iterable[np.ndarray], fps: float = 30.0, name: str = "frames"):
        self._it: Iterator[np.ndarray] | None = iter(frames)
        self.fps = float(fps)
        self.name = name
        self._index = 0
        self._done = False

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._done or self._it is None:
            return None
        try:
            image = next(self._it)
        except StopIteration:
            self._done = True
            return None
        frame = Frame(image, time.perf_counter(), self._index, self._index / self.fps)
        self._index += 1
        return frame

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        self._it = None
        self._done = True
