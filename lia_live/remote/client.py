"""``lia-live --remote``: an Animator whose model runs on a ``lia-live serve`` server.

:class:`RemoteAnimator` has the Animator interface the live loop uses (``size``, ``basis``, ``device``,
``set_source``, ``source``, ``motion``, ``render``), so the live loop, its motion controller, the hotkeys and the
control panel run unchanged; only the model stage talks to the network.

One round trip per frame: ``motion(crop)`` sends the face crop with a *render plan* (the reference, power and
offset the previous frame used, with "this frame's α" in place of α) and gets back α and the animated crop.
``render(args)`` then returns that crop when the motion controller's arguments are what the plan said (the
steady state); otherwise (a hotkey changed the power, the reference was just taken, no face) it sends one
render-only request with the exact arguments. The server keeps the stored reference, so a reference vector
travels once.

Loss: a send that fails or a reply later than ``timeout`` marks the server lost; the client says so once,
keeps returning the last animated crop (the virtual camera shows a calm, still frame, never black), and a
background thread reconnects (re-sending the portraits and the reference) until the server is back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..imaging import check_rgb, from_tensor, resize, to_tensor
from ..log import log
from .protocol import (
    TOKEN_CLOSE,
    ProtocolError,
    client_ssl,
    close_reason,
    decode_image,
    encode_image,
    floats,
    pack,
    server_uri,
    to_model,
    to_uint8,
    unpack,
)
from .tcp import tune_socket
from .worker import FRAME, STORED

RETRY_SECONDS = 0.5
_OWN = object()


@dataclass
class RemoteSource:
    """The client's handle on a portrait encoded by the server (the Animator's SourceState stand-in)."""

    crop: np.ndarray  # RGB uint8 (S, S, 3): re-sent after a reconnection
    alpha: torch.Tensor  # (1, M) α_src
    id: int | None = None  # the server's id on the current connection


@dataclass
class _Pending:
    alpha: torch.Tensor
    plan: dict
    image: torch.Tensor | None
    hold: bool = False  # a frame sent while the pipe fills: show ``image`` (the last picture) as it is


class RemoteAnimator:
    """The Animator interface, animated by a remote server (see the module docstring)."""

    def __init__(self, address: str, token: str, *, ca: Path | None = None, codec: str = "jpeg", quality: int = 90,
                 timeout: float = 2.0, motion_power: float = 1.0, inflight: int = 1,
                 say: Callable[[str], None] = log):
        self.uri = server_uri(address, tls=ca is not None)
        self.token, self.codec, self.quality, self.timeout, self.say = token, codec, int(quality), timeout, say
        self._ssl = client_ssl(self.uri, ca)
        self.motion_power = float(motion_power)
        self.alpha_ref: torch.Tensor | None = None
        self.device = torch.device("cpu")
        self.rtt_ms: deque = deque(maxlen=240)
        self.server_ms: deque = deque(maxlen=240)
        self.round_trips = self.reconnects = self.held_frames = 0
        self.bytes_sent = self.bytes_received = 0
        self.timer = None  # a StageTimer (attach_timer): round trips and server times go into the live stats
        self._sources: list[RemoteSource] = []
        self._current: RemoteSource | None = None
        self._pending: _Pending | None = None
        self._spec = {"alpha": FRAME, "ref": FRAME, "power": self.motion_power, "offset": None}
        self._ref_values: list[float] | None = None  # the stored reference, as last sent
        self._server_has_ref = False
        self._last_alpha: torch.Tensor | None = None
        self._last_image: torch.Tensor | None = None
        self._seq = 0
        self.inflight = max(1, int(inflight))  # frames sent and not yet answered, at most (2+: output lags)
        self._queue: deque = deque()  # (seq, spec) of the frames in flight, oldest first
        self._sent: dict[int, tuple[float, int]] = {}  # seq → (send time, bytes) until its reply is read
        self._early: dict[int, tuple[dict, bytes]] = {}  # replies read while waiting for a later one
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reconnecting: threading.Thread | None = None
        self._fresh: tuple | None = None  # (connection, session, source ids) made by the reconnection thread
        try:
            self._conn, self.session, info = self._connect()
        except _Refused as e:
            raise UserError(str(e)) from None
        self.info = info
        self.size = int(info["size"])
        self.basis = info["basis"]  # (D, M)
        self.checkpoint = Path(str(info.get("model", "remote")))
        self.model_sha256 = info.get("model_sha256")
        self.say(f"remote: animating on {self.uri} ({info.get('backend')} on {info.get('device')}, "
                 f"{self.size}², {codec} q{quality})")

    # ---- connection ------------------------------------------------------------------------------------------
    def _connect(self):
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        try:
            conn = connect(self.uri, ssl=self._ssl, open_timeout=max(1.0, self.timeout), close_timeout=0.5,
                           compression=None, max_size=16 * 1024 * 1024)
            conn = conn.__enter__()  # long-lived: closed by close()/_lost() (websockets >= 17.1 warns otherwise)
            tune_socket(conn.socket)  # a lost packet: a short retransmission, not a stall
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise _Refused(f"cannot reach the lia-live server at {self.uri}: {e}") from None
        try:
            conn.send(pack({"t": "hello", "v": 1, "token": self.token, "codec": self.codec,
                            "quality": self.quality}))
            header, payload = unpack(conn.recv(timeout=max(1.0, self.timeout)))
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            raise _Refused(close_reason(self.uri, code)) from None
        except (OSError, TimeoutError, ProtocolError) as e:
            conn.close()
            raise _Refused(f"the lia-live server at {self.uri} did not answer: {e}") from None
        if header["t"] != "welcome":
            conn.close()
            raise _Refused(close_reason(self.uri, TOKEN_CLOSE if header.get("code") == "token" else None))
        try:
            m, d = int(header["motion_dim"]), int(header["latent_dim"])
            header["basis"] = torch.from_numpy(np.frombuffer(payload, np.float32).copy().reshape(d, m))
            int(header["size"])
        except (KeyError, TypeError, ValueError):
            conn.close()
            raise _Refused(f"{self.uri} answered, but not as a lia-live server") from None
        return conn, str(header["session"]), header

    def close(self) -> None:
        self._closed.set()
        if self._reconnecting is not None:
            self._reconnecting.join(timeout=10)
        with self._lock:
            conn, self._conn = self._conn, None
            fresh, self._fresh = self._fresh, None
        for c in (conn, fresh[0] if fresh else None):
            if c is not None:
                c.close()

    def _send(self, header: dict, payload: bytes = b"") -> int | None:
        """Send one request on the current connection; its sequence number, or None (and reconnection)."""
        from websockets.exceptions import ConnectionClosed

        conn = self._conn
        if conn is None:
            return None
        self._seq += 1
        message = pack({**header, "session": self.session, "seq": self._seq}, payload)
        t0 = time.perf_counter()  # before the send: on a busy machine the server may start (and finish) first
        try:
            conn.send(message)
        except (ConnectionClosed, OSError) as e:
            self._lost(e)
            return None
        self._sent[self._seq] = (t0, len(message))
        return self._seq

    def _receive(self, seq: int) -> tuple[dict, bytes] | None:
        """The reply to request ``seq`` (replies come in order; earlier ones are kept for their callers)."""
        from websockets.exceptions import ConnectionClosed

        conn = self._conn
        while seq not in self._early:
            if conn is None or seq not in self._sent:
                return None
            try:
                raw = conn.recv(timeout=self.timeout)
                reply, data = unpack(raw)
            except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as e:
                self._lost(e)
                return None
            got = reply.get("seq")
            if got not in self._sent:
                continue
            t0, sent = self._sent.pop(got)
            self._account(time.perf_counter() - t0, float(reply.get("server_ms", 0.0)) / 1e3, sent, len(raw))
            self._early[got] = (reply, data)
        return self._early.pop(seq)

    def _request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytes] | None:
        """One round trip (after the replies of any frames still in flight)."""
        seq = self._send(header, payload)
        return None if seq is None else self._receive(seq)

    def _account(self, rtt: float, server: float, sent: int, received: int) -> None:
        self.rtt_ms.append(rtt * 1e3)
        self.server_ms.append(server * 1e3)
        self.round_trips += 1
        self.bytes_sent += sent
        self.bytes_received += received
        if self.timer is not None:
            self.timer.add("rtt", rtt)
            self.timer.add("server", server)

    def attach_timer(self, timer) -> None:
        """Report each round trip and the server's time for it into the live loop's StageTimer."""
        self.timer = timer

    def _lost(self, why: BaseException) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
        conn.close()
        self._queue.clear()
        self._sent.clear()
        self._early.clear()
        reason = f"{type(why).__name__}: {why}" if str(why) else type(why).__name__
        self.say(f"remote: lost the server at {self.uri} ({reason}); holding the last frame and reconnecting")
        if not self._closed.is_set() and (self._reconnecting is None or not self._reconnecting.is_alive()):
            self._reconnecting = threading.Thread(target=self._reconnect, name="remote-reconnect", daemon=True)
            self._reconnecting.start()

    def _reconnect(self) -> None:
        said: set[str] = set()
        while not self._closed.wait(RETRY_SECONDS):
            try:
                conn, session, info = self._connect()
                if (int(info["size"]), tuple(info["basis"].shape)) != (self.size, tuple(self.basis.shape)):
                    conn.close()
                    raise _Refused(f"the server at {self.uri} came back with another model; restart lia-live")
                ids = [self._upload(conn, session, src.crop)[0] for src in list(self._sources)]
            except _Refused as e:
                if str(e) not in said and "cannot reach" not in str(e):
                    said.add(str(e))
                    self.say(f"remote: {e}")
                continue
            with self._lock:
                self._fresh = (conn, session, ids)
            self.say(f"remote: the server at {self.uri} is back; animating again")
            return

    def _adopt(self) -> None:
        """Take over a connection the reconnection thread made (in the model thread, before a request is built,
        so source ids and the stored reference always belong to the connection they are sent on)."""
        with self._lock:
            fresh, self._fresh = self._fresh, None
        if fresh is None:
            return
        conn, session, ids = fresh
        try:
            for i, src in enumerate(self._sources):
                if i < len(ids):
                    src.id = ids[i]
                else:  # added while the server was away
                    src.id, src.alpha = self._upload(conn, session, src.crop)
        except _Refused as e:
            self._conn = conn
            self._lost(e)
            return
        self._conn, self.session, self._server_has_ref = conn, session, False
        self.reconnects += 1

    def _upload(self, conn, session: str, crop: np.ndarray) -> tuple[int, torch.Tensor]:
        from websockets.exceptions import ConnectionClosed

        try:
            conn.send(pack({"t": "source", "session": session}, encode_image(crop, "png")))
            header, _ = unpack(conn.recv(timeout=max(5.0, self.timeout)))
        except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as e:
            raise _Refused(f"the server at {self.uri} failed while receiving a portrait: {e}") from None
        if header["t"] != "source":
            raise _Refused(f"the server at {self.uri} refused a portrait")
        return int(header["id"]), torch.tensor([header["alpha"]], dtype=torch.float32)

    # ---- the Animator interface ------------------------------------------------------------------------------
    @property
    def source(self) -> RemoteSource | None:
        return self._current

    @source.setter
    def source(self, state: RemoteSource | None) -> None:
        self._current = state

    def set_source(self, image: np.ndarray) -> RemoteSource:
        """Send the portrait (resized to the model size, PNG) once; returns its handle with α_src."""
        crop = np.ascontiguousarray(resize(check_rgb(image, "source image"), self.size))
        self._adopt()
        src = RemoteSource(crop, torch.zeros(1, self.basis.shape[1]))
        conn = self._conn
        if conn is not None:
            try:
                src.id, src.alpha = self._upload(conn, self.session, crop)
            except _Refused as e:
                self._lost(e)
        self._sources.append(src)
        self._current = src
        if self._last_image is None:
            self._last_image = to_model(crop)  # until the first frame comes back: the portrait itself
        return src

    def warm_up(self) -> None:
        """Nothing to warm up here: the server warmed its backend up on its model thread when it started."""

    def require_source(self) -> RemoteSource:
        if self._current is None:
            raise RuntimeError("RemoteAnimator.set_source(image) must be called before motion()/render()")
        return self._current

    def set_reference(self, frame) -> None:
        self.alpha_ref = None if frame is None else self.motion(frame if isinstance(frame, torch.Tensor)
                                                                 else to_tensor(frame, self.size))

    @property
    def relative(self) -> bool:
        return self.alpha_ref is not None

    def motion(self, img: torch.Tensor) -> torch.Tensor | None:
        """α (1, M) of a face crop (1, 3, S, S) in [-1, 1]; the crop is also animated with the last plan.

        With ``inflight`` N > 1 the crop is sent and the reply to the crop sent N − 1 calls ago is returned
        (the output lags N − 1 frames); the first N − 1 calls return None (no motion yet: the controller
        holds) and show the last picture."""
        src = self.require_source()
        self._adopt()
        self._pending = None
        header: dict = {"t": "step", "source": src.id, "render": self._spec}
        if self._spec["ref"] == STORED and not self._server_has_ref:
            header["set_ref"] = self._ref_values
        seq = self._send(header, encode_image(to_uint8(img), self.codec, self.quality)) \
            if src.id is not None else None
        if seq is None:
            return self._held_alpha()
        self._server_has_ref = self._server_has_ref or "set_ref" in header
        self._queue.append((seq, self._spec))
        if len(self._queue) < self.inflight:  # filling the pipe: no motion yet (as if no face), the last picture
            self._pending = _Pending(torch.zeros(0), {}, self._held_image(), hold=True)
            return None
        oldest, spec = self._queue.popleft()
        got = self._receive(oldest)
        if got is None:
            return self._held_alpha()
        reply, data = got
        alpha = torch.tensor([reply["alpha"]], dtype=torch.float32)
        image = to_model(decode_image(data, self.size)) if data else None
        self._pending = _Pending(alpha, spec, image)
        self._last_alpha = alpha
        return alpha

    def render(self, alpha: torch.Tensor | None, alpha_ref=_OWN, power: float | None = None,
               offset: torch.Tensor | None = None) -> torch.Tensor:
        """The animated crop (1, 3, S, S) for these arguments (see :meth:`lia_live.animator.Animator.latent`)."""
        src = self.require_source()
        self._adopt()
        ref = self.alpha_ref if alpha_ref is _OWN else alpha_ref
        power = self.motion_power if power is None else float(power)
        pending, self._pending = self._pending, None
        if pending is not None and pending.hold:
            assert pending.image is not None
            return pending.image
        plan, set_ref = self._describe(alpha, ref, power, offset, None if pending is None else pending.alpha)
        if pending is not None and pending.image is not None and plan == pending.plan and set_ref is None:
            self._spec = plan
            return self._keep(pending.image)
        explicit = {**plan, "alpha": None if alpha is None else floats(alpha),
                    "ref": floats(ref) if plan["ref"] == FRAME else plan["ref"]}
        header: dict = {"t": "step", "source": src.id, "render": explicit}
        if set_ref is not None:
            header["set_ref"] = set_ref
        got = self._request(header) if src.id is not None else None
        if got is None:
            self.held_frames += 1
            return self._held_image()
        if set_ref is not None:
            self._ref_values, self._server_has_ref = set_ref, True
        self._spec = {**plan, "alpha": FRAME}
        return self._keep(to_model(decode_image(got[1], self.size)))

    def step(self, frame: np.ndarray) -> np.ndarray:
        """Animate with one driving frame (RGB uint8) → RGB uint8 at the model size (the Animator's step)."""
        return from_tensor(self.render(self.motion(to_tensor(frame, self.size))))[0]

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _describe(self, alpha, ref, power: float, offset, frame_alpha) -> tuple[dict, list[float] | None]:
        """The plan for these arguments (α/reference as FRAME when they are this frame's α) and the reference
        to store first (None when the server already has it)."""
        is_frame = frame_alpha is not None and alpha is not None and (alpha is frame_alpha
                                                                      or torch.equal(alpha, frame_alpha))
        a = FRAME if is_frame else None if alpha is None else "explicit"
        set_ref = None
        if ref is None:
            r = None
        elif frame_alpha is not None and (ref is frame_alpha or torch.equal(ref, frame_alpha)):
            r = FRAME
        else:
            r, values = STORED, floats(ref)
            if values != self._ref_values or not self._server_has_ref:
                set_ref = values
        off = None if offset is None or not bool(offset.any()) else floats(offset)
        return {"alpha": a, "ref": r, "power": float(power), "offset": off}, set_ref

    def _keep(self, image: torch.Tensor) -> torch.Tensor:
        self._last_image = image
        return image

    def _held_alpha(self) -> torch.Tensor:
        if self._last_alpha is not None:
            return self._last_alpha.clone()
        return self.require_source().alpha.clone()

    def _held_image(self) -> torch.Tensor:
        assert self._last_image is not None
        return self._last_image

    def stats(self) -> dict:
        """Recent round-trip and server times (ms), round trips, reconnections, frames held while away."""
        rtt, srv = list(self.rtt_ms), list(self.server_ms)
        return {"rtt_ms": round(sum(rtt) / len(rtt), 3) if rtt else None,
                "server_ms": round(sum(srv) / len(srv), 3) if srv else None,
                "round_trips": self.round_trips, "reconnects": self.reconnects, "held_frames": self.held_frames,
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "connected": self._conn is not None or self._fresh is not None}

    def line(self) -> str:
        s = self.stats()
        if not s["connected"]:
            return "remote: server lost, holding the last frame"
        if s["rtt_ms"] is None:
            return "remote: connected"
        return f"remote: rtt {s['rtt_ms']:.1f} ms | server {s['server_ms']:.1f} ms"


class _Refused(Exception):
    pass
