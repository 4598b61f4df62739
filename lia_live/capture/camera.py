"""Live cameras and streams through OpenCV, read by a thread that keeps only the newest frame."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UserError
from ..log import log as lia_log
from .base import Capture, Frame


@dataclass(frozen=True)
class CameraSettings:
    """Requested camera mode (the camera may pick the nearest one it supports)."""

    width: int | None = 1280
    height: int | None = 720
    fps: float = 30.0
    fps_forced: bool = False  # the user gave --camera-fps (also overrides a file's fps)
    mjpg: bool = True  # ask for MJPG: uncompressed YUYV is USB-bandwidth-limited at 720p and up
    first_frame_timeout: float = 5.0
    max_backoff: float = 4.0


def default_opener(spec: int | str, settings: CameraSettings):
    """Open ``spec`` with OpenCV (DirectShow on Windows for indices) and apply ``settings``."""
    import cv2

    api = cv2.CAP_DSHOW if sys.platform == "win32" and isinstance(spec, int) else cv2.CAP_ANY
    quiet = hasattr(cv2, "setLogLevel") and hasattr(cv2, "getLogLevel")
    level = cv2.getLogLevel() if quiet else 0
    if quiet:  # a missing camera is reported by us in one line; OpenCV's own warnings are noise
        cv2.setLogLevel(0)  # 0 = silent
    try:
        cap = cv2.VideoCapture(spec, api)
    finally:
        if quiet:
            cv2.setLogLevel(level)
    if not cap.isOpened():
        return cap
    if isinstance(spec, int):
        if settings.mjpg:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        if settings.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        if settings.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        if settings.fps:
            cap.set(cv2.CAP_PROP_FPS, settings.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


class CameraCapture(Capture):
    """A camera index or stream URL. A daemon thread reads continuously and keeps only the newest frame,
    so a slow consumer never builds a backlog (``dropped`` counts the frames it skipped). If the camera
    stops delivering, the thread says so once, reopens it with exponential backoff, and says when it is back.

    ``opener(spec, settings)`` returns an object with ``isOpened()``, ``read() -> (ok, bgr)``, ``release()``
    (``cv2.VideoCapture`` by default; tests pass fakes).
    """

    live = True

    def __init__(self, spec: int | str, settings: CameraSettings = CameraSettings(),
                 opener: Callable | None = None, log: Callable[[str], None] | None = None):
        self.spec = spec
        self.name = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self.settings = settings
        self.fps = settings.fps
        self._opener = opener or default_opener
        self._log = log or lia_log
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: Frame | None = None
        self._returned = -1
        self._index = 0
        self._lost = False
        self.dropped = 0
        self.reopens = 0
        self._cap = self._opener(spec, settings)
        if not self._cap.isOpened():
            self._release()
            raise UserError(self._cannot_open())
        self._thread = threading.Thread(target=self._run, name=f"capture-{spec}", daemon=True)
        self._thread.start()
        if self.read_first(settings.first_frame_timeout) is None:
            self.close()
            raise UserError(f"{self.name} opened but sent no frame within {settings.first_frame_timeout:g} s "
                            f"(is another app using it?)")

    def _cannot_open(self) -> str:
        if isinstance(self.spec, int):
            return (f"cannot open camera {self.spec} (is it connected and free? try another index with "
                    f"«driving» 1, or a video file)")
        return f"cannot open stream {self.spec}"

    def read_first(self, timeout: float) -> Frame | None:
        """Wait for the first frame without consuming it."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set(), timeout)
            return self._latest

    def _release(self) -> None:
        try:
            self._cap.release()
        except Exception as e:  # noqa: BLE001 - a broken driver must not stop shutdown
            lia_log(f"warning: releasing {self.name} failed: {e}")

    def _run(self) -> None:
        import cv2

        backoff = 0.25
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            if ok and bgr is not None:
                now = time.perf_counter()
                frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now, self._index, now)
                with self._cond:
                    if self._lost:
                        self._lost = False
                        self._log(f"{self.name} is back")
                    self._index += 1
                    self._latest = frame
                    self._cond.notify_all()
                backoff = 0.25
                continue
            with self._cond:
                if not self._lost:
                    self._lost = True
                    self._log(f"{self.name} lost; sending the last frame and reopening it")
                self._cond.notify_all()
            self._release()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.settings.max_backoff)
            self.reopens += 1
            self._cap = self._opener(self.spec, self.settings)
        self._release()

    def read(self, timeout: float = 1.0) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: (self._latest is not None and self._latest.index > self._returned)
                                or self._stop.is_set(), timeout)
            f = self._latest
            if f is None or f.index <= self._returned:
                return None
            self.dropped += f.index - self._returned - 1 if self._returned >= 0 else f.index
            self._returned = f.index
            return f

    @property
    def lost(self) -> bool:
        return self._lost

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
