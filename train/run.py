"""Entry point: ``torchrun --standalone --nproc_per_node=N -m train.run ...`` or ``python train/run.py ...``.

Multi-node: ``torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT
--rdzv_id=JOB -m train.run ...`` on every node (see docs/training.md). ``train`` is a package of the
checkout (installed with it, and on pytest's path), so both forms import it without path edits.
"""

from __future__ import annotations

import gc
import os
import sys

from lia_live.errors import UserError
from lia_live.fsutil import check_output_path
from lia_live.options import user_errors
from lia_live.paths import inside, same_file
from train import dist
from train.config import TrainConfig, dumps, parse_args
from train.trainer import Trainer


@user_errors("train", TrainConfig)
def main(argv: list[str] | None = None) -> int:
    """Parse options, join the process group if launched by torchrun, train; UserError → one line, exit 2.

    Teardown order at the end of a run: the trainer's TensorBoard writer, data workers and DDP wrappers
    (``Trainer.close``), then a barrier of all ranks, then the process group (``dist.shutdown``).
    """
    cfg, dry_run, _ = parse_args(argv)
    cfg.validate(dist.env_world_size())
    if dry_run:
        print(dumps(cfg))
        return 0
    if not cfg.data:  # never the working folder by accident
        raise UserError("--data is required: the dataset folder (ROOT/{train,test}/<video>/*.png or <video>.mp4)")
    # --out: a folder that can be written (an existing run folder is fine: --resume decides)
    check_output_path(cfg.out, overwrite=True, what="--out", kind="dir")
    if same_file(cfg.out, cfg.data) or inside(cfg.out, cfg.data) or inside(cfg.data, cfg.out):
        raise UserError(f"--out {cfg.out} and --data {cfg.data} overlap: checkpoints and samples would be written "
                        "among the training clips (or read as clips); choose an --out folder outside the data")
    device = dist.pick_device(cfg.device)
    dist.init(device)
    trainer, finished = None, False
    try:
        trainer = Trainer(cfg, device)
        trainer.run()
        finished = True
    finally:
        if trainer is not None:
            trainer.close()
        del trainer
        gc.collect()
        dist.shutdown(clean=finished)
    return 0


if __name__ == "__main__":
    code = main()
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: see train.dist.exit_process
        dist.exit_process(code)
    sys.exit(code)
