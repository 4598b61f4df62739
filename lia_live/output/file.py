"""Recording to a file (H.264 mp4 via PyAV, or a PNG folder), finalised on close so it stays playable."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class FileOutput:
    """Wraps :func:`lia_live.io.open_writer`: never overwrites unless ``overwrite``; ``close`` finalises.

    The output appears under its name complete or not at all: ``close`` finalises (an output with no frame
    is not created), ``abort`` drops everything; a failed write or finalisation raises ``UserError`` and
    leaves nothing behind (no hidden temporary file either), also when interrupted by Ctrl-C.
    """

    def __init__(self, path: str | os.PathLike, fps: float, overwrite: bool = False):
        from ..io import open_writer

        self.path = path
        self.writer = open_writer(path, fps, overwrite=overwrite)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def send(self, rgb: np.ndarray) -> None:
        self.writer.write(rgb)

    def close(self) -> Path | None:
        """Finalise; returns the path written (None when no frame was sent: nothing is created)."""
        return self.writer.close()

    def abort(self) -> None:
        """Drop the output: nothing is left under its name or beside it."""
        self.writer.abort()
