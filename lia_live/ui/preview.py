"""The panel's live preview: the newest pipeline frames as one JPEG, encoded on the panel's own thread.

The live loop only stores references to its newest frames (``controller.preview()``); :class:`PreviewEncoder`
waits for the loop's next publish (``controller.wait_preview``) while a page is ready for a frame, draws the
tiles (camera with the face box | animated face | pasted-back
frame in paste mode) at a small height, encodes one JPEG and hands it to the WebSocket clients. The newest
frame wins end to end: a page acknowledges each frame once drawn and is sent the next only then, and frames
are encoded only while some page waits for one; a slow page gets fewer frames, never a queue, and with no
page connected nothing is encoded at all.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

TILE_HEIGHT = 240  # 480p and 720p cameras shrink by whole factors
JPEG_QUALITY = 75


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


def encode(picture: np.ndarray, header: dict, quality: int = JPEG_QUALITY) -> bytes:
    """One WebSocket message: 4-byte little-endian header length, the JSON header, the JPEG."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + jpeg.tobytes()


class PreviewEncoder:
    """A thread that turns the controller's newest preview frame into a WebSocket message (see module doc).

    ``source()`` returns the newest preview frame (or None); ``with_output()`` says whether the composed
    output gets its own tile (paste mode). ``encoded`` counts the frames encoded; ``encode_ms`` is the last
    encoding's cost.
    """

    def __init__(self, source: Callable[[], Any], with_output: Callable[[], bool] = lambda: False,
                 poll: float = 0.004, height: int = TILE_HEIGHT):
        self.source, self.with_output, self.poll, self.height = source, with_output, poll, height
        self.source_owner = getattr(source, "__self__", None)  # the controller, when it can wake us
        self.encoded = 0
        self.encode_ms = 0.0
        self.error: str | None = None
        self._seq = -1
        self._message: bytes | None = None
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

    def _encode(self, frame: Any) -> bytes:
        t0 = time.perf_counter()
        picture, parts = tiles(frame, self.with_output(), self.height)
        published = getattr(frame, "published", 0.0)
        behind = 1e3 * (time.perf_counter() - published) if published else 0.0
        # the page adds the time from encoded_time (wall clock) to when it has drawn the frame
        header = {"seq": frame.seq, "tiles": parts, "behind_ms": round(behind, 2), "encoded_time": time.time()}
        message = encode(picture, header)
        self.encode_ms = 1e3 * (time.perf_counter() - t0)
        self.encoded += 1
        return message

    def _publish(self, message: bytes) -> None:
        with self._lock:
            self._message = message
            self._count += 1
            waiters, self._waiters = self._waiters, []
            self._ready -= len(waiters)  # served: not waiting any more
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake_future, fut)

    async def newer(self, seen: int) -> tuple[int, bytes]:
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
