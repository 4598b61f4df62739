"""The virtual camera output through pyvirtualcam, with per-OS setup hints when no device exists."""

from __future__ import annotations

import sys

import numpy as np

from ..errors import UserError


def vcam_hint(platform: str | None = None) -> str:
    """How to get a virtual camera device on this OS (one line)."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return ("install v4l2loopback and load it: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                "card_label=lia-live (Debian/Ubuntu: sudo apt install v4l2loopback-dkms)")
    if platform == "darwin":
        return ("install OBS Studio (28+) and start its Virtual Camera once (Start Virtual Camera), "
                "then quit OBS: pyvirtualcam uses the OBS camera extension")
    if platform == "win32":
        return ("install OBS Studio (26+) and start its Virtual Camera once, or install Unity Capture; "
                "pyvirtualcam sends to the 'OBS Virtual Camera' device")
    return "this OS has no pyvirtualcam backend; use --output FILE.mp4 or --preview"


class VirtualCamera:
    """A pyvirtualcam camera of fixed size and fps receiving RGB uint8 frames."""

    def __init__(self, width: int, height: int, fps: float, device: str | None = None,
                 backend: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise UserError("the virtual camera needs pyvirtualcam: pip install pyvirtualcam") from None
        hook = sys.unraisablehook
        # A failed pyvirtualcam.Camera() later prints an AttributeError from its __del__: pure noise.
        sys.unraisablehook = lambda _unraisable: None
        try:
            self.cam, error = _open(pyvirtualcam, width, height, fps, device, backend)
        finally:
            sys.unraisablehook = hook
        if error is not None:
            raise UserError(error)
        self.width, self.height = width, height
        self.frames = 0

    @property
    def device(self) -> str:
        return self.cam.device

    def send(self, rgb: np.ndarray) -> None:
        self.cam.send(np.ascontiguousarray(rgb))
        self.frames += 1

    def close(self) -> None:
        if self.cam is not None:
            self.cam.close()
            self.cam = None


def _open(pyvirtualcam, width: int, height: int, fps: float, device, backend):
    """(camera, None) or (None, error message); every reference to a failed camera dies on return."""
    try:
        cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device,
                                  backend=backend, print_fps=False)
    except KeyError:
        return None, f"unknown «vcam_backend» {backend!r} for pyvirtualcam on {sys.platform}"
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"no virtual camera device ({first}); to create one, {vcam_hint()}"
    return cam, None
