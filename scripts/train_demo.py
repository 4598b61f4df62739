"""Recipe of the bundled pipeline-demo model ``lia_live/assets/demo_generator.safetensors``.

A small 128² LIA (style 128, 20 motions, channels ÷8, 3.4 MB) trained by this project's trainer only on
NASA's public-domain astronaut portrait (``skimage.data.astronaut``), in two stages:

- v1 (``--recipe v1``): 9,799 iterations from scratch, L1 only, on ``make_demo_data.write_dataset`` clips
  (rigid moves of the portrait, centred crops). Blurred: on the demo clip L1 0.131, LPIPS 0.326.
- v2 (default, the shipped file): v1 fine-tuned on clips drawn like ``make demo``'s webcam clip
  (``make_demo_data.write_webcam_dataset``: the head on a flat backdrop, random smooth paths of position,
  roll and scale, piecewise warps of the mouth, mouth corners, eyelids and brows, face-tracked crops made
  by the same FaceCropper as ``lia-animate --crop auto``), with the perceptual loss on LPIPS's offline
  ImageNet VGG16 (``--vgg-weights lpips``) and no GAN term. Neither the demo clip's path nor the held-back
  clip's (``make_demo_data.demo_path`` / ``heldout_path``) is trained on.

docs/training.md has the measurements behind the choices and the curve.

    python scripts/train_demo.py --overwrite                 # v2: data → runs/demo-data-v2, run → runs/demo-v2
    python scripts/train_demo.py --overwrite --curve-only    # print the curve of the kept checkpoints
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

ASSET = ROOT / "lia_live" / "assets" / "demo_generator.safetensors"
MAX_BYTES = 25 * 1024 * 1024
MODEL_ARGS = ["--size", "128", "--style-dim", "128", "--motion-dim", "20", "--channel-div", "8", "--d-channel-div", "8"]


def train_args(data: Path, out: Path, minutes: float, recipe: str = "v2", init: Path | None = None) -> list[str]:
    """The trainer command line of the demo model (``recipe`` v1: the first, L1-only run)."""
    common = ["--preset", "vox", "--data", str(data), "--out", str(out), *MODEL_ARGS, "--batch-size", "4",
              "--iters", "1000000", "--max-minutes", str(minutes), "--workers", "0", "--log-every", "10",
              "--resume", "auto", "--no-progress"]
    if recipe == "v1":
        return common + ["--vgg-weights", "none", "--gan-weight", "0", "--save-every", "200", "--keep", "2",
                         "--image-every", "200"]
    extra = ["--init", str(init)] if init is not None else []
    return common + ["--vgg-weights", "lpips", "--gan-weight", "0", "--save-every", "100", "--keep", "200",
                     "--image-every", "500", *extra]


def make_data(data: Path, recipe: str) -> None:
    from make_demo_data import load_pictures, write_dataset, write_webcam_dataset

    if recipe == "v1":
        write_dataset(data, load_pictures(["astronaut"]), size=128, clips=48, frames=40, test_clips=4)
    else:
        write_webcam_dataset(data, size=128, clips=64, frames=40, test_clips=2, seed=0)


def eval_clips(folder: Path) -> dict[str, Path]:
    """The demo clip and the held-back clip as face-tracked crops (lia-eval datasets), made once."""
    from make_demo_data import crop_video, write_clip_video

    out = {}
    for which in ("demo", "heldout"):
        root = folder / f"eval-{which}"
        if not (root / "test" / which).is_dir():
            video = write_clip_video(folder / f"{which}.mp4", which)
            crop_video(video, root / "test" / which, 256)
        out[which] = root
    return out


def curve(run: Path, clips: dict[str, Path]) -> list[dict]:
    """L1/LPIPS (lia-eval, same identity) of every kept checkpoint on each clip, and the training loss."""
    from lia_live.evaluation.runner import EvalConfig, run_evaluation
    from train.checkpoints import list_checkpoints

    losses = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines() if line.strip()]
    rows = []
    for ckpt in list_checkpoints(run / "checkpoints"):
        it = int(ckpt.stem.split("-")[-1])
        near = [r for r in losses if it - 100 < r["iter"] <= it]
        row = {"iter": it, "train_l1": sum(r["l1"] for r in near) / max(len(near), 1)}
        for name, root in clips.items():
            cfg = EvalConfig(checkpoint=ckpt, data=root, out=run / "curve" / f"{it}-{name}", metrics=("l1", "lpips"),
                             domain="face", device="cpu", progress=False)
            res = run_evaluation(cfg, log=lambda _msg: None)["overall"]
            row[f"{name}_l1"], row[f"{name}_lpips"] = res["l1"], res["lpips"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


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
    from lia_live.cli.common import float_range

    p.add_argument("--recipe", choices=("v1", "v2"), default="v2", help="v1: the first L1-only run; v2: the shipped")
    p.add_argument("--data", type=Path, help="synthetic clips, made if missing (default: runs/demo-data[-v2])")
    p.add_argument("--out", type=Path, help="training run folder (default: runs/demo[-v2])")
    p.add_argument("--init", type=Path, default=ASSET,
                   help="v2 starts from this generator (the shipped v2 started from the v1 file of commit e97dfe4)")
    p.add_argument("--minutes", type=float_range(0, 10_000, lo_open=True), default=100.0, help="training wall time")
    p.add_argument("--asset", type=Path, default=ASSET, help="where to write the generator")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --asset")
    p.add_argument("--export-only", action="store_true", help="skip training; export the newest checkpoint")
    p.add_argument("--curve-only", action="store_true", help="only print the curve of the run's checkpoints")
    p.add_argument("--no-curve", action="store_true", help="skip the curve after training")
    a = p.parse_args(argv)
    suffix = "" if a.recipe == "v1" else "-v2"
    data = a.data or ROOT / "runs" / f"demo-data{suffix}"
    out = a.out or ROOT / "runs" / f"demo{suffix}"
    if a.curve_only:
        curve(out, eval_clips(out.parent / "demo-eval"))
        return 0
    if a.asset.exists() and not a.overwrite:
        print(f"train_demo: {a.asset} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not a.export_only:
        if not (data / "train").is_dir():
            make_data(data, a.recipe)
        from train.run import main as train_main

        args = train_args(data, out, a.minutes, a.recipe, a.init if a.recipe == "v2" else None)
        print("train_demo: python -m train.run " + shlex.join(args), flush=True)
        rc = train_main(args)
        if rc:
            return rc
        if a.recipe == "v2" and not a.no_curve:
            curve(out, eval_clips(out.parent / "demo-eval"))
    export(out, a.asset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
