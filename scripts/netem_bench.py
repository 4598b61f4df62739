"""Remote mode through the user-space netem (40 ms RTT): the gap each lost packet costs (docs/remote.md).

Root only (a network namespace, iptables, NFQUEUE). The tiny 64² test model is served in a namespace behind
lia_live/remote/nfqueue.py; the live loop runs here with frames paced like a camera; one line of results.

  sudo PYTHONPATH=. .venv/bin/python scripts/netem_bench.py --loss 0.01 --seed 2 --inflight 2   # the test's run
  sudo PYTHONPATH=. .venv/bin/python scripts/netem_bench.py --drop-tail 6            # every 6th reply's tail lost
  sudo PYTHONPATH=. .venv/bin/python scripts/netem_bench.py --drop-tail 6 --twice    # ... and its retransmission
  add --stock-tcp to switch lia_live/remote/tcp.py's socket options off on both ends (A/B).

``--drop-tail N`` drops, instead of random loss, every Nth server-sent TCP segment of 100-1000 payload bytes
(every message here is two segments, 1448 B + the rest: that is the reply's tail) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lia_live" / "remote"))
import nfqueue  # noqa: E402  (by path: the child runs in the namespace without importing the package or torch)

STOCK = "import lia_live.remote.server as s; s.tune_socket = lambda sock: []; "  # its bound name


class TailDrop(nfqueue.Netem):
    """Drop every ``every``-th server-sent segment with 100-1000 payload bytes (and, ``twice``, the next
    segment of the same length: its retransmission); hold the rest ``delay`` s."""

    def __init__(self, every: int, twice: bool, delay: float):
        super().__init__(0, delay, 0.0, 0)
        self.every, self.twice, self.seen, self.again = every, twice, 0, -1

    def open(self) -> None:
        super().open()  # then copy the first 60 bytes of each packet: the IP and TCP headers
        self._config(nfqueue._attr(nfqueue.NFQA_CFG_PARAMS, struct.pack("!IB", 60, 2)))

    def _on_packet(self, body: bytes, now: float) -> None:
        attrs = nfqueue._attrs(body[4:])
        packet_id, _proto, hook = struct.unpack_from("!IHB", attrs[nfqueue.NFQA_PACKET_HDR])
        ip = attrs.get(10, b"")  # NFQA_PAYLOAD
        size = 0
        if len(ip) >= 40:
            ihl = (ip[0] & 15) * 4
            size = struct.unpack_from("!H", ip, 2)[0] - ihl - (ip[ihl + 12] >> 4) * 4
        name = nfqueue.HOOKS.get(hook, str(hook))
        count = self.counts.setdefault(name, {"packets": 0, "dropped": 0})
        count["packets"] += 1
        drop = False
        if hook == 3 and size and size == self.again:
            drop, self.again = True, -1
        elif hook == 3 and 100 < size <= 1000:
            self.seen += 1
            drop = self.seen % self.every == self.every // 2
            if drop and self.twice:
                self.again = size
        if drop:
            count["dropped"] += 1
            self.drops.append((now, name, size))
            self._verdict(packet_id, nfqueue.NF_DROP)
        else:
            self._held.append((now + self.delay, packet_id))


def child(a: argparse.Namespace) -> int:
    netem = TailDrop(a.drop_tail, a.twice, a.delay_ms / 1e3) if a.drop_tail else \
        nfqueue.Netem(0, a.delay_ms / 1e3, a.loss, a.seed)
    netem.open()
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: netem._stop.set())
    print("ready", flush=True)
    netem.run()
    print(json.dumps(netem.stats()), flush=True)
    return 0


def parent(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "tests"))  # the namespace and served-model helpers of the remote tests
    import cv2
    import numpy as np
    import torch
    from remotedata import TOKEN, NetemLink, driving, netns_link, paced_run, portraits, tiny_generator
    from skimage import data

    import lia_live.remote.link as link_module
    from lia_live.model.checkpoint import save_generator
    from lia_live.remote import RemoteAnimator

    torch.set_num_threads(1)
    if a.stock_tcp:
        link_module.tune_socket = lambda sock: []
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    face = portraits(np.ascontiguousarray(data.astronaut()))[0]
    png = work / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    ckpt = save_generator(tiny_generator(), work / "tiny.safetensors")
    name, here, there = f"lb{os.getpid()}", "10.233.0.1", "10.233.0.2"
    with netns_link(name, subnet=(here, there)) as ns:
        argv = [a2 for a2 in sys.argv[1:] if a2 != "--stock-tcp"]
        proc = subprocess.Popen([*ns, sys.executable, __file__, "--child", *argv], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
            subprocess.run([*ns, "iptables", "-A", chain, side, f"{name}b", "-j", "NFQUEUE", "--queue-num", "0"],
                           check=True)
        netem = NetemLink(ns, here, there, proc)
        serve = [*ns, sys.executable, "-c", (STOCK if a.stock_tcp else "") + "import sys; from lia_live.cli.live "
                 "import main; sys.exit(main(sys.argv[1:]))", "serve", "--checkpoint", str(ckpt), "--device", "cpu",
                 "--backend", "eager", "--port", "0", "--token", TOKEN, "--host", there]
        server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline().split(":")[2].split(",")[0])
            anim = RemoteAnimator(f"{there}:{port}", TOKEN, inflight=a.inflight, say=lambda line: None)
            try:
                out, stats = paced_run(png, anim, driving(face, a.frames), period=1 / a.fps, live=True)
            finally:
                anim.close()
        finally:
            server.kill()
            server.wait()
        net = netem.finish()
    times = np.asarray(out.times) + time.monotonic() - time.perf_counter()  # the netem's clock
    gaps = np.diff(times) * 1e3
    per_loss = [round(float(gaps[i - 1])) for t, _h, _n in net["drops"]
                if 0 < (i := int(np.searchsorted(times, t))) < len(times)]
    print(json.dumps({"tcp": "stock" if a.stock_tcp else "tuned", "inflight": a.inflight, "load": os.getloadavg()[0],
                      "frames": stats["frames"], "max_gap_ms": round(float(gaps.max())),
                      "median_gap_ms": round(float(np.median(gaps))), "gap_after_each_loss_ms": per_loss,
                      "rtt_ms": stats["remote_ms_mean"]["rtt"], "server_ms": anim.stats()["server_ms"],
                      "latency_ms": round(stats["latency_ms_mean"] + (a.inflight - 1) * 1000 / a.fps, 1),
                      "dropped": net["dropped"], "packets": net["packets"]}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--delay-ms", type=float, default=20.0, help="each way")
    p.add_argument("--drop-tail", type=int, default=0, metavar="N", help="drop every Nth reply tail instead")
    p.add_argument("--twice", action="store_true", help="with --drop-tail: its retransmission too")
    p.add_argument("--inflight", type=int, default=1)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--stock-tcp", action="store_true", help="without lia_live/remote/tcp.py's socket options")
    p.add_argument("--work", default="/tmp/netem_bench")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    return child(a) if a.child else parent(a)


if __name__ == "__main__":
    sys.exit(main())
