"""The preview picture: input (with the tracked crop box) | output side by side, and a text overlay."""

from __future__ import annotations

import numpy as np

from .compose import letterbox


def side_by_side(camera: np.ndarray, output: np.ndarray, height: int = 360, box=None,
                 face_found: bool = True) -> np.ndarray:
    """Input frame (crop box drawn: green tracked, red lost) next to the output, both ``height`` tall."""
    import cv2

    h, w = camera.shape[:2]
    cw = max(1, round(w * height / h))
    left = cv2.resize(camera, (cw, height), interpolation=cv2.INTER_AREA)
    if box is not None:
        s = height / h
        x0, y0 = int((box.cx - box.side / 2) * s), int((box.cy - box.side / 2) * s)
        x1, y1 = int((box.cx + box.side / 2) * s), int((box.cy + box.side / 2) * s)
        cv2.rectangle(left, (x0, y0), (x1, y1), (0, 220, 0) if face_found else (230, 0, 0), 2)
    ow = max(1, round(output.shape[1] * height / output.shape[0]))
    right = letterbox(output, ow, height)
    return np.concatenate([left, right], axis=1)


def draw_lines(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw text lines at the top-left with a dark outline so they read on any background."""
    import cv2

    y = 18
    for line in lines:
        for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, thick, cv2.LINE_AA)
        y += 18
    return image
