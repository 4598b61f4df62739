"""The single holder of a live session's state, driven by every front end (hotkeys, control panel, remote).

:class:`LiveController` keeps what the user controls (the motion controller's mode, power, easing, reference
and direction offsets; the sources and the one shown; pass-through; the compose mode; running or not) and
what the loop reports (per-stage numbers, the lines said, the newest preview frames). Front ends call
``act(action, **params)`` and read ``state()``, ``stats()``, ``messages()`` and ``preview()``; the loop's
stages read the values once per frame, so every change takes effect at a frame boundary. It touches no
device and no file; one lock guards it (taken before the motion controller's, never after).

Hotkeys are a front end like the others: :data:`KEYMAP` maps a key to an action name.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..imaging import from_tensor
from ..log import log, render
from ..motion import EASE_RANGE, MODES, POWER_RANGE, MotionController
from ..reference import REFERENCES
from ..stats import StageTimer

# ---- hotkeys: key → action name, kept apart from the window so it is testable without a display ----
KEYMAP: dict[int, str] = {
    ord("r"): "reset_reference", ord(" "): "reset_reference",
    ord("m"): "toggle_mode",
    ord("+"): "power_up", ord("="): "power_up", ord("]"): "power_up",
    ord("-"): "power_down", ord("_"): "power_down", ord("["): "power_down",
    ord("p"): "toggle_passthrough", ord("0"): "toggle_passthrough",
    ord("n"): "next_source", ord("\t"): "next_source",
    ord("d"): "next_direction", ord("k"): "offset_up", ord("j"): "offset_down", ord("o"): "reset_offsets",
    ord("q"): "quit", 27: "quit",
}
HOTKEY_HELP = ("hotkeys (preview window): r/space reset reference · m relative/absolute · +/- motion power · "
               "p pass-through · n next source · d next motion direction, j/k nudge it, o reset offsets · "
               "q/Esc quit")
POWER_STEP = 0.1
OFFSET_STEP = 0.1
OFFSET_RANGE = (-10.0, 10.0)
COMPOSE_MODES = ("crop", "paste")
MESSAGES_KEPT = 500

# action → its parameters (all required); the method is ``_<action>``
ACTIONS: dict[str, tuple[str, ...]] = {
    "reset_reference": (), "toggle_mode": (), "power_up": (), "power_down": (), "toggle_passthrough": (),
    "next_source": (), "next_direction": (), "offset_up": (), "offset_down": (), "reset_offsets": (),
    "quit": (),
    "set_mode": ("mode",), "set_power": ("value",), "set_ease": ("seconds",), "set_reference": ("choice",),
    "set_offset": ("index", "value"), "select_source": ("index",), "add_source": ("image", "name"),
    "set_compose": ("mode",), "set_passthrough": ("on",),
    "record_motion": ("path",),
}


@dataclass(frozen=True)
class PreviewFrame:
    """The newest frames of one output frame, for a viewer. Published by the loop by reference (no copy):
    treat the arrays as read-only. ``face`` is the model's output tensor (1, 3, S, S) in [-1, 1] (with a
    graph-capturing backend a reused buffer); :meth:`face_rgb` converts it on the viewer's thread."""

    camera: np.ndarray | None  # RGB uint8 (H, W, 3), the driving frame
    box: Any | None  # the face's crop box in ``camera`` (a tracking.CropBox), None without a face
    face_found: bool
    face: torch.Tensor | None  # (1, 3, S, S) in [-1, 1]; None in pass-through or without a face
    output: np.ndarray | None  # RGB uint8, the composed output frame
    seq: int  # output frames sent before this one
    captured: float  # time.perf_counter() when the camera frame was captured
    published: float = 0.0  # time.perf_counter() when the loop published it (after sending it to the outputs)

    def face_rgb(self) -> np.ndarray | None:
        """The animated crop as RGB uint8 (S, S, 3), or None."""
        return None if self.face is None else from_tensor(self.face)[0]


@dataclass(frozen=True)
class NewSource:
    """A portrait a front end added; the model stage crops and encodes it at the next frame boundary."""

    image: np.ndarray  # RGB uint8 (H, W, 3)
    name: str


class LiveController:
    """The live session's state and the actions that change it (see the module docstring)."""

    def __init__(self, say: Callable[[str], None] = log):
        self._lock = threading.RLock()
        self._print = say
        self._lines: deque[str] = deque(maxlen=MESSAGES_KEPT)
        self._said = 0
        self.motion: MotionController | None = None
        self._sources: list[str] = []
        self._new: list[NewSource] = []
        self._source_index = 0
        self._passthrough = False
        self._compose = "crop"
        self._running = False
        self._info: dict[str, str] = {}
        self._timer: StageTimer | None = None
        self._preview: PreviewFrame | None = None
        self._published = threading.Event()  # set at each publish: a viewer waits on it instead of polling
        self._motion_target: str | None = None  # record the motion to this file (a front end chose it)
        self._motion_saved: str | None = None

    # ---- the session (called by the loop) -------------------------------------------------------------
    def start(self, motion: MotionController, sources: Sequence[str], compose: str = "crop",
              info: dict[str, str] | None = None, timer: StageTimer | None = None) -> None:
        """A session begins: its motion controller, source names, compose mode, model info and timer."""
        if compose not in COMPOSE_MODES:
            raise UserError(f"unknown «compose» mode {compose!r}; choose crop or paste")
        with self._lock:
            self.motion, self._sources, self._new = motion, list(sources), []
            self._source_index, self._passthrough, self._compose = 0, False, compose
            self._info, self._timer, self._preview = dict(info or {}), timer, None
            self._running = True

    def end(self) -> None:
        """The session is over (its state stays readable)."""
        with self._lock:
            self._running = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def compose(self) -> str:
        return self._compose

    def frame_controls(self) -> tuple[int, bool, str]:
        """(source index, pass-through, compose mode) for the next frame, read together."""
        with self._lock:
            return self._source_index, self._passthrough, self._compose

    def take_new_sources(self) -> list[NewSource]:
        """The portraits added since the last call (the model stage encodes them)."""
        with self._lock:
            new, self._new = self._new, []
            return new

    def source_added(self, name: str) -> int:
        """The model stage encoded a new source: it is listed and shown from the next frame; its index."""
        with self._lock:
            self._sources.append(name)
            self._source_index = len(self._sources) - 1
            n = len(self._sources)
        self.say(f"source {n}/{n}: {name} (added)")
        return n - 1

    def motion_target(self) -> str | None:
        """The file the model stage records the motion to (None: no recording asked for)."""
        return self._motion_target

    def motion_saved(self, path: str, saved: bool = True) -> None:
        """The model stage wrote (or failed to write) a motion recording; a recording is never resumed."""
        with self._lock:
            if saved:
                self._motion_saved = path
            if self._motion_target == path:
                self._motion_target = None

    def publish(self, frame: PreviewFrame) -> None:
        """The loop's newest frames (by reference, once per output frame)."""
        self._preview = frame
        self._published.set()

    def wait_preview(self, timeout: float) -> bool:
        """Wait (a viewer's thread) until a frame is published after the last call; False on timeout."""
        got = self._published.wait(timeout)
        self._published.clear()
        return got

    def say(self, line: str | None) -> None:
        """Tell the user ``line`` (stderr) and keep it for :meth:`messages`; None says nothing."""
        if line:
            self._print(line)
            self.note(line)

    def note(self, line: str) -> None:
        """Keep ``line`` for :meth:`messages` (settings named as the CLI prints them) without printing it
        (e.g. an error the CLI prints itself)."""
        text = render(line)
        with self._lock:
            self._lines.append(text)
            self._said += 1

    # ---- front ends ------------------------------------------------------------------------------------
    def act(self, action: str, **params) -> str:
        """Apply one action; returns the one line it says (also kept in :meth:`messages`). An unknown action
        or a bad parameter raises UserError with one line; nothing changes then."""
        names = ACTIONS.get(action)
        if names is None:
            raise UserError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        extra = sorted(set(params) - set(names))
        missing = [n for n in names if n not in params]
        if extra or missing:
            takes = ", ".join(names) if names else "no parameters"
            raise UserError(f"{action} takes {takes}; got {', '.join(sorted(params)) or 'none'}")
        with self._lock:
            if self.motion is None or not self._running:
                raise UserError(f"{action}: no live session is running")
            line = getattr(self, f"_{action}")(**params)
        self.say(line)
        return line

    def handle_key(self, key: int | None) -> str | None:
        """Apply the action bound to ``key`` (see KEYMAP); returns the action name or None."""
        if key is None or key < 0:
            return None
        action = KEYMAP.get(key & 0xFF if key < 0x10000 else key)
        if action is not None and self._running:
            self.act(action)
        return action

    def state(self) -> dict:
        """A JSON-serialisable snapshot of everything the user controls."""
        with self._lock:
            motion = self.motion.state() if self.motion is not None else {}
            return {**motion, "source_index": self._source_index, "sources": list(self._sources),
                    "pending_sources": len(self._new), "passthrough": self._passthrough,
                    "compose": self._compose, "running": self._running, "info": dict(self._info),
                    "motion_recording": self._motion_target, "last_motion": self._motion_saved}

    def stats(self) -> dict:
        """The latest numbers: frames, fps, latency_ms, stage_ms, dropped, no_face."""
        timer = self._timer
        if timer is None:
            return {"frames": 0, "fps": 0.0, "latency_ms": 0.0, "stage_ms": {}, "dropped": 0, "no_face": 0}
        return timer.snapshot()

    def messages(self, since: int = 0) -> tuple[int, list[str]]:
        """The lines said after the first ``since`` (all kept ones when those are gone); (next since, lines)."""
        if isinstance(since, bool) or not isinstance(since, int):
            raise UserError(f"messages: since must be a whole number, got {since!r}")
        with self._lock:
            first = self._said - len(self._lines)  # the number of the oldest line kept
            start = max(since, first)
            return self._said, list(self._lines)[start - first:] if start < self._said else []

    def preview(self) -> PreviewFrame | None:
        """The newest frames published by the loop (None before the first output frame)."""
        return self._preview

    # ---- the actions (called with the lock held; each returns its line) ---------------------------------
    def _m(self) -> MotionController:
        assert self.motion is not None
        return self.motion

    def _reset_reference(self) -> str:
        self._m().reset_reference()
        how = "" if self._m().relative else " (used in relative mode)"
        return f"reference pose: taken again from the next frame(s) with a face{how}"

    def _toggle_mode(self) -> str:
        return f"mode: {self._m().toggle_mode()}"

    def _set_mode(self, mode) -> str:
        return f"mode: {self._m().set_mode(_choice('set_mode', 'mode', mode, MODES))}"

    def _power_up(self) -> str:
        return f"motion power {self._m().set_power(self._m().power + POWER_STEP):.1f}"

    def _power_down(self) -> str:
        return f"motion power {self._m().set_power(self._m().power - POWER_STEP):.1f}"

    def _set_power(self, value) -> str:
        return f"motion power {self._m().set_power(_number('set_power', 'value', value, POWER_RANGE)):g}"

    def _set_ease(self, seconds) -> str:
        return f"ease {self._m().set_ease(_number('set_ease', 'seconds', seconds, EASE_RANGE)):g} s"

    def _set_reference(self, choice) -> str:
        self._m().set_reference(_choice("set_reference", "choice", choice, REFERENCES))
        return f"reference: {choice} (taken again from the next frame(s) with a face)"

    def _toggle_passthrough(self) -> str:
        return self._set_passthrough(not self._passthrough)

    def _set_passthrough(self, on) -> str:
        if not isinstance(on, bool):
            raise UserError(f"set_passthrough: on must be true or false, got {on!r}")
        self._passthrough = on
        return "pass-through on (showing the camera)" if on else "pass-through off"

    def _next_source(self) -> str:
        return self._select_source((self._source_index + 1) % len(self._sources))

    def _select_source(self, index) -> str:
        n = len(self._sources)
        self._source_index = _integer("select_source", "index", index, (0, n - 1))
        return f"source {self._source_index + 1}/{n}: {self._sources[self._source_index]}"

    def _add_source(self, image, name) -> str:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and min(image.shape[:2]) >= 16):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise UserError(f"add_source: image must be an RGB uint8 (H, W, 3) array of at least 16×16, got {got}")
        if not isinstance(name, str) or not name.strip() or "\n" in name:
            raise UserError(f"add_source: name must be a one-line text, got {name!r}")
        self._new.append(NewSource(image, name.strip()))
        return f"source {name.strip()}: queued, encoded at the next frame"

    def _set_compose(self, mode) -> str:
        self._compose = _choice("set_compose", "mode", mode, COMPOSE_MODES)
        return f"compose: {self._compose}"

    def _next_direction(self) -> str:
        d = self._m().select_direction(1)
        return f"motion direction {d} selected (offset {float(self._m().offsets[d]):+.2f})"

    def _offset_up(self) -> str:
        return f"direction {self._m().selected} offset {self._m().nudge(OFFSET_STEP):+.2f}"

    def _offset_down(self) -> str:
        return f"direction {self._m().selected} offset {self._m().nudge(-OFFSET_STEP):+.2f}"

    def _set_offset(self, index, value) -> str:
        i = _integer("set_offset", "index", index, (0, self._m().motion_dim - 1))
        v = self._m().set_offset(i, _number("set_offset", "value", value, OFFSET_RANGE))
        return f"direction {i} offset {v:+.2f}"

    def _reset_offsets(self) -> str:
        self._m().reset_offsets()
        return "direction offsets reset"

    def _record_motion(self, path) -> str:
        """Start recording the motion to ``path`` (a front end picks the file; the sink writes it at
        the next frame boundary), or stop and save with None."""
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise UserError(f"record_motion: path must be a file name or None, got {path!r}")
        self._motion_target = path
        return f"motion recording: to {path} from the next frame" if path else "motion recording: stopping"

    def _quit(self) -> str:
        self._running = False
        return "stopping"


# ---- parameter checks: one line naming the action and the parameter ------------------------------------
def _number(action: str, name: str, value, bounds: tuple[float, float]) -> float:
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and bounds[0] <= x <= bounds[1]):
        raise UserError(f"{action}: {name} must be a number in [{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
    return x


def _integer(action: str, name: str, value, bounds: tuple[int, int]) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bounds[0] <= value <= bounds[1]
    if not ok:
        raise UserError(f"{action}: {name} must be a whole number in [{bounds[0]}, {bounds[1]}], got {value!r}")
    return int(value)


def _choice(action: str, name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"{action}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return value
