"""The per-frame benchmark behind ``lia-live bench``: every backend against the official naive per-frame path.

For each (backend, precision, batch): motion encoder, synthesis and total ms per call (median and p95 over
``frames`` calls after ``warmup``), ms per frame and fps, set-up time (backend creation + source encoding)
and time to the first frame (set-up + the first call, which compiles or captures lazily), peak memory,
relative L2 / PSNR of its output against the eager fp32 model on the same frame, and the speed-up over the
naive path measured in the same run. The per-frame path is the product's own: an
:class:`~lia_live.animator.Animator` over the backend, in relative mode (reference = the source pose).
Runs are interleaved round by round (a block of calls of each runner in turn), so load from other
processes hits every row alike and the ratios stay meaningful on a shared machine.

Without a checkpoint the benchmark uses :func:`seeded_generator`: the official architecture with seeded
random weights drawn so that outputs look image-like (speed does not depend on the values). The test
fixture of the official reference outputs is this same recipe with seed :data:`REFERENCE_SEED`.
The command line lives in ``lia_live/cli/bench.py``.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .animator import Animator
from .backends import available_backends, backend_info, create_backend
from .backends.checks import psnr, rel_l2, test_card
from .errors import UserError
from .log import log
from .model import Generator, GeneratorConfig

BENCH_SEED = 7
REFERENCE_SEED = 20221  # tests/fixtures/lia_reference was made with these weights
CUDA_BATCHES = (1, 8, 32)


def seeded_state(generator: Generator, seed: int) -> dict[str, torch.Tensor]:
    """Seeded parameter values for ``generator``, drawn in parameter order from one generator.

    Normal(0, 1) everywhere except: biases × 0.1, modulation biases 1 + 0.1·z, ToFlow weights × 0.1 (gentle
    flows) — plain ``randn`` everywhere gives chaotic images.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, p in generator.named_parameters():
        z = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if key.endswith("modulation.bias"):
            v = 1 + 0.1 * z
        else:
            v = 0.1 * z if key.endswith("bias") else z
            if "to_flows" in key and "modulation" not in key:
                v = v * 0.1
        out[key] = v
    return out


def seeded_generator(cfg: GeneratorConfig, seed: int = BENCH_SEED) -> Generator:
    """A generator of config ``cfg`` with :func:`seeded_state` weights, in eval mode."""
    gen = Generator.from_config(cfg)
    gen.load_state_dict({**gen.state_dict(), **seeded_state(gen, seed)}, strict=True)
    return gen.eval()


def load_model(checkpoint: str | None, size: int) -> tuple[Generator, str]:
    """The generator to benchmark and a description: a checkpoint, or seeded official-shape weights."""
    if checkpoint:
        from .model.checkpoint import load_generator

        return load_generator(checkpoint), checkpoint
    return seeded_generator(GeneratorConfig(size=size)), f"seeded random weights, official {size} shape"


def driving_frames(size: int, n: int) -> list[torch.Tensor]:
    """Distinct driving frames (1, 3, S, S): the test card shifted and tinted, so no runner can cache a result."""
    base = test_card(size)
    return [torch.roll(base, shifts=(i % 7 - 3, i % 5 - 2), dims=(2, 3)) * (1 - 0.01 * (i % 10)) for i in range(n)]


@dataclass
class Row:
    """One benchmarked path; ``*_ms`` are per call (``batch`` frames each)."""

    backend: str
    precision: str
    device: str
    batch: int = 1
    motion_ms: list[float] = field(default_factory=list)
    synth_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    peak_mb: float = float("nan")
    rel_l2: float = float("nan")
    psnr_db: float = float("nan")
    setup_s: float = float("nan")
    first_frame_s: float = float("nan")
    note: str = ""

    @staticmethod
    def _q(xs: list[float], q: float) -> float:
        if not xs:
            return float("nan")
        s = sorted(xs)
        return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]

    @property
    def frame_ms(self) -> float:
        """Median ms per frame (per call / batch)."""
        return statistics.median(self.total_ms) / self.batch if self.total_ms else float("nan")

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.endswith("_ms")}
        for k in ("motion_ms", "synth_ms", "total_ms"):
            xs = getattr(self, k)
            d[k.replace("_ms", "_median_ms")] = statistics.median(xs) if xs else float("nan")
            d[k.replace("_ms", "_p95_ms")] = self._q(xs, 0.95)
        d["calls"] = len(self.total_ms)
        d["frames"] = len(self.total_ms) * self.batch
        d["frame_ms"] = self.frame_ms
        d["fps"] = 1000.0 / self.frame_ms if self.total_ms else float("nan")
        return d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Runner:
    """Times one per-frame path: ``frame(batch_of_images, record)`` → images, stage timings into ``row``."""

    def __init__(self, row: Row, step: Callable[[torch.Tensor, bool], torch.Tensor] | None):
        self.row, self._step = row, step

    @property
    def active(self) -> bool:
        return self._step is not None

    def frame(self, img: torch.Tensor, record: bool) -> torch.Tensor:
        if self._step is None:
            raise RuntimeError(f"{self.row.backend} is not running (it failed to start)")
        return self._step(img, record)


def animator_runner(anim: Animator, row: Row) -> Runner:
    """Runner over an Animator whose source and reference are set: motion, then render."""
    dev = anim.device

    def step(img: torch.Tensor, record: bool) -> torch.Tensor:
        img = img.to(dev)
        _sync(dev)
        t0 = time.perf_counter()
        alpha = anim.motion(img)  # (B, M)
        _sync(dev)
        t1 = time.perf_counter()
        out = anim.render(alpha)  # (B, 3, S, S)
        _sync(dev)
        t2 = time.perf_counter()
        if record:
            row.motion_ms.append((t1 - t0) * 1e3)
            row.synth_ms.append((t2 - t1) * 1e3)
            row.total_ms.append((t2 - t0) * 1e3)
        return out

    return Runner(row, step)


def make_animator(backend, source: torch.Tensor) -> Animator:
    """Animator over ``backend`` with ``source`` set and the source's own pose as reference (relative mode)."""
    anim = Animator(backend)
    anim.set_source_tensor(source.to(anim.device))
    anim.set_reference(anim.motion(source.to(anim.device)))
    return anim


def fast_runner(name: str, gen: Generator, device: str, precision: str, source: torch.Tensor, first: torch.Tensor,
                batch: int = 1, options: Mapping[str, Any] | None = None) -> Runner:
    """Create the backend, set the source, run the first call (timed): set-up and first-frame times."""
    t0 = time.perf_counter()
    backend = create_backend(name, gen, device=device, precision=precision, options=options)
    anim = make_animator(backend, source)
    _sync(anim.device)
    setup = time.perf_counter() - t0
    row = Row(name, precision, str(anim.device), batch=batch, setup_s=setup, note=backend.describe())
    runner = animator_runner(anim, row)
    runner.frame(first.expand(batch, -1, -1, -1), record=False)
    row.first_frame_s = time.perf_counter() - t0
    return runner


def naive_runner(gen: Generator, device: str, source: torch.Tensor) -> Runner:
    """The official formulation (re-encodes the source per frame), relative to the source's own pose."""
    from .naive import NaivePath

    dev = torch.device(device)
    naive = NaivePath(gen.to(dev))
    src = source.to(dev)
    h_start = naive.motion(src)
    row = Row("naive (official per-frame)", "fp32", str(dev), note="re-encodes the source every frame")

    def step(img: torch.Tensor, record: bool) -> torch.Tensor:
        img = img.to(dev)
        _sync(dev)
        t0 = time.perf_counter()
        out = naive(src.expand(img.shape[0], -1, -1, -1), img, h_start)
        _sync(dev)
        if record:
            row.total_ms.append((time.perf_counter() - t0) * 1e3)
        return out

    return Runner(row, step)


def run(gen: Generator, combos: list[tuple], device: str, frames: int, warmup: int, naive_frames: int,
        rounds: int = 5, options: Mapping[str, Any] | None = None) -> tuple[list[Row], Row | None]:
    """Benchmark ``combos`` — (backend, precision) or (backend, precision, batch) — and the naive path.

    ``frames`` timed calls per combo after ``warmup`` untimed ones, interleaved in ``rounds`` blocks.
    ``options``: backend options, each passed to the backends that declare it.
    """
    size = gen.config.size
    source = test_card(size)
    imgs = driving_frames(size, max(frames, naive_frames) + warmup + 1)
    dev = torch.device(device)
    runners: list[Runner] = []
    for combo in combos:
        name, prec, batch = (*combo, 1) if len(combo) == 2 else combo
        log(f"preparing {name} {prec} batch {batch} on {device} …")
        info = backend_info(name)
        opts = {k: v for k, v in (options or {}).items() if any(o.key == k for o in info.options)}
        try:
            runners.append(fast_runner(name, gen, device, prec, source, imgs[0], batch, opts))
        except (UserError, RuntimeError, ImportError, NotImplementedError) as e:
            row = Row(name, prec, device, batch=batch, note=f"skipped: {str(e).splitlines()[0]}")
            runners.append(Runner(row, None))
    naive = naive_runner(gen, device, source) if naive_frames > 0 else None
    active = [r for r in runners if r.active] + ([naive] if naive else [])

    def batch_of(r: Runner, i: int) -> torch.Tensor:
        b = r.row.batch
        return torch.cat([imgs[1 + (i * b + j) % (len(imgs) - 1)] for j in range(b)])  # (b, 3, S, S)

    for r in active:  # warm-up
        for i in range(warmup):
            r.frame(batch_of(r, i), record=False)
    probe = imgs[warmup % len(imgs)]
    with torch.no_grad():  # accuracy: the eager fp32 Animator on the same frame is the reference
        ref = make_animator(create_backend("eager", gen, device=device, precision="fp32"), source)
        want = ref.render(ref.motion(probe.to(ref.device))).float().cpu()  # (1, 3, S, S)
    for r in active:
        got = r.frame(probe.expand(r.row.batch, -1, -1, -1), record=False).float().cpu()
        r.row.rel_l2, r.row.psnr_db = rel_l2(got, want.expand_as(got)), psnr(got, want.expand_as(got))
    per_round = max(1, frames // rounds)
    naive_round = max(1, naive_frames // rounds) if naive else 0
    fast = [r for r in runners if r.active]
    for k in range(rounds):
        for r in fast:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            n = per_round if k < rounds - 1 else frames - per_round * (rounds - 1)
            for i in range(n):
                r.frame(batch_of(r, warmup + k * per_round + i), record=True)
            mem = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else _rss_mb()
            r.row.peak_mb = mem if r.row.peak_mb != r.row.peak_mb else max(r.row.peak_mb, mem)
        if naive:
            n = naive_round if k < rounds - 1 else max(0, naive_frames - naive_round * (rounds - 1))
            for i in range(n):
                naive.frame(batch_of(naive, warmup + k * naive_round + i), record=True)
    if naive and dev.type != "cuda":
        naive.row.peak_mb = _rss_mb()
    return [r.row for r in runners], (naive.row if naive else None)


def format_table(rows: list[Row], naive: Row | None) -> str:
    """Fixed-width table; speed-up is naive ms per frame / row ms per frame."""
    head = ("backend", "prec", "batch", "motion ms", "synth ms", "total ms", "ms/frame", "fps", "set-up s",
            "1st frame s", "peak MB", "vs naive", "rel L2", "PSNR dB")
    lines = []
    base = naive.frame_ms if naive and naive.total_ms else None

    def ms(xs):
        return "-" if not xs else f"{statistics.median(xs):.1f} / {Row._q(xs, 0.95):.1f}"

    def sec(x):
        return "-" if x != x else f"{x:.1f}"

    for r in rows + ([naive] if naive else []):
        if not r.total_ms:
            lines.append((r.backend, r.precision, str(r.batch), r.note) + ("",) * (len(head) - 4))
            continue
        f = r.frame_ms
        lines.append((r.backend, r.precision, str(r.batch), ms(r.motion_ms), ms(r.synth_ms), ms(r.total_ms),
                      f"{f:.2f}", f"{1000 / f:.1f}", sec(r.setup_s), sec(r.first_frame_s), f"{r.peak_mb:.0f}",
                      f"{base / f:.2f}x" if base else "-", f"{r.rel_l2:.1e}",
                      f"{r.psnr_db:.1f}" if r.psnr_db != float("inf") else "inf"))
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]

    def fmt(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(x) for x in lines])


def default_combos(device: str, backends: list[str] | None, precisions: list[str] | None,
                   batches: list[int] | None = None) -> list[tuple[str, str, int]]:
    """(backend, precision, batch) rows: every available backend at its default precision, plus fp16 and fp32
    on CUDA (bf16 on CPU); batch sizes > 1 (default on CUDA: 8 and 32) for batch-friendly backends, in fp16
    on CUDA (the first of ``precisions`` when given)."""
    avail = available_backends(device)
    names = backends or [n for n, (ok, _) in avail.items() if ok]
    on_cuda = torch.device(device).type == "cuda"
    batches = batches or (list(CUDA_BATCHES) if on_cuda else [1])
    combos = []
    for n in names:
        info = backend_info(n)
        ok, why = avail.get(n, (False, "unknown"))
        if not ok:
            log(f"skipping {n}: {why}")
            continue
        default = info.precision_for(device)
        extra = ["fp16", "fp32"] if on_cuda else ["bf16"]
        precs = precisions or [default] + extra
        for p in dict.fromkeys(precs):
            if p in info.precisions and not (p == "fp16" and not on_cuda):
                combos.append((n, p, 1))
        if info.batch_friendly:
            bprec = precisions[0] if precisions else "fp16" if on_cuda and "fp16" in info.precisions else default
            combos += [(n, bprec, b) for b in batches if b > 1 and bprec in info.precisions]
    return combos


def device_description(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({torch.get_num_threads()} threads)"
