"""The panel's device-level actions, applied by the live loop at frame boundaries.

- :class:`SwitchingInput` is the loop's capture: a camera, or a video file played like a camera (at its
  frame rate, from the start again at its end, newest frame only). A new input asked for (``set_input``) is
  opened by the loop's reader thread before its next frame; a failure is said and the old input stays.
  ``stop`` ends the input, so the loop ends cleanly (recordings finalised) and can be started again.
- :class:`SwitchingOutputs` is one of the loop's outputs: the virtual camera on/off and the video recording
  start/stop, applied in the loop's send thread before the next frame is sent.
- :class:`Devices` takes the actions (from the panel, in any thread) and says what they did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..capture import CameraSettings, Capture, Frame, open_capture
from ..errors import UserError
from ..log import log
from . import prefs


@dataclass(frozen=True)
class InputChoice:
    driving: str
    width: int = 1280
    height: int = 720
    fps: float | None = None

    def settings(self) -> CameraSettings:
        return CameraSettings(width=self.width, height=self.height, fps=self.fps or 30.0,
                              fps_forced=self.fps is not None)


class SwitchingInput(Capture):
    """A capture whose source can change between frames (see the module docstring)."""

    live = True

    def __init__(self, choice: InputChoice, say: Callable[[str], None] = log,
                 opener: Callable[[str, CameraSettings], Capture] = open_capture):
        self.say, self.opener = say, opener
        self.choice = choice
        self.error: str | None = None
        self._pending: InputChoice | None = choice
        self._cap: Capture | None = None
        self._stopped = False
        self._next_due = 0.0
        self._index = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._cap.name if self._cap is not None else self.choice.driving

    def request(self, choice: InputChoice) -> None:
        with self._lock:
            self._pending = choice

    def stop(self) -> None:
        self._stopped = True

    def resume(self) -> None:
        self._stopped = False

    @property
    def finished(self) -> bool:
        return self._stopped

    def _switch(self) -> None:
        with self._lock:
            choice, self._pending = self._pending, None
        if choice is None:
            return
        try:
            cap = self.opener(choice.driving, choice.settings())
        except UserError as e:
            self.error = str(e)
            self.say(f"input {choice.driving}: {e}")
            return
        old, self._cap, same, self.error = self._cap, cap, choice == self.choice, None
        self.choice = choice
        self.fps = cap.fps or 30.0
        if old is not None:
            old.close()
            if not same:  # a file played again from its start is not news
                self.say(f"input: {cap.name}")

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._pending is not None:
            self._switch()
        cap = self._cap
        if cap is None or self._stopped:
            time.sleep(timeout)
            return None
        if not cap.live:  # a file plays like a camera: at its frame rate, looping
            wait = self._next_due - time.perf_counter()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
            self._next_due = max(self._next_due + 1.0 / self.fps, time.perf_counter())
        frame = cap.read(timeout)
        if frame is None and cap.finished:
            self.request(self.choice)  # the end of a file: from its start again
            return None
        if frame is None:
            return None
        now = time.perf_counter()
        self._index += 1
        return Frame(frame.image, now if not cap.live else frame.captured, self._index, now)

    @property
    def lost(self) -> bool:
        return self._cap is not None and self._cap.lost

    def close(self) -> None:
        """Release the input; the next run opens it again (or the one asked for meanwhile)."""
        with self._lock:
            if self._cap is not None:
                self._cap.close()
                self._cap = None
            self._pending = self._pending or self.choice
            self._stopped = False


class SwitchingOutputs:
    """Virtual camera and video recording, switched on/off between frames (see the module docstring)."""

    def __init__(self, size: tuple[int, int], fps: float, vcam: bool, device: str | None = None,
                 backend: str | None = None, say: Callable[[str], None] = log, record_dir: Path | None = None):
        self.size, self.fps, self.device, self.backend, self.say = size, fps, device, backend, say
        self.record_dir = record_dir
        self.vcam_wanted = vcam
        self.record_wanted = False
        self.vcam: Any = None
        self.vcam_error: str | None = None
        self.recording: Any = None
        self.recording_path: Path | None = None
        self.last_recording: str | None = None
        self._lock = threading.Lock()

    def send(self, rgb: np.ndarray) -> None:
        with self._lock:
            self._apply()
            outs = [o for o in (self.vcam, self.recording) if o is not None]
        for o in outs:
            o.send(rgb)

    def _apply(self) -> None:
        if self.vcam_wanted and self.vcam is None and self.vcam_error is None:
            self._open_vcam()
        elif not self.vcam_wanted and self.vcam is not None:
            self.vcam.close()
            self.vcam = None
            self.say("virtual camera off")
        if self.record_wanted and self.recording is None:
            self._start_recording()
        elif not self.record_wanted and self.recording is not None:
            self._stop_recording()

    def _open_vcam(self) -> None:
        from ..output import VirtualCamera

        try:
            self.vcam = VirtualCamera(self.size[0], self.size[1], self.fps, device=self.device, backend=self.backend)
            self.say(f"virtual camera: {self.vcam.device} ({self.size[0]}×{self.size[1]} @ {self.fps:g} fps)")
        except UserError as e:
            self.vcam_error = str(e)
            self.say(f"virtual camera: {e}")

    def _start_recording(self) -> None:
        from ..live import EncodingOutput
        from ..output import FileOutput

        folder = self.record_dir or prefs.recordings_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"lia-live-{datetime.now():%Y%m%d-%H%M%S}.mp4"
        try:
            self.recording = EncodingOutput(FileOutput(path, self.fps))
        except UserError as e:
            self.record_wanted = False
            self.say(f"recording: {e}")
            return
        self.recording_path = path
        self.say(f"recording to {path}")

    def _stop_recording(self) -> None:
        rec, self.recording = self.recording, None
        try:
            rec.close()
            frames = rec.output.frames
            self.last_recording = str(self.recording_path)
            self.say(f"recording saved: {self.recording_path} ({frames} frames)")
        except UserError as e:
            self.say(f"recording: {e}")

    def set_vcam(self, on: bool) -> None:
        with self._lock:
            self.vcam_wanted, self.vcam_error = on, None

    def set_recording(self, on: bool) -> None:
        with self._lock:
            self.record_wanted = on

    def close(self) -> None:
        with self._lock:
            if self.recording is not None:
                self._stop_recording()
            self.record_wanted = False
            if self.vcam is not None:
                self.vcam.close()
                self.vcam = None

    def state(self) -> dict:
        return {"vcam_wanted": self.vcam_wanted, "vcam_device": self.vcam.device if self.vcam else None,
                "vcam_error": self.vcam_error, "recording": self.recording is not None,
                "recording_path": str(self.recording_path) if self.recording is not None else None,
                "last_recording": self.last_recording}


class Devices:
    """The panel's device-level actions (input, virtual camera, recordings, start/stop) and their state.

    ``say`` is the controller's, so every line shows on the page too. The live loop applies each change at
    a frame boundary through :class:`SwitchingInput` and :class:`SwitchingOutputs`.
    """

    ACTIONS = ("set_input", "set_vcam", "record_video", "record_motion", "start", "stop")

    def __init__(self, inp: SwitchingInput, outputs: SwitchingOutputs, controller=None,
                 say: Callable[[str], None] = log):
        self.input, self.outputs, self.controller, self.say = inp, outputs, controller, say
        self.want_running = True
        self.stop_requested = False
        self.pending_sources: list[Path] = []  # uploaded while no session runs: used at the next start
        self._cond = threading.Condition()

    def act(self, action: str, **params) -> str:
        if action not in self.ACTIONS:
            raise UserError(f"unknown device action {action!r}")
        line = getattr(self, f"_{action}")(**params)
        if action != "record_motion":
            self.say(line)
        return line

    def _set_input(self, driving: str, width: int | None = None, height: int | None = None,
                   fps: float | None = None) -> str:
        from ..io import check_driving

        driving = driving.strip()
        if not driving:
            raise UserError("set_input: give a camera index or a video file")
        check_driving(driving)
        old = self.input.choice
        choice = InputChoice(driving, width or old.width, height or old.height, fps)
        if not 1 <= choice.width <= 7680 or not 1 <= choice.height <= 4320 or (fps is not None and not 1 <= fps <= 240):
            raise UserError("set_input: the resolution must be within 7680×4320 and the fps within [1, 240]")
        self.input.request(choice)
        return f"input: switching to {driving} at the next frame"

    def _set_vcam(self, on: bool) -> str:
        self.outputs.set_vcam(on)
        return "virtual camera: opening at the next frame" if on else "virtual camera: closing at the next frame"

    def _record_video(self, on: bool) -> str:
        self.outputs.set_recording(on)
        return "video recording: starting at the next frame" if on else "video recording: stopping"

    def _record_motion(self, on: bool) -> str:
        if self.controller is None or not self.controller.running:
            raise UserError("record_motion: start the pipeline first")
        path = None
        if on:
            folder = self.outputs.record_dir or prefs.recordings_dir()
            folder.mkdir(parents=True, exist_ok=True)
            path = str(folder / f"lia-live-motion-{datetime.now():%Y%m%d-%H%M%S}.npz")
        return self.controller.act("record_motion", path=path)  # the controller says it

    def _start(self) -> str:
        with self._cond:
            self.want_running, self.stop_requested = True, False
            self.input.resume()
            self._cond.notify_all()
        return "starting" if not self._running() else "already running"

    def _running(self) -> bool:
        return bool(self.controller is not None and self.controller.running)

    def _stop(self) -> str:
        with self._cond:
            self.want_running, self.stop_requested = False, True
            self.input.stop()
            self._cond.notify_all()
        return "stopping (the panel stays; Start runs it again)"

    def wait_for_start(self, timeout: float = 0.5) -> bool:
        """True once a start is wanted (waits up to ``timeout``)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.want_running, timeout)

    def state(self) -> dict:
        c = self.input.choice
        st = self.controller.state() if self.controller is not None else {}
        return {"running": self._running(), "driving": c.driving, "camera_size": f"{c.width}x{c.height}",
                "camera_fps": c.fps, "input_error": self.input.error,
                "motion_recording": st.get("motion_recording"), "last_motion": st.get("last_motion"),
                **self.outputs.state()}
