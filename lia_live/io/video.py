"""File I/O for frames: images, videos (OpenCV to read, PyAV to write H.264 + audio), PNG folders."""

from __future__ import annotations

import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg"}


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """RGB uint8 H×W×3; UserError naming the file if it is missing or not an image."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UserError(f"{what} is not a readable image: {p}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameSource:
    """Frames of a video file or of a folder of images (sorted by name), as RGB uint8."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        import cv2

        self.path = Path(path)
        self.files: list[Path] | None = None
        if self.path.is_dir():
            self.files = sorted(f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if not self.files:
                raise UserError(f"no image frames (png/jpg/...) in folder: {self.path}")
            self.fps = float(fps or 25.0)
            self.count = len(self.files)
            first = read_image(self.files[0], "frame")
            self.height, self.width = first.shape[:2]
        elif self.path.is_file():
            if not _pyav_can_decode(self.path):
                raise UserError(f"cannot read video (not a video, or an unsupported codec): {self.path}")
            cap = cv2.VideoCapture(str(self.path))
            ok = cap.isOpened()
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
            rate = cap.get(cv2.CAP_PROP_FPS) if ok else 0
            self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            ok = ok and cap.read()[0]
            cap.release()
            if not ok:
                raise UserError(f"cannot read video (not a video, or an unsupported codec): {self.path}")
            self.fps = float(fps or (rate if rate and rate > 0 else 25.0))
            self.count = max(n, 0)
        else:
            raise UserError(f"driving video or frame folder not found: {self.path}")

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        if self.files is not None:
            for f in self.files:
                yield read_image(f, "frame")
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    @property
    def has_audio(self) -> bool:
        return self.files is None and probe_audio(self.path)


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    return FrameSource(path, fps)


def _pyav_can_decode(path: Path) -> bool:
    """True when PyAV (quietly) finds a video stream; OpenCV would print FFmpeg noise on bad files."""
    try:
        import av

        with av.open(str(path)) as c:
            return len(c.streams.video) > 0
    except Exception:  # PyAV raises many error types for foreign files: all mean "not a video"
        return False


def probe_audio(path: str | os.PathLike) -> bool:
    try:
        import av

        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except Exception:  # not a container PyAV can read: no audio to copy
        return False


def _check_new_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"output already exists: {path} (choose another name or pass --overwrite)")
    if not path.parent.exists():
        raise UserError(f"output folder does not exist: {path.parent}")


class VideoWriter:
    """H.264 (yuv420p) mp4 through PyAV, written to a temp file and renamed on ``close`` so a half-written
    file never replaces anything. Audio from ``audio_from`` (if it has any) is re-encoded to AAC."""

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None,
                 overwrite: bool = False, crf: int = 17):
        self.path = Path(path)
        _check_new_output(self.path, overwrite)
        self.fps = fps
        self.crf = crf
        self.audio_from = Path(audio_from) if audio_from and probe_audio(audio_from) else None
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=self.path.suffix or ".mp4", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self._container = None
        self._stream = None
        self.frames = 0
        self.closed = False

    def _open(self, w: int, h: int) -> None:
        import av

        self._container = av.open(str(self.tmp), mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        s = self._container.add_stream("libx264", rate=rate)
        s.width, s.height = w - w % 2, h - h % 2
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = s
        self._audio = None
        if self.audio_from is not None:
            import av as _av

            with _av.open(str(self.audio_from)) as src:
                cc = src.streams.audio[0].codec_context
                self._audio_rate, self._audio_layout = cc.sample_rate or 44100, cc.layout.name
            self._audio = self._container.add_stream("aac", rate=self._audio_rate)
            self._audio.layout = self._audio_layout

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        s = self._stream
        if rgb.shape[1] != s.width or rgb.shape[0] != s.height:
            rgb = rgb[: s.height, : s.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        for packet in s.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def _copy_audio(self) -> None:
        """Re-encode the audio of ``audio_from`` (up to the video's duration) into the output's AAC stream."""
        import av

        rate, a_out = self._audio_rate, self._audio
        limit = self.frames / self.fps * rate
        with av.open(str(self.audio_from)) as src:
            resampler = av.AudioResampler(format="fltp", layout=self._audio_layout, rate=rate)
            written = 0
            for frame in src.decode(src.streams.audio[0]):
                if written >= limit:
                    break
                for rf in resampler.resample(frame):
                    rf.pts = written
                    rf.time_base = Fraction(1, rate)
                    written += rf.samples
                    for packet in a_out.encode(rf):
                        self._container.mux(packet)
            for packet in a_out.encode(None):
                self._container.mux(packet)

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns the path (None if no frame was written)."""
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        if self._container is None:
            self.tmp.unlink(missing_ok=True)
            return None
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            try:
                self._copy_audio()
            except Exception as e:  # audio is a bonus: never lose the video over it
                print(f"warning: could not copy audio from {self.audio_from}: {e}", file=sys.stderr)
        self._container.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already broken: we are discarding it anyway
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close() if exc_type is None or issubclass(exc_type, KeyboardInterrupt) else self.abort()


class PngDirWriter:
    """Lossless PNG frames ``00000.png``, ``00001.png``… in a folder (created; must be empty or new)."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists():
            if not self.path.is_dir():
                raise UserError(f"output exists and is not a folder: {self.path}")
            if any(self.path.iterdir()) and not overwrite:
                raise UserError(f"output folder is not empty: {self.path} (choose another or pass --overwrite)")
        self.created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        cv2.imwrite(str(self.path / f"{self.frames:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path:
        return self.path

    def abort(self) -> None:
        """Remove the folder again if this writer created it and wrote nothing."""
        if self.created and self.frames == 0 and not any(self.path.iterdir()):
            self.path.rmdir()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def open_writer(output: str | os.PathLike, fps: float, audio_from=None, overwrite: bool = False):
    """``*.mp4`` (or another video suffix) → VideoWriter; anything else → a PNG folder."""
    p = Path(output)
    if p.suffix.lower() in VIDEO_EXTS:
        if p.suffix.lower() != ".mp4":
            raise UserError(f"video output must end in .mp4 (got {p.name}); or give a folder for PNG frames")
        return VideoWriter(p, fps, audio_from=audio_from, overwrite=overwrite)
    return PngDirWriter(p, overwrite=overwrite)


