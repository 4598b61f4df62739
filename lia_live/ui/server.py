"""The control panel's web server: a Starlette app run by uvicorn in a thread of the live process.

Routes (all behind :class:`~lia_live.ui.security.Guard`: token, Host, Origin):

    GET  /                    the page (the token written into its links)
    GET  /static/...          its script and style, from the package (works offline)
    GET  /api/state           the panel's state, numbers and settings (JSON)
    POST /api/action          {"action": name, "params": {...}} → {"message": line} or 400 {"error": line}
    POST /api/source          an image as the body (X-File-Name header): decoded, size-capped, added
    GET  /api/thumb/{i}       source i's thumbnail (JPEG)
    GET  /api/cameras         the cameras of this machine
    GET  /api/preview.mjpg    the live preview as MJPEG (multipart/x-mixed-replace) for an <img>:
                              ?rate=FPS (at most; 0: the pipeline's rate), ?viewer=ID (the page's id, for
                              its numbers in the status), ?stamp=1 (benchmarks: time stamps in the picture)
    WS   /ws                  text: {"type": "status", ...} twice a second (?viewer=ID: with that page's stream)

A malformed request gets a 4xx and one log line; an unexpected failure a 500 and one log line. Neither
reaches the pipeline's threads. Choice of library and transport: docs/ui.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..log import log
from .preview import BOUNDARY, OPENING, part
from .security import Guard

STATIC = Path(__file__).parent / "static"
STATUS_EVERY = 0.5  # each status redraws numbers, table and chart: ≈13 ms of a software-rendering browser
MAX_PREVIEW_RATE = 120.0
VIEWER = re.compile(r"[A-Za-z0-9_-]{0,32}")


class BadRequest(Exception):
    """A request the panel cannot use: answered with its status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def build_app(panel, token: str, say=log):
    """The ASGI app: routes wrapped in the :class:`Guard`."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", token)

    def guarded(fn):
        return _answering(fn, say)

    async def index(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def state(request):
        viewer = request.query_params.get("viewer", "")
        return JSONResponse(panel.snapshot(viewer if VIEWER.fullmatch(viewer) else None))

    async def action(request):
        body = await _json_body(request, 64 * 1024)
        name, params = body.get("action"), body.get("params", {})
        if not isinstance(name, str) or not isinstance(params, dict):
            raise BadRequest(400, 'expected {"action": NAME, "params": {...}}')
        message = await asyncio.to_thread(panel.act, name, params)
        return JSONResponse({"message": message})

    async def source(request):
        data = await _body(request, panel.max_upload)
        name = request.headers.get("x-file-name", "upload")
        message = await asyncio.to_thread(panel.upload, data, name)
        return JSONResponse({"message": message})

    async def thumb(request):
        data = await asyncio.to_thread(panel.thumbnail, request.path_params["i"])
        if data is None:
            raise BadRequest(404, f"no source {request.path_params['i']}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def cameras(request):
        return JSONResponse({"cameras": await asyncio.to_thread(panel.cameras)})

    async def preview(request):
        rate, viewer = _stream_params(request.query_params)
        if request.query_params.get("stamp") == "1":
            panel.preview.stamped = True
        return StreamingResponse(_stream(panel, rate, viewer), headers={"Cache-Control": "no-store"},
                                 media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    routes = [Route("/", index), Route("/api/state", guarded(state)),
              Route("/api/action", guarded(action), methods=["POST"]),
              Route("/api/source", guarded(source), methods=["POST"]),
              Route("/api/thumb/{i:int}", guarded(thumb)), Route("/api/cameras", guarded(cameras)),
              Route("/api/preview.mjpg", guarded(preview)),
              WebSocketRoute("/ws", lambda ws: _websocket(ws, panel)),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes)
    return Guard(app, token, say=say)


def _answering(fn, say):
    """``fn`` as an endpoint whose failures are answered (4xx / 500 with one line, and one log line)."""
    from starlette.responses import JSONResponse

    async def endpoint(request):
        try:
            return await fn(request)
        except BadRequest as e:
            say(f"ui: {request.method} {request.url.path}: {e} ({e.status})")
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except UserError as e:
            say(f"ui: {request.method} {request.url.path}: {e}")
            return JSONResponse({"error": str(e)}, status_code=400)
        except Exception as e:  # noqa: BLE001 - one bad request must never take the panel down
            say(f"ui: {request.method} {request.url.path} failed: {type(e).__name__}: {e}")
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)
    return endpoint


async def _body(request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (checked while reading, not after)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadRequest(413, f"upload too large (limit {limit // (1 << 20)} MB)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"upload too large (limit {limit // (1 << 20)} MB)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request, limit: int) -> dict:
    try:
        body = json.loads(await _body(request, limit))
    except ValueError:
        raise BadRequest(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body is not a JSON object")
    return body


def _stream_params(query) -> tuple[float, str]:
    """The preview stream's rate cap (0: the pipeline's rate) and the page's id, or BadRequest."""
    try:
        rate = float(query.get("rate", "15"))
    except ValueError:
        raise BadRequest(400, "rate: expected frames per second, a number") from None
    if not 0.0 <= rate <= MAX_PREVIEW_RATE:
        raise BadRequest(400, f"rate: expected 0 (the pipeline's rate) to {MAX_PREVIEW_RATE:g} frames per second")
    viewer = query.get("viewer", "")
    if not VIEWER.fullmatch(viewer):
        raise BadRequest(400, "viewer: expected up to 32 letters, digits, '-' or '_'")
    return rate, viewer


async def _stream(panel, rate: float, viewer: str):
    """The preview's parts: the newest frame each time the last one is written and the rate allows (a slow
    page gets fewer frames, never a queue); ends when the page goes away (Starlette cancels it)."""
    period = 1.0 / rate if rate > 0 else 0.0
    seen, due = 0, 0.0
    yield OPENING
    while True:
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        seen, message = await panel.preview.newer(seen)
        yield part(message.jpeg)
        now = time.perf_counter()
        panel.streams.sent(viewer, message, now)
        due = max(due + period, now) if period else now


async def _websocket(ws, panel) -> None:
    """Status twice a second until the page goes away."""
    from starlette.websockets import WebSocketDisconnect

    await ws.accept()
    viewer = ws.query_params.get("viewer", "")
    viewer = viewer if VIEWER.fullmatch(viewer) else ""
    tasks = [asyncio.create_task(_send_status(ws, panel, viewer)), asyncio.create_task(_receive(ws))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            e = t.exception()
            if e is not None and not isinstance(e, (WebSocketDisconnect, ConnectionError, RuntimeError)):
                log(f"ui: websocket: {type(e).__name__}: {e}")
    finally:
        for t in tasks:
            t.cancel()


async def _send_status(ws, panel, viewer: str) -> None:
    since = 0
    while True:
        since, lines = panel.messages(since)
        await ws.send_text(json.dumps({"type": "status", **panel.snapshot(viewer), "messages": lines}))
        await asyncio.sleep(STATUS_EVERY)


async def _receive(ws) -> None:
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


class PanelServer:
    """uvicorn serving the app on ``host:port`` (0: a free port) in a daemon thread."""

    def __init__(self, panel, token: str, host: str = "127.0.0.1", port: int = 0, say=log):
        import uvicorn

        self.token = token
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.app = build_app(panel, token, say)
        self.app.allow(host, self.port)
        config = uvicorn.Config(self.app, log_level="warning", ws_per_message_deflate=False, lifespan="off",
                                ws_max_size=1 << 16)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="lia-ui-server", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # open it here
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?token={self.token}"

    def _serve(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        for _ in range(int(timeout / 0.02)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.02)
        if not self.server.started:
            raise UserError(f"the control panel's server did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5.0)
        self.sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (UserError with a hint when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot serve the control panel on {host}:{port} ({e.strerror}); "
                        f"«port» 0 picks a free port") from None
    sock.listen(16)
    sock.setblocking(False)
    return sock


def panel_json(value: Any) -> Any:
    """``value`` made JSON-safe (numpy numbers and paths as plain values)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
