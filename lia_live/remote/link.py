"""The client's connection to a ``lia-live serve`` server: numbered requests answered in order, accounting, loss
and reconnection (the network half of :class:`~lia_live.remote.client.RemoteAnimator`).

Two threads may send (the live loop's tracking thread sends face crops ahead, the model thread everything
else: :attr:`Link._io` serialises them); only the model thread receives and adopts a new connection. Replies
come in request order; a reply that is read while waiting for a later one is kept for its caller, one nobody
wants any more is dropped.

Loss: a send that fails or a reply later than ``timeout`` marks the server lost; the client says so once and a
background thread reconnects (re-sending the portraits) until the server is back; the model thread adopts the
new connection between two frames (:meth:`Link._adopt`).
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

from .protocol import TOKEN_CLOSE, ProtocolError, client_ssl, close_reason, encode_image, pack, server_uri, unpack
from .tcp import tune_socket

RETRY_SECONDS = 0.5


@dataclass
class RemoteSource:
    """The client's handle on a portrait encoded by the server (the Animator's SourceState stand-in)."""

    crop: np.ndarray  # RGB uint8 (S, S, 3): re-sent after a reconnection
    alpha: torch.Tensor  # (1, M) α_src
    id: int | None = None  # the server's id on the current connection


class Refused(Exception):
    """The server cannot be used (unreachable, wrong token, not a lia-live server, refused a portrait)."""


class Link:
    """The connection, its requests and its statistics (see the module docstring)."""

    def __init__(self, address: str, token: str, *, ca: Path | None, codec: str, quality: int, timeout: float,
                 say: Callable[[str], None]):
        self.uri = server_uri(address, tls=ca is not None)
        self.token, self.codec, self.quality, self.timeout, self.say = token, codec, int(quality), timeout, say
        self._ssl = client_ssl(self.uri, ca)
        self.rtt_ms: deque = deque(maxlen=240)
        self.server_ms: deque = deque(maxlen=240)
        self.round_trips = self.reconnects = self.held_frames = 0
        self.bytes_sent = self.bytes_received = 0
        self.timer = None  # a StageTimer (attach_timer): round trips and server times go into the live stats
        self._sources: list[RemoteSource] = []
        self._server_has_ref = False
        self._seq = 0
        self._gen = 0  # which connection: bumped on each reconnection (requests of an old one are never answered)
        self._sent: dict[int, tuple[float, int]] = {}  # seq → (send time, bytes) until its reply is read
        self._early: dict[int, tuple[dict, bytes]] = {}  # replies read while waiting for a later one
        self._unwanted: set[int] = set()  # requests whose replies nobody will take (dropped on arrival)
        self._io = threading.RLock()  # sending: sequence numbers, the connection in use, adoption
        self._lock = threading.Lock()  # swapping the connection (loss, reconnection)
        self._closed = threading.Event()
        self._reconnecting: threading.Thread | None = None
        self._fresh: tuple | None = None  # (connection, session, source ids) made by the reconnection thread
        self._conn, self.session, self.info = self._connect()

    # ---- connecting ------------------------------------------------------------------------------------------
    def _connect(self):
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        try:
            conn = connect(self.uri, ssl=self._ssl, open_timeout=max(1.0, self.timeout), close_timeout=0.5,
                           compression=None, max_size=16 * 1024 * 1024)
            conn = conn.__enter__()  # long-lived: closed by close()/_lost() (websockets >= 17.1 warns otherwise)
            tune_socket(conn.socket)  # shorter TCP timeouts when a repair is lost (tcp.py)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise Refused(f"cannot reach the lia-live server at {self.uri}: {e}") from None
        try:
            conn.send(pack({"t": "hello", "v": 1, "token": self.token, "codec": self.codec,
                            "quality": self.quality}))
            header, payload = unpack(conn.recv(timeout=max(1.0, self.timeout)))
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            raise Refused(close_reason(self.uri, code)) from None
        except (OSError, TimeoutError, ProtocolError) as e:
            conn.close()
            raise Refused(f"the lia-live server at {self.uri} did not answer: {e}") from None
        if header["t"] != "welcome":
            conn.close()
            raise Refused(close_reason(self.uri, TOKEN_CLOSE if header.get("code") == "token" else None))
        try:
            m, d = int(header["motion_dim"]), int(header["latent_dim"])
            header["basis"] = torch.from_numpy(np.frombuffer(payload, np.float32).copy().reshape(d, m))
            int(header["size"])
        except (KeyError, TypeError, ValueError):
            conn.close()
            raise Refused(f"{self.uri} answered, but not as a lia-live server") from None
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

    # ---- requests --------------------------------------------------------------------------------------------
    def _send(self, header: dict, payload: bytes = b"") -> int | None:
        """Send one request on the current connection; its sequence number, or None (and reconnection)."""
        from websockets.exceptions import ConnectionClosed

        with self._io:
            conn = self._conn
            if conn is None:
                return None
            self._seq += 1
            seq = self._seq
            message = pack({**header, "session": self.session, "seq": seq}, payload)
            # before the send: the reply may be read (by the model thread) before send() returns here
            self._sent[seq] = (time.perf_counter(), len(message))
            try:
                conn.send(message)
            except (ConnectionClosed, OSError) as e:
                self._sent.pop(seq, None)
                self._lost(e)
                return None
            return seq

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
            if reply.get("t") == "result":
                self._account(time.perf_counter() - t0, float(reply.get("server_ms", 0.0)) / 1e3, sent, len(raw))
            if got in self._unwanted:
                self._unwanted.discard(got)
            else:
                self._early[got] = (reply, data)
        return self._early.pop(seq)

    def _request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytes] | None:
        """One round trip (after the replies of any requests still in flight)."""
        seq = self._send(header, payload)
        return None if seq is None else self._receive(seq)

    def _forget(self, seq: int) -> None:
        """Nobody will take the reply to ``seq`` (a crop sent ahead whose frame the live loop dropped)."""
        if self._early.pop(seq, None) is None and seq in self._sent:
            self._unwanted.add(seq)

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

    # ---- loss and reconnection -------------------------------------------------------------------------------
    def _lost(self, why: BaseException) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
        conn.close()
        self._forget_all()
        reason = f"{type(why).__name__}: {why}" if str(why) else type(why).__name__
        self.say(f"remote: lost the server at {self.uri} ({reason}); holding the last frame and reconnecting")
        if not self._closed.is_set() and (self._reconnecting is None or not self._reconnecting.is_alive()):
            self._reconnecting = threading.Thread(target=self._reconnect, name="remote-reconnect", daemon=True)
            self._reconnecting.start()

    def _forget_all(self) -> None:
        """The connection is gone: no reply in flight will come."""
        self._sent.clear()
        self._early.clear()
        self._unwanted.clear()

    def _reconnect(self) -> None:
        said: set[str] = set()
        while not self._closed.wait(RETRY_SECONDS):
            try:
                conn, session, info = self._connect()
                if (int(info["size"]), tuple(info["basis"].shape)) != (self.size, tuple(self.basis.shape)):
                    conn.close()
                    raise Refused(f"the server at {self.uri} came back with another model; restart lia-live")
                ids = [self._upload(conn, session, src.crop)[0] for src in list(self._sources)]
            except Refused as e:
                if str(e) not in said and "cannot reach" not in str(e):
                    said.add(str(e))
                    self.say(f"remote: {e}")
                continue
            with self._lock:
                self._fresh = (conn, session, ids)
            self.say(f"remote: the server at {self.uri} is back; animating again")
            return

    def _adopt(self) -> None:
        """Take over a connection the reconnection thread made (before a request is built, so source ids and the
        stored reference always belong to the connection they are sent on)."""
        with self._io:
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
            except Refused as e:
                self._conn = conn
                self._lost(e)
                return
            self._forget_all()
            self._conn, self.session, self._server_has_ref = conn, session, False
            self._gen += 1
            self.reconnects += 1

    def _upload(self, conn, session: str, crop: np.ndarray) -> tuple[int, torch.Tensor]:
        """A portrait sent on a connection with nothing in flight (a new one): (its id, α_src)."""
        from websockets.exceptions import ConnectionClosed

        try:
            conn.send(pack({"t": "source", "session": session}, encode_image(crop, "png")))
            header, _ = unpack(conn.recv(timeout=max(5.0, self.timeout)))
        except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as e:
            raise Refused(f"the server at {self.uri} failed while receiving a portrait: {e}") from None
        return _source_reply(self.uri, header)

    def _upload_here(self, crop: np.ndarray) -> tuple[int, torch.Tensor] | None:
        """A portrait sent on the current connection, behind any requests in flight; None if the server is lost."""
        seq = self._send({"t": "source"}, encode_image(crop, "png"))
        got = None if seq is None else self._receive(seq)
        return None if got is None else _source_reply(self.uri, got[0])

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

    size: int
    basis: torch.Tensor


def _source_reply(uri: str, header: dict) -> tuple[int, torch.Tensor]:
    if header.get("t") != "source":
        raise Refused(f"the server at {uri} refused a portrait")
    return int(header["id"]), torch.tensor([header["alpha"]], dtype=torch.float32)
