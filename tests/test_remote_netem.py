"""Remote mode over a real lossy, slow link: a veth pair into a network namespace, delay and loss by the user-space
netem (lia_live/remote/nfqueue.py on an NFQUEUE; this kernel has no ``sch_netem`` for ``tc netem``).

These tests skip only where network namespaces cannot be made (not root, no ``ip``); a missing ``iptables`` or
NFQUEUE skips on a developer's machine and fails in CI (CI set), like the browser tests without Chromium.
"""

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from remotedata import (
    TOKEN,
    NoNamespace,
    driving,
    netem_link,
    paced_run,
    portraits,
    start_server,
    tiny_generator,
)

from lia_live.remote import RemoteAnimator
from lia_live.remote.nfqueue import drop_positions

pytestmark = pytest.mark.usefixtures("one_thread")

ECHO = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data + struct.pack("!d", time.monotonic()), peer)
"""


@pytest.fixture
def netem():
    """``netem(delay=, loss=, seed=)`` → a NetemLink (the previous one is removed first: names and addresses
    are per process); everything (netem, rules, namespace, veth) is removed at the end, passed or failed."""
    stacks: list[contextlib.ExitStack] = []

    def make(**kw):
        while stacks:
            stacks.pop().close()
        stack = contextlib.ExitStack()
        stacks.append(stack)
        try:
            return stack.enter_context(netem_link(**kw))
        except NoNamespace as e:
            pytest.skip(f"no network namespace can be made here ({e})")
        except OSError as e:
            if os.environ.get("CI"):
                pytest.fail(f"the netem tests must run in CI: {e}")
            pytest.skip(f"no user-space netem here ({e})")

    try:
        yield make
    finally:
        while stacks:
            stacks.pop().close()


class _FakeNetlink:
    """Stands in for the netlink socket: keeps what the netem sends."""

    def __init__(self):
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def _packet_message(packet_id: int, hook: int, queue: int = 3) -> bytes:
    """A NFQNL_MSG_PACKET as the kernel builds it (linux/netfilter/nfnetlink_queue.h), written out by hand:
    nlmsghdr, nfgenmsg (AF_INET, v0, queue big-endian), NFQA_PACKET_HDR (id, hw protocol, hook), NFQA_MARK."""
    hdr = struct.pack("!IHB", packet_id, 0x0800, hook)
    attrs = struct.pack("=HH", 4 + len(hdr), 1) + hdr + b"\0" + struct.pack("=HH", 8, 3) + struct.pack("!I", 0)
    body = struct.pack("!BBH", socket.AF_INET, 0, queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), 3 << 8 | 0, 0, 0, 0) + body


def test_netem_verdicts_are_nfnetlink_messages_in_order_after_the_delay():
    """No root needed: packets parsed from hand-built kernel messages; after the delay each id gets an
    NFQNL_MSG_VERDICT (type 3 << 8 | 1) for its queue with NFQA_VERDICT_HDR {NF_ACCEPT, id}, in arrival order;
    the dropped ones get NF_DROP at once, exactly as drop_positions() says for the seed."""
    from lia_live.remote.nfqueue import Netem

    netem = Netem(queue=3, delay=0.020, loss=0.3, seed=9)
    fake = netem._sock = _FakeNetlink()
    for i in range(20):
        for _kind, _seq, body in netem._split(_packet_message(100 + i, hook=1 if i % 2 else 3)):
            netem._on_packet(body, now=10.0 + i * 0.001)
    verdicts = []
    netem._release(10.0195)  # the first packet is due at 10.020: only the drops were answered yet
    early = len(fake.sent)
    netem._release(10.0385)  # all but the last (due at 10.039)
    assert len(fake.sent) == 19
    netem._release(10.05)
    for raw in fake.sent:
        length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", raw)
        family, version, queue = struct.unpack_from("!BBH", raw, 16)
        alen, atype = struct.unpack_from("=HH", raw, 20)
        verdict, packet_id = struct.unpack_from("!II", raw, 24)
        assert (length, kind, flags & 1, family, version, queue, alen, atype) == (32, 3 << 8 | 1, 1, 0, 0, 3, 12, 2)
        verdicts.append((packet_id, verdict))
    drops = {100 + 2 * k + 1 for k in drop_positions(9, "input", 0.3, 10)} | {
        100 + 2 * k for k in drop_positions(9, "output", 0.3, 10)}
    assert drops and early == len(drops)
    assert verdicts[:early] == [(i, 0) for i in sorted(drops)]  # NF_DROP at once, in arrival order
    assert verdicts[early:] == [(100 + i, 1) for i in range(20) if 100 + i not in drops]  # NF_ACCEPT, in order
    assert netem.stats()["hooks"] == {"output": {"packets": 10, "dropped": len(drop_positions(9, "output", 0.3, 10))},
                                      "input": {"packets": 10, "dropped": len(drop_positions(9, "input", 0.3, 10))}}


def _ping(there: str, n: int, timeout: float) -> dict[int, tuple[float, float]]:
    """``n`` UDP pings to the echo at ``there``, one at a time: {index: (up ms, down ms)} of those answered."""
    got = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            s.sendto(struct.pack("!Id", i, time.monotonic()), (there, 9999))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(64)
                except TimeoutError:
                    break
                j, sent, echoed = struct.unpack("!Idd", data)
                if j == i:
                    got[i] = ((echoed - sent) * 1e3, (time.monotonic() - echoed) * 1e3)
                    break
    return got


def test_user_space_netem_delays_each_way_and_drops_by_the_seed(netem):
    """UDP pings through the netem (20 ms, 15 % loss each way): every answered ping took ≥ 20 ms out and ≥ 20 ms
    back (one clock: CLOCK_MONOTONIC), and exactly the pings the seed says were lost (requests are the
    namespace's input packets, replies its output packets, each direction with its own seeded RNG)."""
    n, loss, seed = 30, 0.15, 5
    link = netem(delay=0.020, loss=loss, seed=seed)
    echo = subprocess.Popen([*link.prefix, sys.executable, "-c", ECHO, link.there], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline() == "ready\n"
        got = _ping(link.there, n, timeout=0.25)
    finally:
        echo.kill()
        echo.wait()
    stats = link.finish()
    lost_in = set(drop_positions(seed, "input", loss, n))
    lost_out = set(drop_positions(seed, "output", loss, n))
    want, replies = set(), 0
    for i in range(n):
        if i in lost_in:
            continue
        if replies not in lost_out:
            want.add(i)
        replies += 1
    assert lost_in and lost_out & set(range(replies))  # the seed drops in both directions
    assert set(got) == want, (sorted(got), sorted(want))
    assert stats["hooks"] == {"input": {"packets": n, "dropped": len(lost_in)},
                              "output": {"packets": replies, "dropped": len(lost_out & set(range(replies)))}}
    up, down = np.array([v[0] for v in got.values()]), np.array([v[1] for v in got.values()])
    assert up.min() >= 20.0 and down.min() >= 20.0, (up, down)
    assert np.median(up) < 40.0 and np.median(down) < 40.0, (up, down)  # held once, not twice


def _lossy_run(netem, png, ckpt, face):
    """One run: serve in the namespace, 60 frames at 15 fps, two in flight; (measured dict, output, anim)."""
    link = netem(delay=0.020, loss=0.01, seed=2)
    proc, port = start_server(ckpt, 0, extra=("--host", link.there), prefix=link.prefix)
    try:
        anim = RemoteAnimator(f"{link.there}:{port}", TOKEN, inflight=2)
        try:
            out, stats = paced_run(png, anim, driving(face, 60), period=1 / 15, live=True)
        finally:
            anim.close()
    finally:
        proc.kill()
        proc.wait()
    net = link.finish()
    clock = time.monotonic() - time.perf_counter()  # the netem's drop times are CLOCK_MONOTONIC
    first, last = out.times[0] + clock, out.times[-1] + clock
    streaming = [t for t, _hook, _n in net["drops"] if first < t < last]
    after = [f for f, t in zip(out.frames, out.times) if streaming and t + clock > streaming[-1]]
    m = {"frames": stats["frames"], "collected": len(out.frames), "max_gap": float(out.gaps_ms().max()),
         "rtt": stats["remote_ms_mean"]["rtt"],  # network RTT + the server's time
         "latency": stats["latency_ms_mean"] + 1000 / 15,  # two in flight: the face shown is one frame older
         "dropped": net["dropped"], "packets": net["packets"], "streaming_drops": len(streaming),
         "after": len(after), "animating_after": any(not np.array_equal(a, b) for a, b in zip(after, after[1:])),
         "server_ms": anim.stats()["server_ms"], "reconnects": anim.reconnects, "held": anim.held_frames}
    return m


def _meets_targets(m: dict) -> bool:
    return (m["frames"] == m["collected"] >= 40 and m["rtt"] >= 40.0 and m["max_gap"] <= 200.0
            and m["latency"] <= m["rtt"] + 2 * 1000 / 15)


@pytest.mark.slow  # a server process in a network namespace (torch import): ~7 s a run
def test_netem_40ms_rtt_1pct_loss(netem, astronaut, tmp_path):
    """40 ms RTT and 1 % loss each way (user-space netem, real TCP), frames paced at 15 fps like a camera, two
    frames in flight (``--remote-inflight 2``, what docs/remote.md advises for tens of ms RTT): no stall over
    200 ms between output frames, capture → display latency (the stats' capture → send plus the one frame of
    lag) within the round trip + 2 frames, and the output recovers: packets were really lost while frames
    streamed, animated frames kept coming after the last loss, with no reconnection and no held frame.

    The seeded 1 % loss drops, for seed 2, the 37th, 48th, 83rd, 103rd and 111th packets the server sends and
    the 55th and 127th it receives: ~2 % of the ~190 packets each way of a 4 s run, a hard sample of 1 %. A
    lost reply tail waits for Linux's tail-loss probe (~2 RTT); see scripts/netem_bench.py and docs/remote.md.
    Measured on 2 busy cores: max gap 169-179 ms at load ~2, 176-200 ms at load 3.4-7.7; 55-59 frames.

    Wall time on purpose, so a CPU starved by other jobs stretches the gaps whatever the network does: a run
    whose mean round trip passes 90 ms (75-80 ms at moderate load; the server's step then takes 33-130 ms
    instead of ~25) is repeated, at most twice; a run that is not starved, and the last one, must meet every
    target."""
    from lia_live.model.checkpoint import save_generator

    face = portraits(astronaut)[0]
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    ckpt = save_generator(tiny_generator(), tmp_path / "tiny.safetensors")
    for attempt in range(3):
        m = _lossy_run(netem, png, ckpt, face)
        print(f"netem run {attempt + 1}: {m}")
        if _meets_targets(m) or m["rtt"] <= 90.0:
            break
    assert m["frames"] == m["collected"] >= 40 and m["rtt"] >= 40.0, m
    assert m["latency"] <= m["rtt"] + 2 * 1000 / 15, m  # capture → display: the round trip + 2 frames at most
    assert m["max_gap"] <= 200.0, m  # no stall
    assert m["streaming_drops"] >= 2 and m["dropped"] >= m["streaming_drops"], m  # losses while streaming ...
    assert m["after"] >= 3 and m["animating_after"], m  # ... and animated frames after the last one
    assert m["reconnects"] == 0 and m["held"] == 0, m  # repaired by TCP, not by a reconnection
