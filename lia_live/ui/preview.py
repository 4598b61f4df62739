"""The panel's live preview: the newest pipeline frames as one JPEG, encoded on the panel's own thread.

The live loop only stores references to its newest frames (``controller.preview()``); :class:`PreviewEncoder`
waits for the loop's next publish (``controller.wait_preview``) while a page is ready for a frame, draws the
tiles (camera with the face box | animated face | pasted-back
frame in paste mode) at a small height, encodes one JPEG and hands it to the page's streams. The page shows
them as an MJPEG stream in an ``<img>`` (``multipart/x-mixed-replace``: the browser decodes and draws each part
natively, with no script per frame — half the browser's CPU of WebSocket frames drawn on a canvas, measured in
docs/ui.md). The newest frame wins end to end: a stream asks for the next frame only when it has written the
last one and its rate allows, and frames are encoded only while some stream waits for one; a slow page gets
fewer frames, never a queue, and with no page connected nothing is encoded at all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TILE_HEIGHT = 240  # 480p and 720p cameras shrink by whole factors
JPEG_QUALITY = 75
BOUNDARY = "liaframe"
OPENING = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode("ascii")  # the stream's first bytes
NEXT = b"\r\n" + OPENING  # after each picture: the next part's boundary and headers
MARK_BITS, MARK_BLOCK = 24, 8  # the benchmark's time stamp: 24 black/white 8×8 blocks (JPEG-block aligned)


@dataclass(frozen=True)
class PreviewMessage:
    """One encoded preview picture: the JPEG, its frame's number, its tiles, when the loop published it
    (``time.perf_counter()``) and what encoding it cost."""

    jpeg: bytes
    seq: int
    tiles: list[dict] = field(default_factory=list)
    published: float = 0.0
    encode_ms: float = 0.0


def _shrink(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` at ``height`` rows: area averaging for an exact halving (OpenCV's fast path), bilinear
    otherwise (area averaging by other factors costs ~4–8 ms a frame: measured, docs/ui.md)."""
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * height / h)), height)
    fast = h == 2 * height and w == 2 * size[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if fast else cv2.INTER_LINEAR)


def tiles(frame: Any, with_output: bool, height: int = TILE_HEIGHT) -> tuple[np.ndarray, list[dict]]:
    """The preview picture (RGB) and its tiles' labels and widths, from a controller preview frame."""
    import cv2

    parts: list[tuple[str, np.ndarray]] = []
    camera = getattr(frame, "camera", None)
    if camera is not None:
        h = camera.shape[0]
        cam = _shrink(camera, height)
        box = getattr(frame, "box", None)
        if box is not None:
            s = height / h
            x0, y0 = int((box.cx - box.side / 2) * s), int((box.cy - box.side / 2) * s)
            x1, y1 = int((box.cx + box.side / 2) * s), int((box.cy + box.side / 2) * s)
            found = bool(getattr(frame, "face_found", True))
            cv2.rectangle(cam, (x0, y0), (x1, y1), (0, 220, 0) if found else (230, 0, 0), 2)
        parts.append(("camera", cam))
    face = frame.face_rgb() if hasattr(frame, "face_rgb") else getattr(frame, "face", None)  # (S, S, 3) RGB
    if face is not None:
        parts.append(("animated", cv2.resize(face, (height, height), interpolation=cv2.INTER_LINEAR)))
    out = getattr(frame, "output", None)
    if out is not None and (with_output or face is None):
        parts.append(("output", _shrink(out, height)))
    if not parts:
        return np.zeros((height, height, 3), np.uint8), []
    picture = np.concatenate([p for _, p in parts], axis=1)
    return picture, [{"label": name, "width": p.shape[1]} for name, p in parts]


def encode_jpeg(picture: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``picture`` (RGB) as a JPEG."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()


def part(jpeg: bytes) -> bytes:
    """One picture of the ``multipart/x-mixed-replace; boundary=BOUNDARY`` stream, followed at once by the
    next part's boundary and headers: Chromium ends a part (and shows its picture) only when it has parsed the
    next part's headers, whatever its Content-Length says (measured: one frame, 67–100 ms, later otherwise).
    The stream's very first bytes are :data:`OPENING`."""
    return jpeg + NEXT


def stamp(picture: np.ndarray, wall_ms: int) -> np.ndarray:
    """A copy of ``picture`` with ``wall_ms`` mod 2**24 written into its bottom-left corner as 24 black/white
    8×8 blocks, most significant bit first (for ``scripts/ui_bench.py``, which reads it back from the page to
    measure how far the drawn preview runs behind the pipeline)."""
    out = picture.copy()
    h, w = out.shape[:2]
    if h < MARK_BLOCK or w < MARK_BITS * MARK_BLOCK:
        return out
    y = h - h % MARK_BLOCK - MARK_BLOCK
    for bit in range(MARK_BITS):
        on = (int(wall_ms) >> (MARK_BITS - 1 - bit)) & 1
        out[y:y + MARK_BLOCK, bit * MARK_BLOCK:(bit + 1) * MARK_BLOCK] = 255 if on else 0
    return out


def read_stamp(picture: np.ndarray) -> int:
    """The number :func:`stamp` wrote (the page's benchmark script does the same in JavaScript)."""
    h = picture.shape[0]
    y = h - h % MARK_BLOCK - MARK_BLOCK // 2
    bits = [int(picture[y, bit * MARK_BLOCK + MARK_BLOCK // 2].mean() > 127) for bit in range(MARK_BITS)]
    return int("".join(map(str, bits)), 2)


class StreamStats:
    """What each page's preview stream got: frames written, their rate over the last two seconds, and how far
    behind the pipeline's output the last one was when it was handed to the socket (the page shows these)."""

    KEEP = 32  # pages remembered, the most recent ones

    def __init__(self):
        self._lock = threading.Lock()
        self._by: dict[str, dict] = {}

    def sent(self, viewer: str, message: PreviewMessage, now: float) -> None:
        with self._lock:
            s = self._by.pop(viewer, None) or {"sent": 0, "times": []}
            self._by[viewer] = s  # the most recent last
            s["sent"] += 1
            s["seq"] = message.seq
            s["tiles"] = message.tiles
            s["behind_ms"] = round(1e3 * (now - message.published), 1)
            s["times"] = [t for t in s["times"] if now - t <= 2.0] + [now]
            while len(self._by) > self.KEEP:
                self._by.pop(next(iter(self._by)))

    def get(self, viewer: str | None) -> dict:
        with self._lock:
            s = self._by.get(viewer or "")
            if s is None:
                return {"sent": 0, "seq": -1, "fps": 0.0, "behind_ms": None, "tiles": []}
            times = s["times"]
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return {"sent": s["sent"], "seq": s["seq"], "fps": round(fps, 1), "behind_ms": s["behind_ms"],
                    "tiles": s["tiles"]}


class PreviewEncoder:
    """A thread that turns the controller's newest preview frame into a JPEG for the streams (module doc).

    ``source()`` returns the newest preview frame (or None); ``with_output()`` says whether the composed
    output gets its own tile (paste mode). ``encoded`` counts the frames encoded; ``encode_ms`` is the last
    encoding's cost. ``stamped`` (set by a benchmark's stream) writes the publish time into each picture
    (:func:`stamp`).
    """

    def __init__(self, source: Callable[[], Any], with_output: Callable[[], bool] = lambda: False,
                 poll: float = 0.004, height: int = TILE_HEIGHT):
        self.source, self.with_output, self.poll, self.height = source, with_output, poll, height
        self.source_owner = getattr(source, "__self__", None)  # the controller, when it can wake us
        self.encoded = 0
        self.encode_ms = 0.0
        self.error: str | None = None
        self.stamped = False
        self._seq = -1
        self._message: PreviewMessage | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._ready = 0  # viewers waiting for their next frame
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._thread = threading.Thread(target=self._run, name="lia-ui-preview", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        wait = getattr(self.source_owner, "wait_preview", None)
        while not self._stop.is_set():
            if self._ready <= 0:  # nobody waits for a frame (none connected, or each still busy with the last)
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            if wait is not None:
                wait(0.1)  # woken by the loop's publish
            frame = self.source()
            seq = getattr(frame, "seq", None)
            if frame is None or seq is None or seq == self._seq:
                if wait is None:
                    time.sleep(self.poll)
                continue
            self._seq = seq
            try:
                self._publish(self._encode(frame))
            except Exception as e:  # noqa: BLE001 - a bad frame must not end the preview; the page shows why
                self.error = f"preview: {type(e).__name__}: {e}"

    def _encode(self, frame: Any) -> PreviewMessage:
        t0 = time.perf_counter()
        picture, parts = tiles(frame, self.with_output(), self.height)
        published = float(getattr(frame, "published", 0.0) or t0)
        if self.stamped:
            picture = stamp(picture, round(1e3 * (time.time() - (time.perf_counter() - published))) % (1 << MARK_BITS))
        jpeg = encode_jpeg(picture)
        self.encode_ms = 1e3 * (time.perf_counter() - t0)
        self.encoded += 1
        return PreviewMessage(jpeg, int(frame.seq), parts, published, round(self.encode_ms, 2))

    def _publish(self, message: PreviewMessage) -> None:
        with self._lock:
            self._message = message
            self._count += 1
            waiters, self._waiters = self._waiters, []
            self._ready -= len(waiters)  # served: not waiting any more
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake_future, fut)

    async def newer(self, seen: int) -> tuple[int, PreviewMessage]:
        """The newest message after number ``seen`` (waits for one): (its number, the message)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._count > seen and self._message is not None:
                return self._count, self._message
            fut = loop.create_future()
            self._waiters.append((loop, fut))
            self._ready += 1
        self._wake.set()
        try:
            await fut
        finally:
            with self._lock:
                if (loop, fut) in self._waiters:  # cancelled (the page left) before it was served
                    self._waiters.remove((loop, fut))
                    self._ready -= 1
        with self._lock:
            assert self._message is not None
            return self._count, self._message


def _wake_future(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
