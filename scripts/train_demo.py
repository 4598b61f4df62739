"""Recipe of the bundled pipeline-demo model ``lia_live/assets/demo_generator.safetensors``.

It is a *pipeline demo*, not a face-reenactment model: a small 128² LIA (style 128, 20 motions, channels
÷8) trained by this project's trainer (9,799 iterations, about 1 h 45 min on a 2-core CPU), on clips synthesised from
NASA's public-domain astronaut portrait (``scripts/make_demo_data.py``: translation, rotation, scale,
mild perspective, mouth opening). It follows pose changes of that kind and lets ``make demo`` run the
whole pipeline on a fresh machine with no download. Use an official checkpoint for real results.

Deviations from the recipe, forced by the CPU budget: batch 4, no VGG perceptual term (no offline VGG19
weights; VGG dominates CPU time) and no GAN term (the discriminator would halve the steps we can afford).

    python scripts/train_demo.py            # data → runs/demo-data, run → runs/demo, then export
    python scripts/train_demo.py --minutes 33 --overwrite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

ASSET = ROOT / "lia_live" / "assets" / "demo_generator.safetensors"
MAX_BYTES = 25 * 1024 * 1024


def train_args(data: Path, out: Path, minutes: float) -> list[str]:
    """The trainer command line of the demo model."""
    return ["--preset", "vox", "--data", str(data), "--out", str(out), "--size", "128", "--style-dim", "128",
            "--motion-dim", "20", "--channel-div", "8", "--d-channel-div", "8", "--batch-size", "4",
            "--iters", "1000000", "--max-minutes", str(minutes), "--vgg-weights", "none", "--gan-weight", "0",
            "--workers", "0", "--save-every", "200", "--keep", "2", "--log-every", "10", "--image-every", "200",
            "--resume", "auto", "--no-progress"]


def export(run: Path, asset: Path) -> Path:
    """Newest checkpoint of ``run`` → fp32 safetensors generator at ``asset`` (checked to load back)."""
    import torch

    from lia_live.model.checkpoint import load_generator, save_generator
    from train.checkpoints import newest_checkpoint

    ckpt = newest_checkpoint(run / "checkpoints")
    if ckpt is None:
        raise SystemExit(f"train_demo: no checkpoint in {run / 'checkpoints'}")
    gen = load_generator(ckpt)
    save_generator(gen, asset)
    asset.chmod(0o644)  # a package file: readable by everyone (the atomic temp file was 0600)
    if asset.stat().st_size > MAX_BYTES:
        raise SystemExit(f"train_demo: {asset} is {asset.stat().st_size / 2**20:.1f} MB > 25 MB")
    back = load_generator(asset)
    x = torch.zeros(1, 3, gen.size, gen.size)
    with torch.no_grad():
        assert torch.allclose(back(x, x), gen(x, x))
    print(f"train_demo: exported {ckpt.name} → {asset} ({asset.stat().st_size / 2**20:.2f} MB)")
    return asset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train and export the bundled pipeline-demo generator.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "demo-data", help="synthetic clips (made if missing)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="training run folder")
    from lia_live.cli.common import float_range

    p.add_argument("--minutes", type=float_range(0, 10_000, lo_open=True), default=33.0, help="training wall time")
    p.add_argument("--asset", type=Path, default=ASSET, help="where to write the generator")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --asset")
    p.add_argument("--export-only", action="store_true", help="skip training; export the newest checkpoint")
    a = p.parse_args(argv)
    if a.asset.exists() and not a.overwrite:
        print(f"train_demo: {a.asset} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not a.export_only:
        if not (a.data / "train").is_dir():
            from make_demo_data import load_pictures, write_dataset

            write_dataset(a.data, load_pictures(["astronaut"]), size=128, clips=48, frames=40, test_clips=4)
        from train.run import main as train_main

        rc = train_main(train_args(a.data, a.out, a.minutes))
        if rc:
            return rc
    export(a.out, a.asset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
