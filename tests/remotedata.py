"""Helpers for the remote-mode tests: a served tiny model, portraits, driving frames, a paced capture."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lia_live.capture.base import Capture, Frame

ROOT = Path(__file__).resolve().parents[1]

TOKEN = "test-token"


def tiny_generator():
    from lia_live.model import Generator, GeneratorConfig

    torch.manual_seed(0)
    return Generator.from_config(GeneratorConfig(size=64, style_dim=64, motion_dim=8, channel_div=8)).eval()


@contextlib.contextmanager
def serving(gen, **cfg):
    """A RemoteServer for ``gen`` on a free loopback port, in a background thread; yields it."""
    from lia_live.animator import Animator
    from lia_live.remote import RemoteServer, ServeConfig

    server = RemoteServer(Animator(gen), ServeConfig(**{"port": 0, **cfg}), TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def address(server) -> str:
    host, port = server.address
    return f"{host}:{port}"


def portraits(astronaut: np.ndarray) -> list[np.ndarray]:
    """Four clearly different portraits (the astronaut, mirrored, inverted, channels swapped), 128²."""
    import cv2

    face = cv2.resize(np.ascontiguousarray(astronaut[0:300, 100:400]), (128, 128), interpolation=cv2.INTER_AREA)
    return [face, np.ascontiguousarray(face[:, ::-1]), 255 - face, np.ascontiguousarray(face[..., ::-1])]


def driving(face: np.ndarray, n: int, width: int = 96) -> list[np.ndarray]:
    """``n`` frames (width × 3/4 width) with ``face`` drifting and nodding (cheap; no tracker needed)."""
    import cv2

    h = width * 3 // 4
    face = cv2.resize(face, (h, h), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        m = np.float32([[1, 0, 6 * math.sin(i / 4.0)], [0, 1, 4 * math.cos(i / 5.0)]])
        moved = cv2.warpAffine(face, m, (h, h), borderMode=cv2.BORDER_REFLECT)
        frame = np.full((h, width, 3), 90, np.uint8)
        x = (width - h) // 2
        frame[:, x:x + h] = moved
        out.append(frame)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


class PacedCapture(Capture):
    """Frames from a list, cycled, one per ``period`` seconds until :meth:`end` is called; ``live``: like a
    camera (the pipeline keeps only the newest frame), else like a file (every frame, in order)."""

    live = False
    name = "paced"

    def __init__(self, frames: list[np.ndarray], period: float = 0.015, live: bool = False):
        self.frames, self.period, self.live = frames, period, live
        self.index = 0
        self._end = False
        self._next = time.perf_counter()

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._end:
            return None
        wait = self._next - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self._next = time.perf_counter() + self.period
        image = self.frames[self.index % len(self.frames)]
        frame = Frame(image, time.perf_counter(), self.index, self.index / 30.0)
        self.index += 1
        return frame

    def end(self) -> None:
        self._end = True

    @property
    def finished(self) -> bool:
        return self._end


class TimedCollect:
    """An output keeping every frame and when it was sent (for stalls between frames)."""

    def __init__(self):
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []

    def send(self, rgb: np.ndarray) -> None:
        self.frames.append(rgb.copy())
        self.times.append(time.perf_counter())

    def close(self) -> None:
        pass

    def gaps_ms(self) -> np.ndarray:
        return np.diff(np.asarray(self.times)) * 1e3


def live_cfg(png):
    """The remote tests' live settings: a 96×64 output, no crop, no virtual camera, no stats lines."""
    from lia_live.live import LiveConfig

    return LiveConfig(sources=(png,)).replace(output={"size": (96, 64), "vcam": False},
                                              motion={"crop": "none", "source_crop": "none"},
                                              run={"stats_every": 0})


def paced_run(png, anim, frames, period: float, live: bool = False):
    """Run the live loop on ``frames`` paced every ``period`` s (``live``: like a camera, ending after
    len(frames) periods; else every frame); returns (TimedCollect, stats)."""
    import threading

    from lia_live.live import run_live

    out = TimedCollect()
    cap = PacedCapture(frames, period=period, live=live)
    stopper = threading.Timer(period * len(frames), cap.end)  # live: the input ends after len(frames) periods
    if live:
        stopper.start()
    cfg = live_cfg(png) if live else live_cfg(png).replace(run={"max_frames": len(frames)})
    try:
        stats = run_live(cfg, capture=cap, animator=anim, extra_outputs=[out])
    finally:
        stopper.cancel()
    return out, stats


def start_server(ckpt, port: int, extra=(), prefix=()):
    """``lia-live serve`` in its own process; returns (process, port) once it printed its one line."""
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "lia_live.cli.live", "serve", "--checkpoint", str(ckpt),
                             "--device", "cpu", "--backend", "eager", "--port", str(port), "--token", TOKEN,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("lia-live: serving on ") and line.endswith(f", token {TOKEN}\n"), line
    return proc, int(line.split(":")[2].split(",")[0])


class NoNamespace(OSError):
    """Network namespaces cannot be made here (not root, no ``ip``, no kernel support): the only reason the
    network-namespace tests may skip (issue 22), also in CI."""


def _run_cmd(cmd: list[str], error=OSError) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise error(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")


@contextlib.contextmanager
def netns_link(name: str, qdisc: list[str] | None = None, subnet: tuple[str, str] = ("10.231.0.1", "10.231.0.2")):
    """A network namespace ``name`` joined to this one by a veth pair (``subnet[0]`` here, ``subnet[1]`` there,
    one /30), with ``tc qdisc add dev <end> root <qdisc...>`` on both ends
    when ``qdisc`` is given. Yields the ``ip netns exec`` prefix; raises :class:`NoNamespace` when the
    namespace or the veth pair cannot be made, OSError when the qdisc cannot. Removes both on the way out."""
    import shutil

    if shutil.which("ip") is None or (qdisc and shutil.which("tc") is None):
        raise NoNamespace("no ip/tc commands")
    if os.geteuid() != 0:
        raise NoNamespace("network namespaces need root")
    here, there = f"{name}a", f"{name}b"
    ns = ["ip", "netns", "exec", name]
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
             ["ip", "link", "set", there, "netns", name],
             ["ip", "addr", "add", f"{subnet[0]}/30", "dev", here], ["ip", "link", "set", here, "up"],
             [*ns, "ip", "addr", "add", f"{subnet[1]}/30", "dev", there],
             [*ns, "ip", "link", "set", there, "up"], [*ns, "ip", "link", "set", "lo", "up"]]
    try:
        for cmd in steps:
            _run_cmd(cmd, NoNamespace)
        if qdisc:
            _run_cmd(["tc", "qdisc", "add", "dev", here, "root", *qdisc])
            _run_cmd([*ns, "tc", "qdisc", "add", "dev", there, "root", *qdisc])
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@dataclass
class NetemLink:
    """A namespace behind the user-space netem (:func:`netem_link`): run servers with ``prefix`` on ``there``."""

    prefix: list[str]
    here: str
    there: str
    proc: subprocess.Popen
    stats: dict | None = None

    def finish(self) -> dict:
        """Stop the netem (it lets what it holds through) and return its counts (see Netem.stats)."""
        if self.stats is None:
            self.proc.terminate()
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
            self.stats = json.loads(lines[-1]) if lines else {"error": f"netem exited {self.proc.returncode}"}
        return self.stats


@contextlib.contextmanager
def netem_link(delay: float = 0.020, loss: float = 0.01, seed: int = 1, name: str | None = None):
    """:func:`netns_link` (no qdisc) with ``delay`` and ``loss`` in both directions by the user-space netem
    (lia_live/remote/nfqueue.py, run in the namespace): iptables there (the nft backend) sends everything that
    enters or leaves the namespace's veth end to NFQUEUE 0. So 2 × ``delay`` RTT, ``loss`` each way. Names and
    addresses are per process (parallel runs do not collide); the rules live and die with the namespace (none
    on the host). Raises NoNamespace, or OSError when iptables or the queue is missing."""
    import shutil
    import sys

    k = os.getpid() % 16384
    name = name or f"lq{os.getpid()}"  # + "a"/"b": at most 15 characters, a device name's limit
    here, there = (f"10.232.{k >> 6}.{(k & 63) * 4 + i}" for i in (1, 2))  # a /30 of its own
    with netns_link(name, subnet=(here, there)) as ns:
        iptables = shutil.which("iptables")
        if iptables is None:
            raise OSError("no iptables command (Debian/Ubuntu: apt-get install iptables; `make system-deps`)")
        proc = subprocess.Popen([*ns, sys.executable, str(ROOT / "lia_live" / "remote" / "nfqueue.py"),
                                 "--queue", "0", "--delay-ms", str(delay * 1e3), "--loss", str(loss),
                                 "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        link = NetemLink(ns, here, there, proc)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            if proc.stdout.readline() != "ready\n":
                proc.wait(10)
                raise OSError(f"the user-space netem did not start: {proc.stderr.read().strip()}")
            for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
                _run_cmd([*ns, iptables, "-A", chain, side, f"{name}b", "-j", "NFQUEUE", "--queue-num", "0"])
            yield link
        finally:
            link.finish()
