"""Entry point: ``torchrun --standalone --nproc_per_node=N -m train.run ...`` or ``python train/run.py ...``.

Multi-node: ``torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT
--rdzv_id=JOB -m train.run ...`` on every node (see docs/training.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `train` importable

from lia_live.errors import UserError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse options, join the process group if launched by torchrun, train; UserError → one line, exit 2."""
    from train import dist
    from train.config import dumps, parse_args

    try:
        cfg, dry_run, _ = parse_args(argv)
        cfg.validate(dist.env_world_size())
        if dry_run:
            print(dumps(cfg))
            return 0
        device = dist.pick_device(cfg.device)
        dist.init(device)
        try:
            from train.trainer import Trainer

            Trainer(cfg, device).run()
        finally:
            dist.shutdown()
    except UserError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
