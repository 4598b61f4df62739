"""The one place tests make and read clips (no shared data needed): videos written with PyAV (independent of
the code under test), PNG clip folders, synthetic moving frames, and frame counting."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np


def moving_frames(image: np.ndarray, n: int, size: int = 96, step: int = 3) -> list[np.ndarray]:
    """``n`` size² crops of ``image`` sliding diagonally by ``step`` px per frame (RGB uint8)."""
    base = cv2.resize(image, (size * 2, size * 2), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(base[i * step: i * step + size, i * step: i * step + size]) for i in range(n)]


def small_frames(face: np.ndarray, n: int, width: int = 160):
    """``n`` small frames (width × 3/4 width) with ``face`` (a head crop, resized to the frame height)
    drifting left and right; cheap for long runs."""
    h = width * 3 // 4
    face = cv2.resize(face, (h, h), interpolation=cv2.INTER_AREA)
    bg = np.full((h, width, 3), 100, np.uint8)
    for i in range(n):
        x = int((width - h) * (0.5 + 0.5 * math.sin(i / 15.0)))
        out = bg.copy()
        out[:, x:x + h] = face
        yield out


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 10, audio_seconds: float | None = None,
                faststart: bool = False) -> Path:
    """H.264 mp4 of RGB uint8 ``frames`` (any iterable); with ``audio_seconds``, a 440 Hz AAC track as well;
    ``faststart`` puts the index (moov) before the data, as web downloads have it (a cut file still opens).
    Returns ``path``."""
    import av  # PyAV: heavy, only the tests that write videos need it

    it = iter(frames)
    first = next(it)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        v = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        v.width, v.height, v.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio_seconds else None
        for i, f in enumerate(itertools.chain([first], it)):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            _write_tone(c, a, audio_seconds)
    return Path(path)


def _write_tone(container, stream, seconds: float) -> None:
    import av  # PyAV: see write_video

    t = np.arange(int(16000 * seconds)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for k in range(0, len(samples), 1024):
        af = av.AudioFrame.from_ndarray(samples[None, k:k + 1024], format="fltp", layout="mono")
        af.sample_rate = 16000
        af.time_base = Fraction(1, 16000)
        af.pts = k
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


def read_video(path: Path) -> tuple[list[np.ndarray], float, bool]:
    """(RGB frames, fps, has_audio) of a video file, decoded with PyAV."""
    import av  # PyAV: see write_video

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        has_audio = len(c.streams.audio) > 0
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
    return frames, fps, has_audio


def count_video_frames(path) -> int:
    """Frames OpenCV can decode from a video file."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def write_png_clips(root: Path, n_clips: int, n_frames: int, size: int = 64, seed: int = 0) -> Path:
    """Training-data layout ``root/train/clipN/00000.png``: a disc moving over a shaded coloured background
    (a different colour per clip)."""
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


def face_card(size: int = 96, mouth: bool = False) -> np.ndarray:
    """A drawn face (skin ellipse, two eyes, optionally a mouth) on a blue card: RGB uint8 (size, size, 3)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (60, 90, 140)
    c = size // 2
    cv2.ellipse(img, (c, c), (int(size * 0.3), int(size * 0.4)), 0, 0, 360, (210, 170, 150), -1)
    for dx in (-1, 1):
        cv2.circle(img, (c + dx * size // 7, c - size // 10), size // 20, (40, 30, 30), -1)
    if mouth:
        cv2.ellipse(img, (c, c + size // 5), (size // 8, size // 30), 0, 0, 360, (120, 40, 50), -1)
    return img
