"""Helpers for the remote-mode tests: a served tiny model, portraits, driving frames, a paced capture."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from lia_live.capture.base import Capture, Frame

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


@contextlib.contextmanager
def netns_link(name: str, qdisc: list[str]):
    """A network namespace ``name`` joined to this one by a veth pair (10.231.0.1 here, 10.231.0.2 there), with
    ``tc qdisc add dev <end> root <qdisc...>`` on both ends. Yields the ``ip netns exec`` prefix; raises
    OSError with the reason when namespaces or the qdisc cannot be made (the caller skips)."""
    import shutil
    import subprocess

    if shutil.which("ip") is None or shutil.which("tc") is None:
        raise OSError("no ip/tc commands")
    here, there = f"{name}a", f"{name}b"
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
             ["ip", "link", "set", there, "netns", name],
             ["ip", "addr", "add", "10.231.0.1/24", "dev", here], ["ip", "link", "set", here, "up"],
             ["ip", "netns", "exec", name, "ip", "addr", "add", "10.231.0.2/24", "dev", there],
             ["ip", "netns", "exec", name, "ip", "link", "set", there, "up"],
             ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
             ["tc", "qdisc", "add", "dev", here, "root", *qdisc],
             ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", there, "root", *qdisc]]
    try:
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise OSError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
