"""``lia-live bench``: per-frame latency and throughput of every backend against the official naive path.

    lia-live bench --device cpu --frames 30 --naive-frames 5
    lia-live bench --device cuda --backends cudagraph,compile,eager --batch-sizes 1,8,32 --json out.json

The measurement itself is ``lia_live.bench``; see docs/benchmarks.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..backends import parse_backend_options
from ..errors import UserError
from ..fsutil import check_output_path, write_atomic
from ..options import add_config_args, config_from_args
from ..runtime import model_device
from ..settings import ModelConfig, group, option
from .common import ArgumentParser, user_errors

PROG = "lia-live bench"


def _ints(text: str) -> tuple[int, ...]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1 or max(out) > 1024:
        raise argparse.ArgumentTypeError(f"batch sizes must be in [1, 1024], got {text!r}")
    return tuple(out)


@dataclass(frozen=True)
class BenchConfig:
    """What ``lia-live bench`` measures: which model, backends, precisions and batch sizes, how many calls."""

    size: int = option(256, "model resolution without --checkpoint", choices=(256, 512))
    backends: str | None = option(None, "comma-separated (default: every available backend)", metavar="LIST")
    precisions: str | None = option(None, "comma-separated fp32,fp16,bf16 (default: per backend)", metavar="LIST")
    batch_sizes: tuple[int, ...] | None = option(None, "batch sizes for batch-friendly backends (default: 1,8,32 on "
                                                 "CUDA, 1 on CPU)", parse=_ints, metavar="N,N")
    frames: int = option(50, "timed calls per row (after warm-up)", range=(1, 100_000), metavar="N")
    warmup: int = option(5, "untimed calls per row first", range=(0, 10_000), metavar="N")
    naive_frames: int = option(10, "timed frames of the naive official path (0 skips it; it is slow)",
                               range=(0, 100_000), metavar="N")
    rounds: int = option(5, "interleaved blocks (fairness under shared load)", range=(1, 1000), metavar="N")
    json: Path | None = option(None, "also write the results as JSON to this file", metavar="FILE")
    # --backend / --precision: every backend and precision is measured (--backends, --precisions)
    model: ModelConfig = group(ModelConfig, "model", hide=("backend", "precision"), helps={
        "checkpoint": "generator weights (default: random weights of the official shape; speed does not depend on "
                      "the values)",
        "backend_options": "backend option KEY=VALUE, passed to every benchmarked backend that takes it "
                           "(repeatable)"})


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Per-frame latency and throughput of every backend against the "
                       "official naive path (docs/benchmarks.md).")
    add_config_args(p, BenchConfig())
    return p


@user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lia-live bench`` (and ``make bench``); returns the exit code."""
    from .. import bench

    cfg = config_from_args(BenchConfig(), build_parser().parse_args(argv))
    options = parse_backend_options(cfg.model.backend_options)
    if cfg.json:
        check_output_path(cfg.json, overwrite=True, what="--json")  # a results file is rewritten by design
    threads = torch.get_num_threads()
    try:
        device = model_device(cfg.model)  # --threads applies for this run only
        gen, what = bench.load_model(None if cfg.model.checkpoint is None else str(cfg.model.checkpoint), cfg.size)

        def split(s):
            return [x.strip() for x in s.split(",") if x.strip()] if s else None

        combos = bench.default_combos(device, split(cfg.backends), split(cfg.precisions),
                                      list(cfg.batch_sizes) if cfg.batch_sizes else None)
        if not combos:
            raise UserError("no backend/precision to benchmark on this machine")
        rows, naive = bench.run(gen, combos, device, cfg.frames, cfg.warmup, cfg.naive_frames,
                                min(cfg.rounds, cfg.frames), options)
        dev_name = bench.device_description(device)
    finally:
        torch.set_num_threads(threads)
    print(f"model: {what}, {gen.config.size}x{gen.config.size}; device: {dev_name}; torch {torch.__version__}; "
          f"{cfg.frames} calls/row (+{cfg.warmup} warm-up), naive {cfg.naive_frames} frames; "
          f"ms per call as median / p95; set-up = backend + source, 1st frame = set-up + first call; "
          f"rel L2 and PSNR against eager fp32 on one frame; peak MB: "
          + ("max CUDA memory allocated per row" if device.startswith("cuda")
             else "the process's peak RSS (all backends loaded in one process)"))
    print(bench.format_table(rows, naive))
    for r in rows:
        if r.total_ms:
            print(f"  {r.backend} {r.precision} batch {r.batch}: {r.note}")
    if cfg.json:
        write_atomic(cfg.json, json.dumps({"device": dev_name, "model": what, "torch": torch.__version__,
                                            "rows": [r.summary() for r in rows],
                                            "naive": naive.summary() if naive else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
