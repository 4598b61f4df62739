"""Remote mode measured on one machine: `lia-live serve` in its own process, clients on loopback.

    python scripts/remote_bench.py                       # everything, bundled demo model, CPU
    python scripts/remote_bench.py --only clients --seconds 20 --backend eager
    python scripts/remote_bench.py --device cuda --only clients   # on a GPU server (client threads here too)

Parts (``--only`` picks some; JSON on stdout, progress on stderr):
- ``pipeline``: the live loop (640×480 frames of a moving portrait, face tracking on) with the local animator vs
  a RemoteAnimator on loopback: steady fps as fast as frames go (file mode), and capture→send latency with frames
  paced at ``--paced-fps`` (live mode: newest frame wins), run back to back, ``--repeat`` times, alternating
  (``--modes`` picks runs, ``--no-paced`` skips the paced ones); each run also reports the CPU time per input
  frame of the client (this process) and of the server process (``cpu_ms_per_frame``), the load-independent
  measure on a shared machine. The final comparison: ``--only pipeline --repeat 3`` on a quiet machine;
- ``codecs``: PSNR of the returned crop against the local result for each codec/quality, and bytes per frame;
- ``clients``: 4 clients (threads, own portraits) stepping as fast as they can for ``--seconds``: aggregate
  frames/s with batching (``--batch-window 8``) and without (``--batch-window 0 --max-batch 1``);
- ``delay``: the paced latency run through a user-space relay adding ``--delay-ms`` each way (no loss: see
  docs/remote.md for netem).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from live_bench import webcam_frames  # scripts/ is on the path when a script runs (and in pytest)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench"


def say(msg: str) -> None:
    print(f"remote_bench: {msg}", file=sys.stderr, flush=True)


def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def clip(face: np.ndarray, n: int, size=(640, 480)) -> list[np.ndarray]:
    """The portrait (~300 px head) drifting and breathing in a plain 640×480 frame (live_bench's clip)."""
    return list(webcam_frames(face, n, size))


def start_server(args, *extra: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lia_live.cli.live", "serve", "--port", "0", "--token", TOKEN,
           "--device", args.device, "--backend", args.backend, *extra]
    log = open(os.environ.get("REMOTE_BENCH_SERVER_LOG", os.devnull), "a")  # the server's stderr (for debugging)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    log.close()  # the child has its own copy
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("lia-live: serving on"):
        raise SystemExit(f"remote_bench: the server did not start: {line!r}")
    return proc, int(line.split(":")[2].split(",")[0])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


class Paced:
    """A live capture from a list of frames at a fixed rate (newest frame wins downstream)."""

    def __init__(self, frames, fps: float):
        from lia_live.capture.base import Capture, Frame

        class _C(Capture):
            live = True
            name = "paced"

            def __init__(s):
                s.i, s.next = 0, time.perf_counter()

            def read(s, timeout: float = 1.0):
                if s.i >= len(frames):
                    return None
                time.sleep(max(0.0, s.next - time.perf_counter()))
                s.next += 1.0 / fps
                f = Frame(frames[s.i], time.perf_counter(), s.i, s.i / fps)
                s.i += 1
                return f

            @property
            def finished(s):
                return s.i >= len(frames)

        self.capture = _C()


def cpu_seconds(pid: int | None = None) -> float:
    """user+sys CPU seconds of a process (this one by default), all threads, from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(args, frames, anim, paced: float | None) -> dict:
    """One live run; a remote one with the client's torch threads as ``lia-live --remote`` sets them."""
    from lia_live.remote import RemoteAnimator
    from lia_live.remote.session import client_threads

    threads = client_threads(None) if isinstance(anim, RemoteAnimator) else contextlib.nullcontext()
    with threads:
        return _run_once(args, frames, anim, paced)


def _run_once(args, frames, anim, paced: float | None) -> dict:
    from lia_live.capture.base import IterableCapture
    from lia_live.live import LiveConfig, run_live

    class Null:
        def send(self, rgb):
            pass

        def close(self):
            pass

    src = Path(args.tmp) / "portrait.png"
    cfg = LiveConfig(sources=(src,)).replace(output={"size": (640, 480), "vcam": False}, run={"stats_every": 0})
    cap = Paced(frames, paced).capture if paced else IterableCapture(iter(frames), fps=30)
    server = getattr(args, "server_pid", None)
    c0, s0 = cpu_seconds(), cpu_seconds(server) if server else 0.0
    stats = run_live(cfg, capture=cap, animator=anim, extra_outputs=[Null()])
    c1, s1 = cpu_seconds(), cpu_seconds(server) if server else 0.0
    keep = ("steady_fps", "latency_ms_mean", "stage_ms_mean", "remote_ms_mean", "frames", "frames_dropped")
    out = {k: stats.get(k) for k in keep}
    n = max(1, len(frames))  # CPU per input frame: client (this process) and server, ms
    out["cpu_ms_per_frame"] = {"client": round((c1 - c0) * 1e3 / n, 2), "server": round((s1 - s0) * 1e3 / n, 2)}
    return out


def local_animator(args):
    from lia_live.runtime import make_animator
    from lia_live.settings import ModelConfig

    return make_animator(ModelConfig(device=args.device, backend=args.backend), announce=False)


def remote_animator(port: int, codec="jpeg", quality=90, via: int | None = None, inflight: int = 1):
    from lia_live.remote import RemoteAnimator

    return RemoteAnimator(f"127.0.0.1:{via or port}", TOKEN, codec=codec, quality=quality, inflight=inflight,
                          say=lambda m: None)


def part_pipeline(args, frames, port: int) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    local = local_animator(args)
    names = tuple(args.modes or ("local", "remote", "remote_inflight2"))
    modes = (("throughput", None), ("paced", args.paced_fps))[:1 if args.no_paced else 2]
    res: dict = {mode: {n: [] for n in names} for mode, _ in modes}
    for r in range(args.repeat):
        for name in names:
            for mode, paced in modes:
                anim = local if name == "local" else remote_animator(port, inflight=2 if name.endswith("2") else 1)
                res[mode][name].append(run_once(args, frames, anim, paced))
                if name != "local":
                    anim.close()
                got = res[mode][name][-1]
                say(f"pipeline {mode} {name} #{r + 1}: {got['steady_fps']} fps, latency {got['latency_ms_mean']} ms, "
                    f"CPU ms/frame {got['cpu_ms_per_frame']}, load {os.getloadavg()[0]:.2f}")
    return res


def part_codecs(args, frames, port: int) -> dict:
    import torch

    from lia_live.imaging import from_tensor, to_tensor
    from lia_live.tracking import center_box, crop_square

    local = local_animator(args)
    size = local.size
    crops = [crop_square(f, center_box(f), size) for f in frames[:args.codec_frames]]
    local.set_source(crops[0])
    with torch.inference_mode():
        want = [from_tensor(local.render(local.motion(to_tensor(c)), None))[0] for c in crops]
    out = {}
    for codec, q in (("png", 0), ("jpeg", 70), ("jpeg", 80), ("jpeg", 90), ("jpeg", 95), ("webp", 80), ("webp", 90)):
        anim = remote_animator(port, codec, q or 90)
        anim.set_source(crops[0])
        b0 = (anim.bytes_sent, anim.bytes_received)
        got = [from_tensor(anim.render(anim.motion(to_tensor(c)), None))[0] for c in crops]
        n = len(crops)
        vals = [psnr(a, b) for a, b in zip(want, got)]
        out[f"{codec}{'' if codec == 'png' else q}"] = {
            "psnr_mean": round(float(np.mean(vals)), 2), "psnr_min": round(float(np.min(vals)), 2),
            "kb_up_per_frame": round((anim.bytes_sent - b0[0]) / n / 1024, 2),
            "kb_down_per_frame": round((anim.bytes_received - b0[1]) / n / 1024, 2)}
        anim.close()
        say(f"codec {codec} {q}: {out[list(out)[-1]]}")
    return out


def psnr(a, b) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def clients_fps(args, port: int, frames, faces) -> dict:
    """``len(faces)`` clients stepping as fast as they can for ``args.seconds``: aggregate frames/s."""
    from lia_live.imaging import to_tensor
    from lia_live.tracking import center_box, crop_square

    anims = [remote_animator(port) for _ in faces]
    crops = [crop_square(f, center_box(f), anims[0].size) for f in frames[:30]]
    for a, f in zip(anims, faces):
        a.set_source(f)
        a.step(f)  # warm-up
    counts = [0] * len(anims)
    end = time.perf_counter() + args.seconds

    def drive(k: int) -> None:
        i = 0
        while time.perf_counter() < end:
            a = anims[k]
            a.render(a.motion(to_tensor(crops[i % len(crops)])), None)
            counts[k] += 1
            i += 1

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(len(anims))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rtt = [round(float(np.mean(list(a.rtt_ms))), 1) for a in anims]
    srv = [round(float(np.mean(list(a.server_ms))), 1) for a in anims]
    for a in anims:
        a.close()
    return {"aggregate_fps": round(sum(counts) / wall, 2), "per_client_fps": [round(c / wall, 2) for c in counts],
            "rtt_ms": rtt, "server_ms": srv}


def part_clients(args, frames) -> dict:
    import cv2

    face = cv2.resize(astronaut()[0:300, 100:400], (256, 256), interpolation=cv2.INTER_AREA)
    faces = [face, face[:, ::-1].copy(), 255 - face, face[..., ::-1].copy()][:args.clients]
    res: dict = {"batched": [], "unbatched": []}
    for r in range(args.repeat):
        for name, extra in (("batched", ("--batch-window", "8", "--max-batch", "8")),
                            ("unbatched", ("--batch-window", "0", "--max-batch", "1"))):
            proc, port = start_server(args, *extra)
            try:
                res[name].append(clients_fps(args, port, frames, faces))
            finally:
                stop(proc)
            say(f"clients {name} #{r + 1}: {res[name][-1]}")
    return res


def part_delay(args, frames, port: int) -> dict:
    from lia_live.remote.netsim import DelayProxy

    proxy = DelayProxy(("127.0.0.1", port), args.delay_ms / 1000.0)
    via = proxy.start()
    res: dict = {"rtt_added_ms": 2 * args.delay_ms}
    try:
        for inflight in (1, 2):
            for fps in (args.paced_fps, 30.0):
                anim = remote_animator(port, via=via, inflight=inflight)
                res[f"inflight{inflight}_paced{fps:g}"] = got = run_once(args, frames, anim, fps)
                anim.close()
                say(f"delay {2 * args.delay_ms} ms RTT, {inflight} in flight, {fps:g} fps input: {got}")
    finally:
        proxy.stop()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=("pipeline", "codecs", "clients", "delay"))
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--modes", action="append", choices=("local", "remote", "remote_inflight2"),
                   help="pipeline: which runs (default: all three)")
    p.add_argument("--no-paced", action="store_true", help="pipeline: only the as-fast-as-frames-go runs")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--paced-fps", type=float, default=15.0)
    p.add_argument("--codec-frames", type=int, default=40)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay of the relay (RTT = 2×)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    parts = args.only or ["pipeline", "codecs", "clients", "delay"]
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        face = astronaut()
        cv2.imwrite(str(Path(tmp) / "portrait.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        frames = clip(face, args.frames)
        out: dict = {"cpu_count": os.cpu_count(), "args": {k: v for k, v in vars(args).items() if k != "tmp"}}
        needs_server = any(x in parts for x in ("pipeline", "codecs", "delay"))
        proc, port = start_server(args) if needs_server else (None, 0)
        args.server_pid = proc.pid if proc is not None else None
        try:
            for part in parts:
                fn = {"pipeline": part_pipeline, "codecs": part_codecs, "delay": part_delay}.get(part)
                out[part] = part_clients(args, frames) if part == "clients" else fn(args, frames, port)
        finally:
            if proc is not None:
                stop(proc)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
