"""``lia-live bench``: per-frame latency and throughput of every backend against the official naive path.

    lia-live bench --device cpu --frames 30 --naive-frames 5
    lia-live bench --device cuda --backends cudagraph,compile,eager --batch-sizes 1,8,32 --json out.json

The measurement itself is ``lia_live.bench``; see docs/benchmarks.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from ..backends import parse_backend_options
from ..errors import UserError
from ..fsutil import check_output_path, write_atomic
from .common import ArgumentParser, int_range, user_errors

PROG = "lia-live bench"
MAX_THREADS = 4 * (os.cpu_count() or 1)


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1 or max(out) > 1024:
        raise argparse.ArgumentTypeError(f"batch sizes must be in [1, 1024], got {text!r}")
    return out


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="generator weights (default: random weights of the official shape; "
                                        "speed does not depend on the values)")
    p.add_argument("--size", type=int, default=256, choices=(256, 512), help="model resolution without --checkpoint")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backends", default=None, help="comma-separated (default: every available backend)")
    p.add_argument("--precisions", default=None, help="comma-separated fp32,fp16,bf16 (default: per backend)")
    p.add_argument("--batch-sizes", type=_ints, default=None, metavar="N,N",
                   help="batch sizes for batch-friendly backends (default: 1,8,32 on CUDA, 1 on CPU)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, passed to every benchmarked backend that takes it (repeatable)")
    p.add_argument("--frames", type=int_range(1, 100_000), default=50, help="timed calls per row (after warm-up)")
    p.add_argument("--warmup", type=int_range(0, 10_000), default=5, help="untimed calls per row first")
    p.add_argument("--naive-frames", type=int_range(0, 100_000), default=10,
                   help="timed frames of the naive official path (0 skips it; it is slow)")
    p.add_argument("--rounds", type=int_range(1, 1000), default=5,
                   help="interleaved blocks (fairness under shared load)")
    p.add_argument("--threads", type=int_range(1, MAX_THREADS), default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    return p


@user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lia-live bench`` (and ``make bench``); returns the exit code."""
    from .. import bench
    from ..runtime import resolve_device

    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.naive_frames < 0 or args.rounds < 1:
        raise UserError("--frames must be >= 1, --warmup/--naive-frames >= 0 and --rounds >= 1")
    options = parse_backend_options(args.backend_option)
    if args.json:
        check_output_path(args.json, overwrite=True, what="--json")  # a results file is rewritten by design
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        gen, what = bench.load_model(args.checkpoint, args.size)

        def split(s):
            return [x.strip() for x in s.split(",") if x.strip()] if s else None

        combos = bench.default_combos(device, split(args.backends), split(args.precisions), args.batch_sizes)
        if not combos:
            raise UserError("no backend/precision to benchmark on this machine")
        rows, naive = bench.run(gen, combos, device, args.frames, args.warmup, args.naive_frames,
                                min(args.rounds, args.frames), options)
        dev_name = bench.device_description(device)
    finally:
        torch.set_num_threads(threads)
    print(f"model: {what}, {gen.config.size}x{gen.config.size}; device: {dev_name}; torch {torch.__version__}; "
          f"{args.frames} calls/row (+{args.warmup} warm-up), naive {args.naive_frames} frames; "
          f"ms per call as median / p95; set-up = backend + source, 1st frame = set-up + first call; "
          f"rel L2 and PSNR against eager fp32 on one frame; peak MB: "
          + ("max CUDA memory allocated per row" if device.startswith("cuda")
             else "the process's peak RSS (all backends loaded in one process)"))
    print(bench.format_table(rows, naive))
    for r in rows:
        if r.total_ms:
            print(f"  {r.backend} {r.precision} batch {r.batch}: {r.note}")
    if args.json:
        write_atomic(args.json, json.dumps({"device": dev_name, "model": what, "torch": torch.__version__,
                                            "rows": [r.summary() for r in rows],
                                            "naive": naive.summary() if naive else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
