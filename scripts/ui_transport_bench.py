"""Which server and which preview transport for ``lia-live ui``: a small measurement (docs/ui.md).

Candidates: {Starlette + uvicorn, aiohttp} × {MJPEG over HTTP, JPEG frames over a WebSocket (per-message
deflate off, and on: browsers offer it)}. The server runs in a subprocess and publishes a pre-encoded
640×480 JPEG at 30 fps from a plain thread (as the panel's encoder thread does); a client reads the stream
for a few seconds. Measured: frames received per second, delivery latency (publish → received, one
clock), and the server process's CPU time per delivered frame.

    python scripts/ui_transport_bench.py [--seconds 6] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import struct
import subprocess
import sys
import threading
import time

FPS = 30.0


def _frame() -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


class Latest:
    """Newest frame wins: a publisher thread sets it, async clients wait for a newer sequence number."""

    def __init__(self):
        self.seq, self.t, self.data = 0, 0.0, b""
        self.cond = threading.Condition()
        self.waiters: list = []

    def publish(self, data: bytes) -> None:
        with self.cond:
            self.seq, self.t, self.data = self.seq + 1, time.time(), data
            waiters, self.waiters = self.waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(None))

    async def newer(self, seq: int):
        loop = asyncio.get_running_loop()
        with self.cond:
            if self.seq > seq:
                return self.seq, self.t, self.data
            fut = loop.create_future()
            self.waiters.append((loop, fut))
        await fut
        return self.seq, self.t, self.data


def _part(t: float, data: bytes) -> bytes:
    return b"--f\r\nContent-Type: image/jpeg\r\nX-T: %f\r\nContent-Length: %d\r\n\r\n" % (t, len(data)) + data + b"\r\n"


def _publisher(latest: Latest) -> None:
    data = _frame()
    while True:
        latest.publish(data)
        time.sleep(1 / FPS)


def serve_starlette(port: int, latest: Latest, deflate: bool) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def mjpeg(request):
        async def parts():
            seq = 0
            while True:
                seq, t, data = await latest.newer(seq)
                yield _part(t, data)
        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=f")

    async def ws(websocket):
        await websocket.accept()
        seq = 0
        while True:
            seq, t, data = await latest.newer(seq)
            await websocket.send_bytes(struct.pack("<d", t) + data)

    app = Starlette(routes=[Route("/mjpeg", mjpeg), WebSocketRoute("/ws", ws)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=deflate)


def serve_aiohttp(port: int, latest: Latest, deflate: bool) -> None:
    from aiohttp import web

    async def mjpeg(request):
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=f"})
        await resp.prepare(request)
        seq = 0
        while True:
            seq, t, data = await latest.newer(seq)
            await resp.write(_part(t, data))

    async def ws(request):
        sock = web.WebSocketResponse(compress=deflate)
        await sock.prepare(request)
        seq = 0
        while True:
            seq, t, data = await latest.newer(seq)
            await sock.send_bytes(struct.pack("<d", t) + data)

    app = web.Application()
    app.add_routes([web.get("/mjpeg", mjpeg), web.get("/ws", ws)])
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def read_mjpeg(port: int, seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/mjpeg")
    resp = conn.getresponse()
    lat, end = [], time.time() + seconds
    while time.time() < end:
        line = resp.fp.readline()
        if not line.startswith(b"--f"):
            continue
        headers = {}
        while (h := resp.fp.readline().strip()):
            k, v = h.split(b":", 1)
            headers[k.lower()] = v.strip()
        resp.fp.read(int(headers[b"content-length"]))
        lat.append(time.time() - float(headers[b"x-t"]))
    conn.close()
    return lat


def read_ws(port: int, seconds: float) -> list[float]:
    from websockets.sync.client import connect

    lat, end = [], time.time() + seconds
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        while time.time() < end:
            msg = ws.recv()
            lat.append(time.time() - struct.unpack("<d", msg[:8])[0])
    return lat


def measure(server: str, transport: str, seconds: float) -> dict:
    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", server, "--port", str(port)]
                            + (["--deflate"] if transport == "ws+deflate" else []))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        ps = psutil.Process(proc.pid)
        (read_mjpeg if transport == "mjpeg" else read_ws)(port, 1.0)  # warm-up
        cpu0 = sum(ps.cpu_times()[:2])
        lat = (read_mjpeg if transport == "mjpeg" else read_ws)(port, seconds)
        cpu = sum(ps.cpu_times()[:2]) - cpu0
    finally:
        proc.kill()
        proc.wait()
    lat.sort()
    return {"server": server, "transport": transport, "fps": round(len(lat) / seconds, 1),
            "latency_ms_median": round(1000 * lat[len(lat) // 2], 2),
            "latency_ms_p95": round(1000 * lat[int(len(lat) * 0.95)], 2),
            "server_cpu_ms_per_frame": round(1000 * cpu / max(1, len(lat)), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--serve", choices=("starlette", "aiohttp"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--deflate", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        latest = Latest()
        threading.Thread(target=_publisher, args=(latest,), daemon=True).start()
        (serve_starlette if a.serve == "starlette" else serve_aiohttp)(a.port, latest, a.deflate)
        return 0
    for r in range(a.repeat):
        for server in ("starlette", "aiohttp"):
            for transport in ("mjpeg", "ws", "ws+deflate"):
                print(json.dumps({"round": r + 1, **measure(server, transport, a.seconds)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
