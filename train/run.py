"""Entry point: ``torchrun --standalone --nproc_per_node=N -m train.run ...`` or ``python train/run.py ...``.

Multi-node: ``torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT
--rdzv_id=JOB -m train.run ...`` on every node (see docs/training.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `train` importable

from lia_live.errors import UserError  # noqa: E402


def _one_line(e: UserError) -> str:
    """The user's line of a UserError, also when a DataLoader worker re-raised it with its traceback."""
    text = str(e).strip()
    if "Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split("UserError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    """Parse options, join the process group if launched by torchrun, train; UserError → one line, exit 2.

    Teardown order at the end of a run: the trainer's TensorBoard writer, data workers and DDP wrappers
    (``Trainer.close``), then a barrier of all ranks, then the process group (``dist.shutdown``).
    """
    import gc

    from lia_live.fsutil import os_error_line
    from train import dist
    from train.config import dumps, parse_args

    try:
        cfg, dry_run, _ = parse_args(argv)
        cfg.validate(dist.env_world_size())
        if dry_run:
            print(dumps(cfg))
            return 0
        if not cfg.data:  # never the working folder by accident
            raise UserError("--data is required: the dataset folder (ROOT/{train,test}/<video>/*.png or <video>.mp4)")
        _check_out(cfg.out)
        device = dist.pick_device(cfg.device)
        dist.init(device)
        trainer, finished = None, False
        try:
            from train.trainer import Trainer

            trainer = Trainer(cfg, device)
            trainer.run()
            finished = True
        finally:
            if trainer is not None:
                trainer.close()
            del trainer
            gc.collect()
            dist.shutdown(clean=finished)
    except UserError as e:
        print(f"train: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno is None:
            raise
        print(f"train: error: {os_error_line(e, 'file error')}", file=sys.stderr)
        return 2
    return 0


def _check_out(out: str) -> None:
    """--out: a folder that can be written (an existing run folder is fine: --resume decides)."""
    from lia_live.fsutil import check_output_path

    check_output_path(out, overwrite=True, what="--out", kind="dir")


if __name__ == "__main__":
    code = main()
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: see train.dist.exit_process
        from train import dist as _dist

        _dist.exit_process(code)
    sys.exit(code)
