"""``lia-live bench``: per-frame latency of every backend, against the official naive per-frame path.

For each backend × precision: motion encoder, synthesis and total ms/frame (median and p95 over
``--frames`` frames after ``--warmup``), fps, peak memory, relative L2 / PSNR of its output against
the eager fp32 model on the same frame, and the speed-up over the naive path measured in the same run.
Runs are interleaved round by round (a block of frames of each runner in turn), so load from other
processes hits every row alike and the ratios stay meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .backends import available_backends, backend_info, create_backend
from .backends.engines import psnr, rel_l2, synthetic_face
from .cli.common import ArgumentParser, user_errors
from .errors import UserError
from .fsutil import check_output_path, write_atomic

PROG = "lia-live bench"


@dataclass
class Row:
    backend: str
    precision: str
    device: str
    motion_ms: list[float] = field(default_factory=list)
    synth_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    peak_mb: float = float("nan")
    rel_l2: float = float("nan")
    psnr_db: float = float("nan")
    setup_s: float = 0.0
    note: str = ""

    @staticmethod
    def _q(xs: list[float], q: float) -> float:
        if not xs:
            return float("nan")
        s = sorted(xs)
        return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.endswith("_ms")}
        for k in ("motion_ms", "synth_ms", "total_ms"):
            xs = getattr(self, k)
            d[k.replace("_ms", "_median_ms")] = statistics.median(xs) if xs else float("nan")
            d[k.replace("_ms", "_p95_ms")] = self._q(xs, 0.95)
        d["frames"] = len(self.total_ms)
        d["fps"] = 1000.0 / d["total_median_ms"] if self.total_ms else float("nan")
        return d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_model(checkpoint: str | None, size: int):
    """The generator to benchmark: a checkpoint, or official-shape random weights (timing only)."""
    from .model import GeneratorConfig

    if checkpoint:
        from .model.checkpoint import load_generator

        return load_generator(checkpoint), checkpoint
    return seeded_generator(GeneratorConfig(size=size)), f"seeded random weights, official {size} shape"


def seeded_generator(cfg, seed: int = 7):
    """Random weights drawn like the reference fixture's (small biases, modulation bias ≈ 1, gentle flows),
    which give image-like outputs; plain ``randn`` everywhere gives chaotic ones. Speed is the same."""
    from .model import Generator

    gen = Generator.from_config(cfg)
    g = torch.Generator().manual_seed(seed)
    params = {}
    for key, v in gen.named_parameters():
        z = torch.randn(v.shape, generator=g)
        z = 1 + 0.1 * z if key.endswith("modulation.bias") else 0.1 * z if key.endswith("bias") else z
        params[key] = z * 0.1 if "to_flows" in key and "modulation" not in key else z
    gen.load_state_dict({**gen.state_dict(), **params}, strict=True)
    return gen.eval()


def test_frames(size: int, n: int) -> list[torch.Tensor]:
    """Distinct driving frames: the test card shifted and tinted, so no runner can cache a result."""
    base = synthetic_face(size)
    return [torch.roll(base, shifts=(i % 7 - 3, i % 5 - 2), dims=(2, 3)) * (1 - 0.01 * (i % 10)) for i in range(n)]


class Runner:
    """Times one per-frame path: ``step(frame)`` → image, recording its stage timings in ``row``."""

    def __init__(self, row: Row, step: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        self.row, self._step, self.device = row, step, device

    def frame(self, img: torch.Tensor, record: bool) -> torch.Tensor:
        return self._step(img, record)


def fast_runner(name: str, gen, device: str, precision: str, source: torch.Tensor) -> Runner:
    t0 = time.perf_counter()
    backend = create_backend(name, gen, device=device, precision=precision)
    src = backend.encode_source(source.to(backend.device))
    if hasattr(backend, "warmup"):
        backend.warmup(1)
    basis_t = backend.basis.to(backend.device).t()  # (M, D)
    row = Row(name, precision, str(backend.device), setup_s=time.perf_counter() - t0, note=backend.describe())
    dev = backend.device

    def step(img: torch.Tensor, record: bool) -> torch.Tensor:
        img = img.to(dev)
        _sync(dev)
        t0 = time.perf_counter()
        alpha = backend.encode_motion(img)  # (1, M)
        _sync(dev)
        t1 = time.perf_counter()
        latent = src.latent + alpha @ basis_t  # (1, D); relative mode adds constants only
        out = backend.synthesize(latent, src.feats)  # (1, 3, S, S)
        _sync(dev)
        t2 = time.perf_counter()
        if record:
            row.motion_ms.append((t1 - t0) * 1e3)
            row.synth_ms.append((t2 - t1) * 1e3)
            row.total_ms.append((t2 - t0) * 1e3)
        return out

    return Runner(row, step, dev)


def naive_runner(gen, device: str, source: torch.Tensor) -> Runner:
    from .backends.naive import NaivePath

    dev = torch.device(device)
    naive = NaivePath(gen.to(dev))
    src = source.to(dev)
    row = Row("naive (official per-frame)", "fp32", str(dev), note="re-encodes the source every frame")

    def step(img: torch.Tensor, record: bool) -> torch.Tensor:
        img = img.to(dev)
        _sync(dev)
        t0 = time.perf_counter()
        out = naive(src, img)
        _sync(dev)
        if record:
            row.total_ms.append((time.perf_counter() - t0) * 1e3)
        return out

    return Runner(row, step, dev)


def run(gen, combos: list[tuple[str, str]], device: str, frames: int, warmup: int, naive_frames: int,
        rounds: int = 5) -> tuple[list[Row], Row | None]:
    """Benchmark ``combos`` (backend, precision) and the naive path, interleaved in ``rounds`` blocks."""
    size = gen.config.size
    source = synthetic_face(size)
    imgs = test_frames(size, max(frames, naive_frames) + warmup)
    runners: list[Runner] = []
    for name, prec in combos:
        print(f"{PROG}: preparing {name} {prec} on {device} …", file=sys.stderr, flush=True)
        try:
            runners.append(fast_runner(name, gen, device, prec, source))
        except (UserError, RuntimeError, ImportError, NotImplementedError) as e:
            row = Row(name, prec, device, note=f"skipped: {str(e).splitlines()[0]}")
            runners.append(Runner(row, None, torch.device(device)))
    naive = naive_runner(gen, device, source) if naive_frames > 0 else None
    active = [r for r in runners if r._step is not None]
    for r in active + ([naive] if naive else []):  # warm-up, and accuracy vs eager fp32 on one frame
        for img in imgs[:warmup]:
            r.frame(img, record=False)
    with torch.no_grad():
        ref = gen.to(device)
        ref_src = ref.enc.net_app(source.to(device))
        probe = imgs[warmup].to(device)
        latent = ref_src[0] + ref.enc.enc_motion(probe) @ ref.dec.direction.basis().t()
        want = ref.dec.synthesize(latent, ref_src[1]).float().cpu()
    for r in active + ([naive] if naive else []):
        got = r.frame(probe, record=False).float().cpu()
        r.row.rel_l2, r.row.psnr_db = rel_l2(got, want), psnr(got, want)
    per_round = max(1, frames // rounds)
    naive_round = max(1, naive_frames // rounds) if naive else 0
    dev = torch.device(device)
    for k in range(rounds):
        for r in active:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            n = per_round if k < rounds - 1 else frames - per_round * (rounds - 1)
            for i in range(n):
                r.frame(imgs[warmup + (k * per_round + i) % frames], record=True)
            mem = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else _rss_mb()
            r.row.peak_mb = mem if r.row.peak_mb != r.row.peak_mb else max(r.row.peak_mb, mem)
        if naive:
            n = naive_round if k < rounds - 1 else max(0, naive_frames - naive_round * (rounds - 1))
            for i in range(n):
                naive.frame(imgs[warmup + (k * naive_round + i) % naive_frames], record=True)
    if naive and dev.type != "cuda":
        naive.row.peak_mb = _rss_mb()
    return [r.row for r in runners], (naive.row if naive else None)


def format_table(rows: list[Row], naive: Row | None) -> str:
    """Fixed-width table; speed-up is naive median total / row median total."""
    head = ("backend", "prec", "device", "motion ms", "synth ms", "total ms", "fps", "peak MB",
            "vs naive", "rel L2", "PSNR dB")
    lines = []
    base = statistics.median(naive.total_ms) if naive and naive.total_ms else None

    def ms(xs):
        return "-" if not xs else f"{statistics.median(xs):.1f} / {Row._q(xs, 0.95):.1f}"

    for r in rows + ([naive] if naive else []):
        if not r.total_ms:
            lines.append((r.backend, r.precision, r.device, r.note, "", "", "", "", "", "", ""))
            continue
        tot = statistics.median(r.total_ms)
        lines.append((r.backend, r.precision, r.device, ms(r.motion_ms), ms(r.synth_ms), ms(r.total_ms),
                      f"{1000 / tot:.1f}", f"{r.peak_mb:.0f}", f"{base / tot:.2f}x" if base else "-",
                      f"{r.rel_l2:.1e}", f"{r.psnr_db:.1f}" if r.psnr_db != float("inf") else "inf"))
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
    fmt = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def default_combos(device: str, backends: list[str] | None, precisions: list[str] | None) -> list[tuple[str, str]]:
    avail = available_backends(device)
    names = backends or [n for n, (ok, _) in avail.items() if ok]
    combos = []
    for n in names:
        info = backend_info(n)
        ok, why = avail.get(n, (False, "unknown"))
        if not ok:
            print(f"{PROG}: skipping {n}: {why}", file=sys.stderr)
            continue
        precs = precisions or ([info.default_precision] + (["bf16"] if device == "cpu" and "bf16" in info.precisions
                                                            else ["fp16"] if device.startswith("cuda")
                                                            and "fp16" in info.precisions else []))
        for p in dict.fromkeys(precs):
            if p in info.precisions:
                combos.append((n, p))
    return combos


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="generator weights (default: random weights of the official shape; "
                                        "speed does not depend on the values)")
    p.add_argument("--size", type=int, default=256, choices=(256, 512), help="model resolution without --checkpoint")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backends", default=None, help="comma-separated (default: every available backend)")
    p.add_argument("--precisions", default=None, help="comma-separated fp32,fp16,bf16 (default: per backend)")
    p.add_argument("--frames", type=int, default=50, help="timed frames per backend (after warm-up)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames per backend first")
    p.add_argument("--naive-frames", type=int, default=10,
                   help="timed frames of the naive official path (0 skips it; it is slow)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved blocks (fairness under shared load)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    return p


@user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lia-live bench`` and ``scripts/bench.py``; returns the exit code."""
    from .runtime import resolve_device

    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.naive_frames < 0 or args.rounds < 1:
        raise UserError("--frames must be >= 1, --warmup/--naive-frames >= 0 and --rounds >= 1")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be >= 1")
    if args.json:
        check_output_path(args.json, overwrite=True, what="--json")  # a results file is rewritten by design
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gen, what = load_model(args.checkpoint, args.size)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    combos = default_combos(device, split(args.backends), split(args.precisions))
    if not combos:
        raise UserError("no backend/precision to benchmark on this machine")
    rows, naive = run(gen, combos, device, args.frames, args.warmup, args.naive_frames, min(args.rounds, args.frames))
    dev_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"model: {what}, {gen.config.size}x{gen.config.size}; device: {dev_name}; torch {torch.__version__}; "
          f"{args.frames} frames/backend (+{args.warmup} warm-up), naive {args.naive_frames} frames; "
          f"ms as median / p95; rel L2 and PSNR against eager fp32 on one frame; peak MB: "
          + ("max CUDA memory allocated per backend" if device.startswith("cuda")
             else "the process's peak RSS (all backends loaded in one process)"))
    print(format_table(rows, naive))
    for r in rows:
        if r.total_ms:
            print(f"  {r.backend} {r.precision}: {r.note}; set-up {r.setup_s:.1f} s")
    if args.json:
        write_atomic(args.json, json.dumps({"device": dev_name, "model": what, "rows": [r.summary() for r in rows],
                                            "naive": naive.summary() if naive else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
