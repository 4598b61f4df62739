"""A user-space ``tc netem``: delay and loss for real packets, through the kernel's NFQUEUE (nfnetlink_queue).

For kernels without ``sch_netem`` (this project's CI and dev boxes). iptables rules send packets to a queue
(``-j NFQUEUE --queue-num N``); :class:`Netem` binds that queue over a netlink socket (pure Python, no
libnetfilter_queue), holds every packet for ``delay`` seconds and then accepts it — in arrival order — or drops
it with probability ``loss`` (one seeded RNG per netfilter hook, so each direction's drop pattern depends only
on the seed and that direction's packet count). Packets are seen after the kernel's GSO segmentation, one
wire-sized packet at a time, as netem sees them.

Stdlib only, so it runs as a script in a network namespace without importing the package (no torch):
``ip netns exec NS python lia_live/remote/nfqueue.py --queue 0 --delay-ms 20 --loss 0.01 --seed 1`` prints
``ready`` once bound and, on SIGTERM/SIGINT, one JSON line of counts (and the drops' times). Needs CAP_NET_ADMIN
(root); as a script it also asks for SCHED_FIFO so that a busy machine delays its verdicts less.

Protocol (linux/netfilter/nfnetlink_queue.h, linux/netfilter/nfnetlink.h): netlink messages of type
``NFNL_SUBSYS_QUEUE << 8 | msg`` carry a ``struct nfgenmsg`` (family, version, big-endian queue number) and
netlink attributes. CONFIG binds the queue (NFQA_CFG_CMD) and sets the copy mode (NFQA_CFG_PARAMS: metadata
only); each PACKET message holds NFQA_PACKET_HDR (big-endian packet id, hw protocol, hook); a VERDICT message
answers one id with NFQA_VERDICT_HDR (big-endian verdict, id). Verdicts may come in any order.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META = 1
NF_DROP, NF_ACCEPT = 0, 1
HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version (NFNETLINK_V0), resource id = queue number (big-endian)
_NLATTR = struct.Struct("=HH")  # length, type (host order)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(data), kind) + data
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def _attrs(data: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, i)
        if length < _NLATTR.size:
            break
        out[kind & 0x3FFF] = data[i + _NLATTR.size:i + length]  # without the NESTED / BYTEORDER flags
        i += _align(length)
    return out


class NetlinkError(OSError):
    pass


class Netem:
    """Hold each packet of NFQUEUE ``queue`` for ``delay`` s, then accept it in order, or drop it (``loss``).

    ``start()`` binds the queue and runs the verdict loop in a thread; ``run()`` runs it in the caller until
    :meth:`stop`. The socket is opened in the calling thread's network namespace."""

    def __init__(self, queue: int = 0, delay: float = 0.020, loss: float = 0.0, seed: int = 0,
                 maxlen: int = 4096):
        if not 0.0 <= loss <= 1.0 or delay < 0:
            raise ValueError(f"need 0 <= loss <= 1 and delay >= 0, got loss {loss}, delay {delay}")
        self.queue, self.delay, self.loss, self.seed, self.maxlen = int(queue), float(delay), float(loss), seed, maxlen
        self._rngs: dict[int, random.Random] = {}
        self._held: deque[tuple[float, int]] = deque()  # (due, packet id), due ascending (fixed delay)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.counts: dict[str, dict[str, int]] = {}  # hook name → {"packets", "dropped"}
        self.max_hold_s = 0.0  # the longest a packet was held (the delay plus this loop's lateness)
        self.drops: list[tuple[float, str, int]] = []  # (time.monotonic(), hook, packet number in that hook)

    # ---- netlink -------------------------------------------------------------------------------------------
    def _message(self, msg: int, payload: bytes, flags: int = NLM_F_REQUEST) -> bytes:
        self._seq += 1
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, self.queue) + payload
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), NFNL_SUBSYS_QUEUE << 8 | msg, flags, self._seq, 0) + body

    def _config(self, payload: bytes) -> None:
        """Send one CONFIG message and wait for the kernel's acknowledgement (raise its error)."""
        assert self._sock is not None
        self._sock.send(self._message(NFQNL_MSG_CONFIG, payload, NLM_F_REQUEST | NLM_F_ACK))
        want = self._seq
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if not select.select([self._sock], [], [], 0.2)[0]:
                continue
            data = self._sock.recv(65536)
            for kind, seq, body in self._split(data):
                if kind == NLMSG_ERROR and seq == want:
                    (errno,) = struct.unpack_from("=i", body)
                    if errno:
                        raise NetlinkError(-errno, f"nfnetlink_queue config refused (queue {self.queue})")
                    return
        raise NetlinkError(f"no answer from nfnetlink_queue (queue {self.queue})")

    @staticmethod
    def _split(data: bytes):
        i = 0
        while i + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, i)
            if length < _NLMSGHDR.size:
                break
            yield kind, seq, data[i + _NLMSGHDR.size:i + length]
            i += _align(length)

    def open(self) -> None:
        """Bind the queue (metadata only: the payload stays in the kernel)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            sock.bind((0, 0))
            self._sock = sock
            self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_META))
                         + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", self.maxlen)))
        except BaseException:
            sock.close()
            self._sock = None
            raise

    def _verdict(self, packet_id: int, verdict: int) -> None:
        assert self._sock is not None
        self._sock.send(self._message(NFQNL_MSG_VERDICT, _attr(NFQA_VERDICT_HDR,
                                                                struct.pack("!II", verdict, packet_id))))

    # ---- the loop ------------------------------------------------------------------------------------------
    def _on_packet(self, body: bytes, now: float) -> None:
        attrs = _attrs(body[_NFGENMSG.size:])
        hdr = attrs.get(NFQA_PACKET_HDR)
        if hdr is None or len(hdr) < 7:
            return
        packet_id, _proto, hook = struct.unpack_from("!IHB", hdr)
        name = HOOKS.get(hook, str(hook))
        count = self.counts.setdefault(name, {"packets": 0, "dropped": 0})
        count["packets"] += 1
        rng = self._rngs.get(hook)
        if rng is None:
            rng = self._rngs[hook] = random.Random(f"{self.seed}/{name}")
        if self.loss > 0 and rng.random() < self.loss:
            count["dropped"] += 1
            if len(self.drops) < 10000:
                self.drops.append((now, name, count["packets"] - 1))
            self._verdict(packet_id, NF_DROP)
        else:
            self._held.append((now + self.delay, packet_id))

    def _release(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            due, packet_id = self._held.popleft()
            self.max_hold_s = max(self.max_hold_s, now - due + self.delay)
            self._verdict(packet_id, NF_ACCEPT)

    def run(self) -> None:
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._release(now)
                wait = min(0.1, self._held[0][0] - now) if self._held else 0.1
                if select.select([sock], [], [], max(0.0, wait))[0]:
                    data = sock.recv(1 << 16)
                    now = time.monotonic()
                    for kind, _seq, body in self._split(data):
                        if kind == NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET:
                            self._on_packet(body, now)
            for _due, packet_id in self._held:  # stopping: let what is held through
                self._verdict(packet_id, NF_ACCEPT)
            self._held.clear()
        finally:
            self.close()

    def start(self) -> Netem:
        self.open()
        self._thread = threading.Thread(target=self.run, daemon=True, name=f"netem-q{self.queue}")
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.stats()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.send(self._message(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD,
                                                                 struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0))))
            except OSError:
                pass
            sock.close()

    def stats(self) -> dict:
        return {"queue": self.queue, "delay_ms": self.delay * 1e3, "loss": self.loss, "seed": self.seed,
                "max_hold_ms": round(self.max_hold_s * 1e3, 3),
                "packets": sum(c["packets"] for c in self.counts.values()),
                "dropped": sum(c["dropped"] for c in self.counts.values()),
                "hooks": {k: dict(v) for k, v in self.counts.items()},
                "drops": [[round(t, 6), hook, n] for t, hook, n in self.drops]}


def drop_positions(seed: int, hook: str, loss: float, n: int) -> list[int]:
    """Which of a hook's first ``n`` packets (0-based) :class:`Netem` drops for this seed and loss."""
    rng = random.Random(f"{seed}/{hook}")
    return [i for i in range(n) if rng.random() < loss]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="user-space netem on an NFQUEUE (needs root and iptables rules)")
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--loss", type=float, default=0.0, help="drop probability per packet, 0..1")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    netem = Netem(a.queue, a.delay_ms / 1e3, a.loss, a.seed)
    try:
        netem.open()
    except OSError as e:
        print(f"netem: cannot bind NFQUEUE {a.queue}: {e}", file=sys.stderr)
        return 2
    try:  # a kernel netem runs in softirq: keep this one's timing close to it on a busy machine
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, lambda *_: netem._stop.set())
    signal.signal(signal.SIGINT, lambda *_: netem._stop.set())
    print("ready", flush=True)
    netem.run()
    print(json.dumps(netem.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
