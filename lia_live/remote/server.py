"""``lia-live serve``: animate for remote clients over WebSocket (``websockets``; wss:// with a certificate).

One asyncio loop takes the connections; one model thread (:class:`~lia_live.remote.worker.ModelWorker`) runs
every client's frames, batched across clients. A client is one session: it says hello with the token, gets an
unguessable session id bound to its connection, uploads its portrait(s) once, then sends face crops. Every
fault of a client (wrong token, garbage, a message over the size limit, another session's id, silence) ends
that client's connection with one log line; the server and the other clients go on.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from ..animator import Animator
from ..errors import UserError
from ..log import log
from .protocol import (
    CODECS,
    FULL_CLOSE,
    TOKEN_CLOSE,
    VERSION,
    ProtocolError,
    decode_image,
    encode_image,
    floats,
    number,
    pack,
    to_model,
    to_uint8,
    unpack,
    vector,
)
from .settings import ServeConfig
from .tcp import tune_socket
from .worker import FRAME, STORED, Job, ModelWorker, Plan, Session

POLICY_CLOSE = 1008  # WebSocket close code: policy violation
READ_AHEAD = 4  # requests of one client read, decoded and queued before their replies are sent (its most in flight)
CLOSE_TIMEOUT = 1.0  # seconds a closing connection waits for the peer's close frame (websockets: 10): a frozen client
# must not hold up Ctrl-C / SIGTERM of the server


OWN_POOL_BACKENDS = ("onnxruntime", "tensorrt")  # backends whose model runs on their own threads, not torch's


def settle_threads(anim: Animator) -> int:
    """After the model is loaded: PyTorch's CPU threads for the server's small tensor work (latents, copies).

    When torch does not run the model itself (a CUDA device, or an onnxruntime/TensorRT backend whose session
    keeps the threads it was made with), one thread: with one per core every small op wakes an OpenMP pool
    whose threads then spin beside the model's own (measured on 2 cores, demo model on onnxruntime: server CPU
    per frame 18.1-18.9 vs 20.1-21.1 ms, and 73-77 vs 65-67 fps, with the client on the same cores). A CPU
    backend that runs the model in torch keeps its threads. Returns the thread count now in use."""
    if anim.device.type == "cuda" or anim.backend.name in OWN_POOL_BACKENDS:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def new_token() -> str:
    return secrets.token_urlsafe(18)


def server_ssl(cfg: ServeConfig) -> ssl.SSLContext | None:
    if cfg.tls_cert is None and cfg.tls_key is None:
        return None
    if cfg.tls_cert is None or cfg.tls_key is None:
        raise UserError("TLS needs both «tls_cert» and «tls_key»")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    except (OSError, ssl.SSLError) as e:
        raise UserError(f"cannot load the TLS certificate/key ({cfg.tls_cert}, {cfg.tls_key}): {e}") from None
    return ctx


class RemoteServer:
    """Serves one animator to many clients (see the module docstring)."""

    def __init__(self, anim: Animator, cfg: ServeConfig, token: str):
        if not token:
            raise UserError("the «token» must not be empty")
        self.anim, self.cfg, self.token = anim, cfg, token
        self.ssl = server_ssl(cfg)
        self.worker = ModelWorker(anim, cfg.batch_window / 1000.0, cfg.max_batch)
        self.sessions: set[Session] = set()
        self.connections = 0  # open connections, with or without a session yet (the event loop's thread only)
        self.worker.watch(self.sessions)
        self.basis = anim.basis.float().cpu().numpy().astype(np.float32)  # (D, M)
        self.motion_dim = int(self.basis.shape[1])
        self.info: dict = {"size": anim.size, "motion_dim": self.motion_dim, "latent_dim": int(self.basis.shape[0]),
                     "backend": anim.backend.name, "device": str(anim.device),
                     "precision": str(anim.backend.precision),
                     "model": anim.checkpoint.name if anim.checkpoint is not None else "model",
                     "model_sha256": anim.model_sha256}
        self.address: tuple[str, int] | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- running ---------------------------------------------------------------------------------------------
    async def serve(self, on_ready: Callable[[str, int], None] | None = None) -> None:
        """Listen until :meth:`stop`."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, self.cfg.host, self.cfg.port, ssl=self.ssl, compression=None,
                                    max_size=self.cfg.max_message, max_queue=2,
                                    open_timeout=self.cfg.hello_timeout, ping_interval=10, ping_timeout=20,
                                    close_timeout=CLOSE_TIMEOUT, logger=_quiet_logger()) as server:
            host, port = server.sockets[0].getsockname()[:2]
            self.address = (host, port)
            if on_ready is not None:
                on_ready(host, port)
            await self._stop.wait()

    def start(self) -> tuple[str, int]:
        """Serve from a background thread (tests, benchmarks); returns (host, port) once listening."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(lambda h, p: ready.set()))
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                failed.append(e)
                ready.set()

        self._thread = threading.Thread(target=run, name="remote-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        assert self.address is not None
        return self.address

    def stop(self) -> None:
        """Stop serving (a second call does nothing); open connections get :data:`CLOSE_TIMEOUT` to close."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed in between: stopped already
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.worker.close()

    # ---- one client ------------------------------------------------------------------------------------------
    async def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = _peer(ws)
        tune_socket(ws.transport.get_extra_info("socket"))  # shorter TCP timeouts when a repair is lost (tcp.py)
        if self.connections >= self.cfg.max_clients:  # connections that have not said hello yet count too
            log(f"refused {peer}: the server already has its maximum of {self.cfg.max_clients} clients")
            await ws.close(FULL_CLOSE, "server full")
            return
        self.connections += 1
        session: Session | None = None
        try:
            session = await self._hello(ws, peer)
            if session is None:
                return
            self.sessions.add(session)
            log(f"client {peer} joined ({len(self.sessions)} connected)")
            await self._serve_client(ws, session)
        except ProtocolError as e:
            log(f"dropped {peer}: {e}")
            await ws.close(POLICY_CLOSE, str(e)[:120])
        except asyncio.TimeoutError:
            what = "said nothing" if session is None else "sent nothing"
            wait = self.cfg.hello_timeout if session is None else self.cfg.idle_timeout
            log(f"dropped {peer}: {what} for {wait:g} s")
            await ws.close(POLICY_CLOSE, "timeout")
        except ConnectionClosed as e:
            code = e.sent.code if e.sent is not None else None
            if session is not None and session.failed is not None:
                log(f"dropped {peer}: {session.failed}")
            elif code == 1009:
                log(f"dropped {peer}: a message over the {self.cfg.max_message}-byte limit")
            elif session is not None:
                log(f"client {peer} left ({len(self.sessions) - 1} connected)")
        except Exception as e:  # noqa: BLE001 - one client's failure never stops the server
            log(f"dropped {peer}: {type(e).__name__}: {e}")
            await ws.close(1011, "server error")
        finally:
            self.connections -= 1
            if session is not None:
                self.sessions.discard(session)

    async def _hello(self, ws, peer: str) -> Session | None:
        header, _ = unpack(await asyncio.wait_for(ws.recv(), self.cfg.hello_timeout))
        if header["t"] != "hello":
            raise ProtocolError(f"first message is {header['t']!r}, not hello")
        token = header.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
            log(f"refused {peer}: wrong token")
            await ws.send(pack({"t": "error", "code": "token", "message": "the server refused the token"}))
            await ws.close(TOKEN_CLOSE, "wrong token")
            return None
        session = Session(secrets.token_urlsafe(24), peer)
        session.codec = header.get("codec", "jpeg") if header.get("codec") in CODECS else "jpeg"
        session.quality = int(number(header.get("quality", 90), "quality", 1, 100))
        await ws.send(pack({"t": "welcome", "v": VERSION, "session": session.id, **self.info},
                           self.basis.tobytes()))
        return session

    async def _serve_client(self, ws, s: Session) -> None:
        """Read a client's requests ahead of the model (up to :data:`READ_AHEAD` waiting: the next crop is decoded
        and queued while this one runs, so the model thread never waits for the network) and answer them in
        order from a second task."""
        waiting: asyncio.Queue = asyncio.Queue(READ_AHEAD)
        writer = asyncio.ensure_future(self._answer(ws, s, waiting))
        try:
            while True:
                header, payload = unpack(await asyncio.wait_for(ws.recv(), self.cfg.idle_timeout))
                given = header.get("session")
                if not isinstance(given, str) or not hmac.compare_digest(given.encode(), s.id.encode()):
                    raise ProtocolError("message names another session")
                await waiting.put(self._dispatch(s, header, payload))
        finally:
            writer.cancel()

    async def _answer(self, ws, s: Session, waiting: asyncio.Queue) -> None:
        """Send each reply as its work is done, in the order the requests came; a failed model step drops the
        client (its handler logs ``s.failed``)."""
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                future, reply = await waiting.get()
                try:
                    message = reply(await asyncio.wrap_future(future))
                except Exception as e:  # noqa: BLE001 - this client's failure only
                    s.failed = f"{type(e).__name__}: {e}"
                    await ws.close(1011, "server error")
                    return
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:  # the reader may wait to queue a request: let it go on (its next recv sees the closed connection)
            while not waiting.empty():
                waiting.get_nowait()

    def _dispatch(self, s: Session, header: dict, payload: bytes) -> tuple[Future, Callable[[Any], bytes]]:
        """Check and decode one request, queue its work; (the work's Future, how to make the reply of its result).
        Runs in arrival order, so the session state it reads (source, stored reference) is the request's own."""
        kind = header["t"]
        size = self.anim.size
        if kind == "source":
            if s.next_source >= self.cfg.max_sources:
                raise ProtocolError(f"more than {self.cfg.max_sources} source portraits")
            seq = header.get("seq")  # echoed: a client with frames in flight matches the reply by it
            if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
                raise ProtocolError("source with a bad sequence number")
            job = Job(s, "source", to_model(decode_image(payload, size)), source=s.next_source)
            s.next_source += 1
            if s.source is None:
                s.source = job.source
            return self.worker.submit(job), lambda res: _source_reply(res, seq)
        if kind != "step":
            raise ProtocolError(f"unknown message type {kind!r}")
        seq = header.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ProtocolError("step without a sequence number")
        self._select(s, header)
        crop = to_model(decode_image(payload, size)) if payload else None  # here: the model thread only runs the model
        plan = self._plan(s, header.get("render"), crop is not None)
        if crop is None and plan is None:
            raise ProtocolError("empty step (no crop and nothing to render)")

        def reply(res) -> bytes:
            head = {"t": "result", "seq": seq, "alpha": None if res.alpha is None else floats(res.alpha),
                    "server_ms": round(res.server_s * 1e3, 3), "batch": res.batch}
            return pack(head, b"" if res.image is None else encode_image(to_uint8(res.image), s.codec, s.quality))

        return self.worker.submit(Job(s, "step", crop, plan)), reply

    def _select(self, s: Session, header: dict) -> None:
        src = header.get("source")
        if src is not None:
            if not isinstance(src, int) or isinstance(src, bool) or not 0 <= src < s.next_source:
                raise ProtocolError(f"unknown source id {src!r}")
            s.source = src
        m = self.motion_dim
        if "set_ref" in header:
            ref = vector(header["set_ref"], "set_ref", m)
            s.ref = None if ref is None else torch.from_numpy(ref)

    def _plan(self, s: Session, render, has_crop: bool) -> Plan | None:
        if render is None:
            return None
        if not isinstance(render, dict):
            raise ProtocolError("render must be an object")
        if s.source is None:
            raise ProtocolError("render before any source portrait")
        m = self.motion_dim
        alpha = render.get("alpha")
        alpha = FRAME if alpha == FRAME else vector(alpha, "alpha", m)
        ref = render.get("ref")
        if isinstance(ref, list):
            ref = vector(ref, "ref", m)
        elif ref not in (FRAME, STORED, None):
            raise ProtocolError(f"unknown reference {ref!r}")
        if (isinstance(alpha, str) or isinstance(ref, str) and ref == FRAME) and not has_crop:
            raise ProtocolError("render uses the frame's motion but the step has no crop")
        if isinstance(ref, str) and ref == STORED and s.ref is None:
            raise ProtocolError("render uses the stored reference but none was set")
        return Plan(alpha, ref, number(render.get("power", 1.0), "power", 0, 10),
                    vector(render.get("offset"), "offset", m), s.source, s.ref)


def _source_reply(result: tuple[int, Any], seq: int | None) -> bytes:
    sid, state = result
    return pack({"t": "source", "seq": seq, "id": sid, "alpha": floats(state.alpha)})


def _peer(ws) -> str:
    addr = getattr(ws, "remote_address", None)
    return f"{addr[0]}:{addr[1]}" if addr else "a client"


def _quiet_logger():
    """websockets' own logger, shown as one line per failed handshake (garbage bytes, port scans)."""
    import logging

    logger = logging.getLogger("lia_live.remote.websockets")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("lia-live: connection: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.ERROR)
        logger.propagate = False
    return logger


def serve_forever(server: RemoteServer, announce: Callable[[str, int], None]) -> None:
    """Run ``server`` in this thread until Ctrl-C or SIGTERM."""
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(server.serve(announce))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: server._stop.set() if server._stop else None)
        await task

    started = time.perf_counter()
    try:
        asyncio.run(main())
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise UserError(f"cannot listen on {server.cfg.host}:{server.cfg.port}: {why}") from None
    finally:
        server.worker.close()
    log(f"stopped after {time.perf_counter() - started:.0f} s")
