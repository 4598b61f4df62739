"""Motion you can keep: motion templates (``.npz``) and direction-offset files (``.json``).

A motion template records, per frame, what the animator was asked to show — no face pixels leave the
machine — so any portrait can be animated from it later (``lia-animate --motion FILE``) and the replay
reproduces the direct run exactly. Format (numpy ``.npz``, all arrays; 4·M + 13 bytes per frame, 93 for M = 20):

=================  ============  ==========================================================================
key                shape/dtype   meaning
=================  ============  ==========================================================================
``alpha``          (N, M) f32    the driving motion α of each frame; NaN rows: no face (the portrait's pose)
``time``           (N,) f64      media time of each frame, seconds
``power``          (N,) f32      motion power (relative mode)
``relative``       (N,) bool     relative (True) or absolute motion
``ref_frames``     (K,) i32      frames at which the reference pose changed (relative mode)
``ref_alpha``      (K, M) f32    the reference α from each of those frames on
``off_frames``     (J,) i32      frames at which the direction offsets changed (optional)
``off_values``     (J, M) f32    the offsets from each of those frames on
``fps``            () f64        frame rate of the recording
``model_sha256``   () str        SHA-256 of the generator's weights (a template only fits its own model)
``size``           () i64        the model's image size
``motion_dim``     () i64        M
``format``         () str        "lia-live-motion/1"
=================  ============  ==========================================================================
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import UserError
from .fsutil import atomic_path, write_atomic
from .npzcheck import FieldCheck, NpzReader
from .paths import GIB, KIB, read_json, regular_file

if TYPE_CHECKING:
    from .animator import Animator
    from .capture.base import Frame
    from .motion import MotionArgs

FORMAT = "lia-live-motion/1"
OFFSETS_FORMAT = "lia-live-offsets/1"


def model_hash(anim: Animator) -> str:
    """SHA-256 of the animator's generator (config and weights), computed once per animator."""
    if anim.model_sha256 is None:
        from .backends.cache import weights_hash

        anim.model_sha256 = weights_hash(anim.backend.generator)
    return anim.model_sha256


def _row(t: torch.Tensor | None, m: int) -> np.ndarray:
    if t is None:
        return np.full(m, np.nan, np.float32)
    return t.detach().float().reshape(-1).cpu().numpy().astype(np.float32)


class MotionRecorder:
    """Collects :class:`~lia_live.motion.MotionArgs` frame by frame; :meth:`save` writes the template."""

    def __init__(self, anim: Animator, fps: float):
        self.anim = anim
        self.fps = float(fps)
        self.m = int(anim.basis.shape[1])
        self.alpha: list[np.ndarray] = []
        self.time: list[float] = []
        self.power: list[float] = []
        self.relative: list[bool] = []
        self.ref_frames: list[int] = []
        self.ref_alpha: list[np.ndarray] = []
        self.off_frames: list[int] = []
        self.off_values: list[np.ndarray] = []

    @property
    def frames(self) -> int:
        return len(self.alpha)

    def add(self, frame: Frame | float, alpha: torch.Tensor | None, args: MotionArgs) -> None:
        """Record one frame: ``args`` as given to the animator (``alpha``, the raw α, is not needed)."""
        i = len(self.alpha)
        self.alpha.append(_row(args.alpha, self.m))
        self.time.append(float(frame if isinstance(frame, (int, float)) else frame.media_time))
        self.power.append(float(args.power))
        self.relative.append(args.alpha_ref is not None)
        if args.alpha_ref is not None:
            ref = _row(args.alpha_ref, self.m)
            if not self.ref_alpha or not np.array_equal(self.ref_alpha[-1], ref):
                self.ref_frames.append(i)
                self.ref_alpha.append(ref)
        off = _row(args.offset, self.m) if args.offset is not None else np.zeros(self.m, np.float32)
        if (self.off_values and not np.array_equal(self.off_values[-1], off)) or (not self.off_values and off.any()):
            self.off_frames.append(i)
            self.off_values.append(off)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` frames (the frames a stopped run actually wrote)."""
        for name in ("alpha", "time", "power", "relative"):
            del getattr(self, name)[n:]
        for frames, values in ((self.ref_frames, self.ref_alpha), (self.off_frames, self.off_values)):
            keep = sum(1 for f in frames if f < n)
            del frames[keep:], values[keep:]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the template atomically; returns its path."""
        m = self.m
        arrays = {
            "format": np.array(FORMAT), "alpha": np.array(self.alpha, np.float32).reshape(-1, m),
            "time": np.array(self.time, np.float64), "power": np.array(self.power, np.float32),
            "relative": np.array(self.relative, bool), "ref_frames": np.array(self.ref_frames, np.int32),
            "ref_alpha": np.array(self.ref_alpha, np.float32).reshape(-1, m), "fps": np.array(self.fps),
            "model_sha256": np.array(model_hash(self.anim)), "size": np.array(self.anim.size, np.int64),
            "motion_dim": np.array(m, np.int64),
        }
        if self.off_frames:
            arrays["off_frames"] = np.array(self.off_frames, np.int32)
            arrays["off_values"] = np.array(self.off_values, np.float32).reshape(-1, m)
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return path


@dataclass
class MotionTemplate:
    """A loaded template (see the module docstring for the fields)."""

    path: Path
    alpha: np.ndarray
    time: np.ndarray
    power: np.ndarray
    relative: np.ndarray
    ref_frames: np.ndarray
    ref_alpha: np.ndarray
    off_frames: np.ndarray
    off_values: np.ndarray
    fps: float
    model_sha256: str
    size: int

    def __len__(self) -> int:
        return len(self.alpha)

    def check_model(self, anim: Animator) -> None:
        """Refuse a template recorded with another model (one line)."""
        if self.alpha.shape[1] != anim.basis.shape[1] or self.size != anim.size:
            raise UserError(f"motion template {self.path.name} was recorded with a {self.size}² model with "
                            f"{self.alpha.shape[1]} motion directions; this model is {anim.size}² with "
                            f"{anim.basis.shape[1]}")
        if self.model_sha256 != model_hash(anim):
            raise UserError(f"motion template {self.path.name} was recorded with another model (weights "
                            f"{self.model_sha256[:12]}…, this one {model_hash(anim)[:12]}…): motion codes only "
                            f"mean something to the model that made them")

    def args(self, device: torch.device | str = "cpu") -> Iterator[MotionArgs]:
        """The animator's arguments, frame by frame."""
        from .motion import MotionArgs

        def at(frames: np.ndarray, values: np.ndarray, i: int) -> torch.Tensor | None:
            k = int(np.searchsorted(frames, i, side="right")) - 1
            return None if k < 0 else torch.from_numpy(values[k]).reshape(1, -1).to(device)

        for i in range(len(self)):  # one frame at a time: a replay of 5 frames builds 5 tensors
            a = self.alpha[i]
            alpha = None if np.isnan(a).any() else torch.from_numpy(a).reshape(1, -1).to(device)
            ref = at(self.ref_frames, self.ref_alpha, i) if self.relative[i] else None
            if self.relative[i] and ref is None:
                ref = alpha
            off = at(self.off_frames, self.off_values, i)
            if off is not None and not bool(off.any()):
                off = None
            yield MotionArgs(alpha, ref, float(self.power[i]), off)


TEMPLATE_MAX_BYTES = GIB  # about 11 million frames (100 hours at 30 fps)
OFFSET_LIMIT = 100.0  # |offset| per direction (lia-animate's --range allows the same)
ALPHA_LIMIT = 1e4  # |α| in a template; the encoder's α are a few units


def load_template(path: str | os.PathLike, max_frames: int | None = None) -> MotionTemplate:
    """Read a motion template, every field checked (type, shape, finite, range); one line naming the file
    and the field on any problem. With ``max_frames`` only that many frames are read (lazily: a long
    template costs no more than a short one)."""
    path = Path(path)
    regular_file(path, "motion template", TEMPLATE_MAX_BYTES)
    with NpzReader(path, "motion template", TEMPLATE_MAX_BYTES) as z:
        if str(z.scalar("format", "US")) != FORMAT:
            raise UserError(f"{path} is not a lia-live motion template (format {str(z.scalar('format', 'US'))!r})")
        m = int(z.scalar("motion_dim", "iu", (1, 4096)))
        size = int(z.scalar("size", "iu", (1, 4096)))
        fps = float(z.scalar("fps", "fiu", (1e-3, 1000)))
        sha = str(z.scalar("model_sha256", "US"))
        n = z.rows("alpha")
        rows = n if max_frames is None else min(n, max_frames)
        alpha = z.array("alpha", "f", (None, m), rows).astype(np.float32)
        time = z.array("time", "fiu", (n,), rows).astype(np.float64)
        power = z.array("power", "fiu", (n,), rows).astype(np.float32)
        relative = z.array("relative", "b", (n,), rows).astype(bool)
        ref_frames = z.array("ref_frames", "iu", (None,)).astype(np.int64)
        ref_alpha = z.array("ref_alpha", "f", (len(ref_frames), m)).astype(np.float32)
        if ("off_frames" in z) != ("off_values" in z):
            raise UserError(f"motion template {path}: 'off_frames' and 'off_values' come together (one is missing)")
        off_frames = z.array("off_frames", "iu", (None,)).astype(np.int64) if "off_frames" in z \
            else np.zeros((0,), np.int64)
        off_values = z.array("off_values", "f", (len(off_frames), m)).astype(np.float32) if "off_frames" in z \
            else np.zeros((0, m), np.float32)
    if n == 0:
        raise UserError(f"motion template {path} holds no frames")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise UserError(f"motion template {path}: field 'model_sha256' is not a SHA-256 ({sha[:20]!r})")
    check = FieldCheck(path, "motion template")
    check.finite_rows("alpha", alpha, ALPHA_LIMIT)
    check.within("time", time, None)
    check.within("power", power, (0.0, 2.0))
    check.frames("ref_frames", ref_frames, n)
    check.within("ref_alpha", ref_alpha, (-ALPHA_LIMIT, ALPHA_LIMIT))
    check.frames("off_frames", off_frames, n)
    check.within("off_values", off_values, (-OFFSET_LIMIT, OFFSET_LIMIT))
    return MotionTemplate(path, alpha, time, power, relative, ref_frames, ref_alpha, off_frames, off_values, fps,
                          sha, size)


def read_offsets(path: str | os.PathLike, m: int | None = None) -> tuple[list[float], str | None]:
    """The values of an offsets file (and the model hash it names), each checked; ``m``: how many there must
    be (None: any number, for checks before the model is loaded). One line naming the file otherwise."""
    path = Path(path)
    doc = read_json(path, "offsets file", 64 * KIB)
    n = "M" if m is None else str(m)
    shape = f'{{"format": "{OFFSETS_FORMAT}", "offsets": [{n} numbers]}} or a list of {n} numbers'
    sha = None
    if isinstance(doc, dict):
        if doc.get("format") != OFFSETS_FORMAT:
            raise UserError(f"offsets file {path} is not a lia-live offsets file (its \"format\" is "
                            f"{doc.get('format')!r}; expected {shape})")
        values, sha = doc.get("offsets"), doc.get("model_sha256")
    elif isinstance(doc, list):
        values = doc
    else:
        raise UserError(f"offsets file {path} holds a JSON {type(doc).__name__}; expected {shape}")
    if not isinstance(values, list):
        raise UserError(f"offsets file {path}: \"offsets\" is {type(values).__name__}, expected a list of "
                        f"{n} numbers")
    if m is not None and len(values) != m:
        raise UserError(f"offsets file {path} has {len(values)} values; this model has {m} motion directions")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"offsets file {path}: value {i} is {v!r}, not a number")
        if not (math.isfinite(v) and abs(v) <= OFFSET_LIMIT):
            raise UserError(f"offsets file {path}: value {i} is {v!r}; offsets must be finite numbers within "
                            f"±{OFFSET_LIMIT:g}")
    return [float(v) for v in values], sha if isinstance(sha, str) or sha is None else str(sha)


def load_offsets(path: str | os.PathLike, anim: Animator) -> list[float]:
    """Direction offsets saved by :func:`save_offsets` (or a plain JSON list of numbers), each value checked;
    one line naming the file and what is wrong otherwise."""
    values, sha = read_offsets(path, int(anim.basis.shape[1]))
    if sha not in (None, model_hash(anim)):
        raise UserError(f"offsets file {path} was made for another model (weights {sha[:12]}…, this one "
                        f"{model_hash(anim)[:12]}…)")
    return values


def save_offsets(path: str | os.PathLike, offsets: torch.Tensor, anim: Animator) -> Path:
    doc = {"format": OFFSETS_FORMAT, "model_sha256": model_hash(anim),
           "offsets": [round(float(v), 6) for v in offsets.reshape(-1)]}
    return write_atomic(path, json.dumps(doc, indent=2) + "\n")
