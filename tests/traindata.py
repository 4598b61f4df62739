"""Training clips for the trainer's tests (shared by the test_train_* modules)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_png_clips(root: Path, n_clips: int, n_frames: int, size: int = 64, seed: int = 0) -> Path:
    """Clips of a disc moving over a shaded coloured background (a different colour per clip)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(n_clips):
        bg = rng.uniform(40, 215, size=3)
        folder = root / "train" / f"clip{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(n_frames):
            cx, cy = size * (0.3 + 0.4 * t / max(1, n_frames - 1)), size * (0.5 + 0.1 * c)
            img = np.empty((size, size, 3))
            img[:] = bg
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.2) ** 2] = 255 - bg
            img = img * (0.75 + 0.25 * xx[..., None] / size)
            cv2.imwrite(str(folder / f"{t:05d}.png"), img.clip(0, 255).astype(np.uint8))
    return root
