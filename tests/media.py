"""Small media files the tests make themselves (no shared data needed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def moving_frames(image: np.ndarray, n: int, size: int = 96, step: int = 3) -> list[np.ndarray]:
    """``n`` size² crops of ``image`` sliding diagonally by ``step`` px per frame (RGB uint8)."""
    import cv2

    base = cv2.resize(image, (size * 2, size * 2), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(base[i * step: i * step + size, i * step: i * step + size]) for i in range(n)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, audio_seconds: float | None = None,
                faststart: bool = False) -> Path:
    """H.264 mp4 of ``frames``; with ``audio_seconds``, a 440 Hz AAC track as well; ``faststart`` puts the index
    (moov) before the data, as web downloads have it (a cut file still opens)."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio_seconds else None
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            t = np.arange(int(16000 * audio_seconds)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(samples), 1024):
                af = av.AudioFrame.from_ndarray(samples[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate = 16000
                af.time_base = Fraction(1, 16000)
                af.pts = k
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float, bool]:
    """(RGB frames, fps, has_audio) of a video file, decoded with PyAV."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        has_audio = len(c.streams.audio) > 0
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
    return frames, fps, has_audio
