"""File I/O for frames: images, videos (OpenCV to read, PyAV to write H.264 + audio), PNG folders."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..fsutil import (
    PARTIAL_MARK,
    check_output_path,
    normal_mode,
    os_error_line,
    remove_partial,
    replace_dir,
    temp_name,
    write_bytes_checked,
)
from ..log import log, plural
from ..paths import GIB, regular_file

IMAGE_MAX_BYTES = GIB  # an image file larger than this is not a portrait or a frame
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
TRUNCATION_SLACK = 1  # container frame counts may be estimated from the duration: allow one frame off
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg"}


def quiet_ffmpeg() -> None:
    """Keep OpenCV's FFmpeg from printing raw decoder errors (a damaged file is reported by us, in one line).

    OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` once, when its FFmpeg backend starts, so this is called before
    every ``cv2.VideoCapture`` of a file; a value the user set is kept.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """RGB uint8 H×W×3; UserError naming the file if it is missing or not an image."""
    import cv2

    p = Path(path)
    regular_file(p, what, IMAGE_MAX_BYTES)  # not found, a folder, a device or FIFO, too large: one line
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise UserError(f"cannot read {what} {p}: {os_error_line(e)}") from None
    if not data.size:
        raise UserError(f"{what} is an empty file: {p}")
    if data[:4].tobytes() == b"GIF8":  # OpenCV's image decoder has no GIF: its first frame through FFmpeg
        return first_gif_frame(p, what)
    img = decode_image(data, what, p)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def first_gif_frame(path: Path, what: str) -> np.ndarray:
    """RGB uint8 of a GIF's first frame (an animated GIF as a still image: said once, in the log); the
    same decoder as a GIF given as driving video, so a GIF reads the same as source and as driving."""
    try:
        import av

        with av.open(str(path)) as c:
            decoded = c.decode(c.streams.video[0])
            first = next(decoded).to_ndarray(format="rgb24")
            animated = next(decoded, None) is not None
    except Exception:  # noqa: BLE001 - PyAV raises many types for damaged files: all mean "not readable"
        raise UserError(f"{what} is not a readable image: {path}") from None
    if animated:
        log(f"{what} {path} is an animated GIF: using its first frame")
    return np.ascontiguousarray(first)


def decode_image(data: np.ndarray, what: str, path: Path) -> np.ndarray:
    """BGR uint8 from encoded bytes; UserError naming the file for foreign, broken or oversized images."""
    import cv2

    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. a header claiming more pixels than CV_IO_MAX_IMAGE_PIXELS
        msg = str(e)
        if "CV_IO_MAX_IMAGE_PIXELS" in msg or "pixels" in msg.lower():
            raise UserError(f"{what} is larger than the image decoder allows (its header claims too many "
                            f"pixels): {path}") from None
        raise UserError(f"{what} is not a readable image: {path}") from None
    if img is None:
        raise UserError(f"{what} is not a readable image: {path}")
    return img


class FrameSource:
    """Frames of a video file or of a folder of images (sorted by name), as RGB uint8."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        import cv2

        self.path = Path(path)
        self.files: list[Path] | None = None
        self.truncated = False
        self.frames_read: int | None = None
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
            quiet_ffmpeg()
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
        quiet_ffmpeg()
        cap = cv2.VideoCapture(str(self.path))
        n = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        self.frames_read = n
        if self.count and n < self.count - TRUNCATION_SLACK:
            self.truncated = True
            log(f"warning: {self.path} ended after {plural(n, 'frame')} of the {self.count} its header "
                f"announces (truncated or damaged file?)")

    @property
    def has_audio(self) -> bool:
        return self.files is None and probe_audio(self.path)


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    return FrameSource(path, fps)


def check_driving(driving: str) -> None:
    """For dry runs: a driving video or frame folder must exist and be readable (UserError, one line).
    Camera indices (``0``) and stream URLs (``rtsp://...``) are left to the capture code."""
    if driving.isdigit() or "://" in driving:
        return
    FrameSource(driving)  # checks existence, type and that a first frame decodes; opens nothing that stays


def _pyav_can_decode(path: Path) -> bool:
    """True when PyAV (quietly) finds a video stream; OpenCV would print FFmpeg noise on bad files. Without
    PyAV (a bare GPU machine has only OpenCV) True: OpenCV's own open and first read decide."""
    try:
        import av
    except ImportError:
        return True
    try:
        with av.open(str(path)) as c:
            return len(c.streams.video) > 0
    except Exception:  # noqa: BLE001 - PyAV raises many types for foreign files: all mean "not a video"
        return False


def probe_audio(path: str | os.PathLike) -> bool:
    try:
        import av

        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except Exception:  # noqa: BLE001 - not a container PyAV can read: no audio to copy
        return False


def _write_failed(path: Path, e: BaseException) -> UserError:
    if isinstance(e, OSError):
        reason = os_error_line(e)
    else:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "No space left" in reason:
            reason = "no space left on device"
    return UserError(f"writing {path} failed ({reason}); nothing was kept")


# What PyAV/FFmpeg and the OS raise when a write cannot go on (full disk, I/O error, removed folder).
def _write_errors() -> tuple[type[BaseException], ...]:
    import av

    return (OSError, av.error.FFmpegError, ValueError)


class VideoWriter:
    """H.264 (yuv420p) mp4 through PyAV, written to a hidden temp file beside the target and renamed on
    ``close``: the output appears complete under its name or not at all. Every failed write removes the
    temp file and raises UserError. Audio from ``audio_from`` (if it has any) is re-encoded to AAC."""

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None,
                 overwrite: bool = False, crf: int = 17):
        self.path = check_output_path(path, overwrite, "output", "file", create_parents=False)
        if not (math.isfinite(fps) and fps > 0):
            raise UserError(f"output fps must be a positive number, got {fps}")
        self.fps = fps
        self.crf = crf
        self.audio_from = Path(audio_from) if audio_from and probe_audio(audio_from) else None
        try:
            self.tmp: Path | None = temp_name(self.path)
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {os_error_line(e)}") from None
        self._container: Any = None  # av.container.OutputContainer once the first frame set its size
        self._stream: Any = None
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
        self._audio: Any = None
        if self.audio_from is not None:
            with av.open(str(self.audio_from)) as src:
                cc = src.streams.audio[0].codec_context
                self._audio_rate, self._audio_layout = cc.sample_rate or 44100, cc.layout.name
            self._audio = self._container.add_stream("aac", rate=self._audio_rate)
            self._audio.layout = self._audio_layout

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB frame; a failed write removes the temp file and raises UserError."""
        import av

        if self.closed:
            raise UserError(f"writing {self.path} after it was closed")
        with self._or_abort():
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

    @contextlib.contextmanager
    def _or_abort(self) -> Iterator[None]:
        """Any failure inside removes the temp file; write errors become one UserError line."""
        try:
            yield
        except _write_errors() as e:
            self.abort()
            raise _write_failed(self.path, e) from None
        except BaseException:
            self.abort()
            raise

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
        """Finish the file and move it into place; returns the path (None if no frame was written).

        Any failure (full disk while flushing, an interrupt) removes the temp file and re-raises.
        """
        if self.closed:
            return self.path if self.frames and self.tmp is None else None
        if self._container is None:
            self.abort()
            return None
        self.closed = True
        with self._or_abort():
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                try:
                    self._copy_audio()
                except (OSError, ValueError, _write_errors()[1]) as e:  # audio is a bonus: keep the video
                    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                        raise
                    log(f"warning: could not copy audio from {self.audio_from}: {e}")
            self._container.close()
            self._container = None
            assert self.tmp is not None
            normal_mode(self.tmp)
            os.replace(self.tmp, self.path)
            self.tmp = None
        return self.path

    def abort(self) -> None:
        """Drop the file: close the container and remove the temp file (safe to call twice)."""
        self.closed = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - already broken (full disk...): we discard it anyway
                pass
        remove_partial(self.tmp)
        self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close() if exc_type is None else self.abort()


class PngDirWriter:
    """Lossless PNG frames ``00000.png``, ``00001.png``… in a folder, built in a hidden temp folder beside
    the target and renamed into place by ``close`` (with ``overwrite`` the old folder is replaced whole, only
    then). Each frame is encoded in memory and written with a checked write: a full disk is an error."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = check_output_path(path, overwrite, "output folder", "dir")
        self.overwrite = overwrite
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{PARTIAL_MARK}",
                                                          dir=self.path.parent))
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {os_error_line(e)}") from None
        self.frames = 0
        self.closed = False

    def write(self, rgb: np.ndarray) -> None:
        """Write the next frame; a failed write removes the temp folder and raises UserError."""
        import cv2

        if self.closed:
            raise UserError(f"writing {self.path} after it was closed")
        try:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError("PNG encoding failed")
            assert self.tmp is not None, "PngDirWriter used after close()"
            write_bytes_checked(self.tmp / f"{self.frames:05d}.png", buf.tobytes())
        except (OSError, ValueError) as e:
            self.abort()
            raise _write_failed(self.path, e) from None
        except BaseException:
            self.abort()
            raise
        self.frames += 1

    def close(self) -> Path | None:
        """Move the finished folder into place; returns it (None, and nothing left, if no frame was written)."""
        if self.closed:
            return self.path if self.frames and self.tmp is None else None
        if self.frames == 0:
            self.abort()
            return None
        self.closed = True
        assert self.tmp is not None
        try:
            normal_mode(self.tmp, directory=True)
            empty = self.path.is_dir() and not any(self.path.iterdir())
            replace_dir(self.tmp, self.path, self.overwrite or empty)
            self.tmp = None
        except OSError as e:
            self.abort()
            raise _write_failed(self.path, e) from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Remove the temp folder (safe to call twice); an existing output folder is never touched."""
        self.closed = True
        remove_partial(self.tmp)
        self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close() if exc_type is None else self.abort()


def check_writer_path(output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check, without creating anything, that :func:`open_writer` can write ``output`` (for dry runs and
    early checks): the suffix rules, an existing output without ``overwrite``, a path below a file, a folder
    where a file is expected (and the reverse), an unwritable place. UserError with one line otherwise."""
    p = Path(output)
    if p.suffix.lower() in VIDEO_EXTS:
        if p.suffix.lower() != ".mp4":
            raise UserError(f"video output must end in .mp4 (got {p.name}); or give a folder for PNG frames")
        return check_output_path(p, overwrite, "output", "file", create_parents=False)
    return check_output_path(p, overwrite, "output folder", "dir")


def open_writer(output: str | os.PathLike, fps: float, audio_from=None, overwrite: bool = False):
    """``*.mp4`` → VideoWriter; a name without a video suffix → a PNG folder. Both write beside the target
    and appear under its name only when complete (see the classes)."""
    p = check_writer_path(output, overwrite)
    if p.suffix.lower() in VIDEO_EXTS:
        return VideoWriter(p, fps, audio_from=audio_from, overwrite=overwrite)
    return PngDirWriter(p, overwrite=overwrite)
