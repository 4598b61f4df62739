"""What a browser spends to show a preview: CPU ms per shown frame for each way of sending and drawing it.

A Starlette server sends one fixed 800×240 JPEG (the panel's three 240-px tiles, quality 75) at ``--rate``
frames a second to a page in headless Chromium (Debian's, as the tests use it), in each of these ways:

- ``ws-none``: binary WebSocket frames, received and acknowledged, not drawn (the cost of the messages alone);
- ``ws-canvas``: WebSocket frames decoded with ``createImageBitmap`` and drawn on a canvas (the panel's way
  until 2026-12-06);
- ``ws-imagedecoder``: WebSocket frames decoded with WebCodecs' ``ImageDecoder``, drawn on a canvas;
- ``mjpeg``: ``multipart/x-mixed-replace`` into an ``<img>`` at its own size (the panel's way now);
- ``mjpeg-scaled``: the same, the ``<img>`` stretched to the page's width.

CPU = user + system seconds of all the browser's processes over ``--seconds``, per frame shown.

    python scripts/ui_page_bench.py [--rate 30] [--seconds 8] [--modes mjpeg ws-canvas ...] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODES = ("ws-none", "ws-canvas", "ws-imagedecoder", "mjpeg", "mjpeg-scaled")
PAGE = """<!doctype html><html><body style="margin:0;background:#16181d">
<canvas id=c width=800 height=240></canvas><img id=i>
<script>
const q = new URLSearchParams(location.search), mode = q.get('mode'), rate = +q.get('rate');
window.shown = 0;
if (mode.startsWith('mjpeg')) {
  if (mode === 'mjpeg-scaled') document.getElementById('i').style.width = '100%';
  document.getElementById('i').src = '/mjpeg?rate=' + rate;
} else {
  const ws = new WebSocket(`ws://${location.host}/ws`), g = document.getElementById('c').getContext('2d');
  ws.binaryType = 'arraybuffer'; let last = 0;
  const ack = () => { const wait = Math.max(0, last + 1000 / rate - performance.now());
                      setTimeout(() => { last = performance.now(); ws.send('ack'); }, wait); };
  ws.onmessage = async (ev) => {
    if (mode === 'ws-canvas') {
      const b = await createImageBitmap(new Blob([ev.data], {type: 'image/jpeg'})); g.drawImage(b, 0, 0); b.close();
    } else if (mode === 'ws-imagedecoder') {
      const d = new ImageDecoder({data: ev.data, type: 'image/jpeg'}), r = await d.decode();
      g.drawImage(r.image, 0, 0); r.image.close(); d.close();
    }
    window.shown++; ack();
  };
}
</script></body></html>"""


def jpeg() -> bytes:
    import cv2
    from skimage import data

    return cv2.imencode(".jpg", cv2.resize(data.astronaut(), (800, 240))[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()


def serve(picture: bytes, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def page(request):
        return HTMLResponse(PAGE)

    async def ws(w):
        await w.accept()
        try:
            while True:
                await w.send_bytes(picture)
                await w.receive_text()
        except Exception:  # noqa: BLE001 - the page went away
            pass

    async def mjpeg(request):
        period = 1.0 / float(request.query_params["rate"])
        head = b"--f\r\nContent-Type: image/jpeg\r\n\r\n"

        async def parts():
            due = time.perf_counter()
            yield head
            while True:  # each picture with the next part's boundary and headers (Chromium shows it only then)
                yield picture + b"\r\n" + head
                due += period
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=f")

    app = Starlette(routes=[Route("/", page), Route("/mjpeg", mjpeg), WebSocketRoute("/ws", ws)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", ws_per_message_deflate=False)


def browser_cpu() -> float:
    import psutil

    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name().lower():
                t = p.cpu_times()
                total += t.user + t.system
        except Exception:  # noqa: BLE001 - a process may end between listing and reading
            pass
    return total


def measure(pw, port: int, mode: str, rate: float, seconds: float) -> tuple[float, float]:
    """(frames shown per second, browser CPU ms per frame shown) for one mode, in a fresh browser."""
    with tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                    viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/?mode={mode}&rate={rate}")
        time.sleep(3.0)  # warm-up
        counted = not mode.startswith("mjpeg")  # an <img> tells no script about the parts: the server's rate
        c0, n0, t0 = browser_cpu(), page.evaluate("() => window.shown") if counted else 0, time.perf_counter()
        time.sleep(seconds)
        c1, t1 = browser_cpu(), time.perf_counter()
        n = page.evaluate("() => window.shown") - n0 if counted else rate * (t1 - t0)
        ctx.close()
    return n / (t1 - t0), 1e3 * (c1 - c0) / max(n, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    threading.Thread(target=serve, args=(jpeg(), a.port), daemon=True).start()
    time.sleep(1.5)
    result: dict[str, list] = {m: [] for m in a.modes}
    with sync_playwright() as pw:
        for _ in range(a.repeat):  # the modes alternate, so a busy moment does not land on one of them
            for mode in a.modes:
                fps, ms = measure(pw, a.port, mode, a.rate, a.seconds)
                result[mode].append(round(ms, 2))
                print(f"{mode:16s} {fps:5.1f} fps shown, browser {ms:5.2f} CPU ms per frame", file=sys.stderr,
                      flush=True)
    print(json.dumps({"rate": a.rate, "browser_cpu_ms_per_frame_median": {m: statistics.median(v)
                                                                         for m, v in result.items()},
                      "runs": result, "load_average_1min": round(os.getloadavg()[0], 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
