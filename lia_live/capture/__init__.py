"""Frame capture: cameras (a thread that keeps only the newest frame) and files (every frame, in order).

``open_capture(spec)``: a camera index ("0"), a stream URL, a video file or a folder of frames.
Every capture yields :class:`Frame` objects from ``read(timeout)`` and is closed with ``close()``.
"""

from .base import Capture, Frame, IterableCapture
from .camera import CameraCapture, CameraSettings
from .files import FileCapture, open_capture

__all__ = ["Capture", "Frame", "IterableCapture", "CameraCapture", "CameraSettings", "FileCapture",
           "open_capture"]
