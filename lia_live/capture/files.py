"""Video files and frame folders as captures, and ``open_capture`` which picks the right kind."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from .base import Capture, IterableCapture
from .camera import CameraCapture, CameraSettings


class FileCapture(IterableCapture):
    """Every frame of a video file or frame folder, in order (file mode: frame counts in = out)."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        from ..io import open_frames

        self.source = open_frames(path, fps)
        super().__init__(iter(self.source), fps=self.source.fps, name=str(path))

    def __len__(self) -> int:
        return len(self.source)


def is_stream_url(spec: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec) is not None


def open_capture(spec: str, settings: CameraSettings | None = None, log: Callable[[str], None] | None = None
                 ) -> Capture:
    """A camera index ("0"), a stream URL (rtsp://, http://...), a video file or a frame folder. ``log``: where
    a camera says it was lost and is back (default: the tool's log)."""
    spec = str(spec)
    if spec.isdigit():
        return CameraCapture(int(spec), settings or CameraSettings(), log=log)
    if is_stream_url(spec):
        return CameraCapture(spec, settings or CameraSettings(), log=log)
    p = Path(spec)
    if not p.exists():
        raise UserError(f"«driving» {spec}: no such file or folder (give a camera index like 0, "
                        f"a stream URL, a video file or a folder of frames)")
    fps = settings.fps if settings is not None and settings.fps_forced else None
    return FileCapture(p, fps)
