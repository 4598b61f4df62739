"""Recording to a file (H.264 mp4 via PyAV, or a PNG folder), finalised on close so it stays playable."""

from __future__ import annotations

import os

import numpy as np


class FileOutput:
    """Wraps :func:`lia_live.io.open_writer`: never overwrites unless ``overwrite``; ``close`` finalises."""

    def __init__(self, path: str | os.PathLike, fps: float, overwrite: bool = False):
        from ..io import open_writer

        self.path = path
        self.writer = open_writer(path, fps, overwrite=overwrite)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def send(self, rgb: np.ndarray) -> None:
        self.writer.write(rgb)

    def close(self) -> None:
        if self.writer.frames:
            self.writer.close()
        else:
            self.writer.abort()
