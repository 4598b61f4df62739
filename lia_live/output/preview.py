"""The preview window (OpenCV HighGUI): shows a frame, returns the pressed key."""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import UserError


def display_available() -> bool:
    """False on Linux without X11/Wayland: OpenCV's Qt backend would abort the whole process there."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class PreviewWindow:
    """A resizable window; ``show(rgb)`` draws a frame and returns the key pressed (or -1)."""

    def __init__(self, title: str = "lia-live"):
        if not display_available():
            raise UserError("«preview» needs a display (no $DISPLAY / $WAYLAND_DISPLAY); "
                            "run without --preview, or under xvfb-run")
        import cv2

        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self.open = True

    def show(self, rgb: np.ndarray) -> int:
        import cv2

        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1)
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.open = False
        return key

    def send(self, rgb: np.ndarray) -> None:
        self.show(rgb)

    def close(self) -> None:
        import cv2

        if self.open:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self.open = False
