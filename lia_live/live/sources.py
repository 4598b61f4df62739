"""Source portraits of a live session: read once, cropped like the training data, encoded once by the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_image
from ..tracking import center_box, crop_portrait_with_box, crop_square


@dataclass
class SourceEntry:
    """One source portrait: the full image, the crop fed to the model, its box in the image (or None)."""

    path: Path
    image: np.ndarray
    crop: np.ndarray
    box: Any | None
    state: Any | None = None  # the animator's SourceState, encoded once (by the model stage)
    features: Any | None = None  # its landmark features (reference "landmarks"), once computed
    features_done: bool = False

    @property
    def name(self) -> str:
        return str(self.path)


def read_sources(paths: Sequence[Path | str]) -> list[np.ndarray]:
    """Read every source portrait (RGB uint8); UserError naming a file that is missing or unreadable."""
    return [read_image(p, "source image") for p in paths]


def make_source(path: Path | str, image: np.ndarray, size: int, crop_mode: str) -> SourceEntry:
    """Crop one portrait for the model (UserError naming it when ``crop_mode`` is auto and no face is found)."""
    if crop_mode == "auto":
        crop, box = crop_portrait_with_box(image, size, name=str(path))
    else:
        box = center_box(image)  # the largest centred square (the whole image when square)
        crop = crop_square(image, box, size)
    return SourceEntry(Path(path), image, crop, box)


def load_sources(paths: Sequence[Path | str], size: int, crop_mode: str,
                 images: Sequence[np.ndarray] | None = None) -> list[SourceEntry]:
    """Crop every source portrait; ``images`` are the portraits already read (see :func:`read_sources`),
    so a caller that checked them does not read them again."""
    if images is None:
        images = read_sources(paths)
    if len(images) != len(paths):
        raise ValueError(f"{len(paths)} source paths but {len(images)} images")
    return [make_source(p, image, size, crop_mode) for p, image in zip(paths, images)]
