"""What the control panel can do, on top of the live controller (the one holder of the session's state).

:class:`Panel` adds nothing to the live loop: an action goes to ``controller.act`` (the same call a hotkey
makes); uploads are checked here (size-capped by the server, decoded with ``cv2.imdecode``, pixel-capped)
before the controller sees them; the panel's settings are saved after every change (:mod:`.prefs`).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..log import log
from . import prefs
from .cameras import list_cameras
from .preview import PreviewEncoder, StreamStats

MAX_UPLOAD = 16 << 20  # bytes
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
THUMB = 96

# JSON parameter checks: action → {param: type}; anything else is refused before it reaches the controller
PARAMS: dict[str, dict[str, type]] = {
    "set_mode": {"mode": str}, "set_power": {"value": float}, "set_ease": {"seconds": float},
    "set_reference": {"choice": str}, "set_offset": {"index": int, "value": float},
    "select_source": {"index": int}, "set_compose": {"mode": str}, "set_passthrough": {"on": bool},
    "set_input": {"driving": str, "width": int, "height": int, "fps": float},
    "set_vcam": {"on": bool}, "record_video": {"on": bool}, "record_motion": {"on": bool},
}


def check_params(action: str, params: dict) -> dict:
    """``params`` checked against :data:`PARAMS` (UserError with one line otherwise)."""
    spec = PARAMS.get(action, {})
    out: dict[str, Any] = {}
    for key, value in params.items():
        want = spec.get(key)
        if want is None:
            raise UserError(f"action {action!r} takes no parameter {key!r}")
        ok = isinstance(value, want) and not isinstance(value, bool) if want in (int, float) else \
            isinstance(value, want)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok or (want is float and not math.isfinite(value)):
            raise UserError(f"action {action!r}: {key} must be {want.__name__}, got {value!r}")
        out[key] = value
    return out


def decode_upload(data: bytes) -> np.ndarray:
    """An uploaded image as RGB uint8 (UserError when it is not an image, or too small or large)."""
    import cv2

    if not data:
        raise UserError("the upload is empty")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError("the upload is not an image OpenCV can decode (PNG, JPEG, WebP, BMP...)")
    h, w = bgr.shape[:2]
    if h * w > MAX_PIXELS or min(h, w) < MIN_SIDE:
        raise UserError(f"the image is {w}×{h}: give one between {MIN_SIDE} px a side and "
                        f"{MAX_PIXELS // 1_000_000} megapixels")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Panel:
    """The page's view of the session: ``controller`` (the live controller), ``devices`` (input, virtual
    camera, recordings, start/stop: :class:`~lia_live.ui.devices.Devices`), ``settings`` (saved per user)."""

    def __init__(self, controller, devices, settings: dict, say: Callable[[str], None] = log,
                 max_upload: int = MAX_UPLOAD):
        self.controller = controller
        self.devices = devices
        self.settings = dict(settings)
        self.say = say
        self.max_upload = max_upload
        self.preview = PreviewEncoder(controller.preview, lambda: self.controller.state().get("compose") == "paste")
        self.streams = StreamStats()
        self._thumbs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # ---- reads ------------------------------------------------------------------------------------------------
    def snapshot(self, viewer: str | None = None) -> dict:
        """Everything the page shows; ``viewer``: the page whose preview stream numbers to include."""
        state = self.controller.state()
        return {"state": state, "devices": self.devices.state(), "stats": self.controller.stats(),
                "preview": {"encoded": self.preview.encoded, "encode_ms": round(self.preview.encode_ms, 2),
                            "error": self.preview.error, "stream": self.streams.get(viewer)},
                "settings": self.settings, "command": prefs.command_line(self.settings),
                "settings_file": str(prefs.prefs_path())}

    def messages(self, since: int) -> tuple[int, list[str]]:
        return self.controller.messages(since)

    def cameras(self) -> list[dict]:
        return list_cameras()

    def thumbnail(self, index: int) -> bytes | None:
        import cv2

        sources = self.controller.state().get("sources", [])
        if not 0 <= index < len(sources):
            return None
        name = str(sources[index])
        with self._lock:
            if name in self._thumbs:
                return self._thumbs[name]
        from ..io import read_image

        image = read_image(name, "source image")
        h, w = image.shape[:2]
        s = THUMB / max(h, w)
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))[1].tobytes()
        with self._lock:
            self._thumbs[name] = data
        return data

    # ---- changes ---------------------------------------------------------------------------------------------
    def act(self, action: str, params: dict) -> str:
        """Apply one action from the page: a device action (input, virtual camera, recordings, start/stop)
        or a controller action; then save the settings."""
        params = check_params(action, params)
        if action in self.devices.ACTIONS:
            message = self.devices.act(action, **params)
        else:
            message = self.controller.act(action, **params)
        self.remember()
        return message

    def upload(self, data: bytes, name: str) -> str:
        """A portrait uploaded from the page: decoded and checked, kept as PNG in the user's data folder
        (named by its hash), handed to the controller (encoded by the model stage at a frame boundary)."""
        import cv2

        if len(data) > self.max_upload:
            raise UserError(f"upload too large (limit {self.max_upload >> 20} MB)")
        rgb = decode_upload(data)
        folder = prefs.sources_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
        if not path.exists():
            from ..fsutil import write_atomic

            write_atomic(path, cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
        shown = Path(name).name[:80] or "upload"
        self.say(f"ui: source uploaded: {shown} ({rgb.shape[1]}×{rgb.shape[0]}) kept as {path}")
        if not self.controller.running:
            self.devices.pending_sources.append(path)
            message = f"source {path.name}: kept; used when the pipeline starts"
            self.controller.say(message)
            return message
        message = self.controller.act("add_source", image=rgb, name=str(path))
        self.remember()
        return message

    def remember(self) -> None:
        """Save the panel's settings (what a command line would need to start this session again)."""
        state, dev = self.controller.state(), self.devices.state()
        if not state.get("sources"):
            return  # no session yet: nothing learnt
        self.settings.update({"sources": [str(s) for s in state.get("sources", [])],
                              "mode": state.get("mode"), "motion_power": float(state.get("power", 1.0)),
                              "ease": float(state.get("ease", 1.0)), "reference": state.get("reference"),
                              "compose": state.get("compose"), "vcam": bool(dev.get("vcam_wanted")),
                              "driving": str(dev.get("driving")), "camera_size": dev.get("camera_size"),
                              "camera_fps": dev.get("camera_fps")})
        prefs.save(self.settings)
