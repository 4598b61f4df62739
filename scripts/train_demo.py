"""Recipe of the bundled pipeline-demo model ``lia_live/assets/demo_generator.safetensors``.

A small 128² LIA (style 128, 20 motions, channels ÷8, 3.4 MB) trained by this project's trainer only on
NASA's public-domain astronaut portrait (``skimage.data.astronaut``), in stages (``STAGES``), each a trainer
run that starts from the previous stage's last checkpoint:

- v1 (``runs/demo``): from scratch, L1 only, on ``make_demo_data.write_dataset`` clips (rigid moves of the
  portrait, centred crops).
- v2 (``runs/demo-v2``): + the perceptual loss on LPIPS's offline ImageNet VGG16 (``--vgg-weights lpips``), no
  GAN term, on clips drawn like ``make demo``'s webcam clip (``make_demo_data.write_webcam_dataset``: the head on
  a flat backdrop, random smooth paths of position, roll and scale, piecewise warps of the mouth, mouth
  corners, eyelids and brows, face-tracked crops made by the same FaceCropper as ``lia-animate --crop auto``).
- v3 (``runs/demo-v3a``, ``runs/demo-v3``): + rigid pairs with a known flow (``--rigid-pairs 2 --flow-weight``,
  then ``--mask-weight``; ``train/rigid.py``). v2 had learned to paint the face from its weights (its fine
  masks were shut over the face, the flow there wrong); these terms make it warp the source's face instead.
- v4 (``runs/demo-v4``; the shipped file): v3 continued on clips with closed eyes in half the frames
  (``DATA["blinks"]``), then without the mask term (which held the fine masks open over shut eyes too) and
  with one rigid pair in four, then at a lower rate.

Neither the demo clip's path nor the held-back clip's (``make_demo_data.demo_path`` / ``heldout_path``) is
trained on. A stage that is already at its iteration is skipped, so a rerun continues where a run stopped.
docs/training.md has the measurements behind each choice and the curve.

    python scripts/train_demo.py --overwrite                 # all stages under runs/, then export
    python scripts/train_demo.py --overwrite --curve-only    # lia-eval of the last stage's checkpoints
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ASSET = ROOT / "lia_live" / "assets" / "demo_generator.safetensors"
MAX_BYTES = 25 * 1024 * 1024
MODEL_ARGS = ["--size", "128", "--style-dim", "128", "--motion-dim", "20", "--channel-div", "8", "--d-channel-div", "8"]
PERCEPTUAL = ["--vgg-weights", "lpips", "--gan-weight", "0", "--amp", "bf16"]
RIGID = ["--rigid-pairs", "2"]
V3_LAST = [*PERCEPTUAL, *RIGID, "--flow-weight", "500", "--mask-weight", "40"]  # v3's terms from 3,429 on
V4_RIGID = ["--rigid-pairs", "1", "--flow-weight", "500", "--mask-weight", "0"]
V3_ITERS = 7_159  # v3's end
V4_ITERS = 8_000  # v4's end: the exported checkpoint


@dataclass(frozen=True)
class Stage:
    """One trainer run: ``folder`` (under the runs root) trained to iteration ``iters`` with ``args``; it starts
    from the newest checkpoint of ``init`` (another stage's folder), or continues its own folder when ``init``
    is None (the Adam state is kept; changed loss weights apply from there on). ``data``: which clips
    (``DATA``)."""

    folder: str
    iters: int
    args: tuple[str, ...]
    init: str | None
    data: str = "webcam"


# Each kind of clip: its folder under the runs root.
DATA = {"rigid": "demo-data", "webcam": "demo-data-v2", "blinks": "demo-data-v3"}


# What the shipped file went through, in order (docs/training.md has the measurements behind each step).
STAGES = {
    "v1": [Stage("demo", 9_799, ("--vgg-weights", "none", "--gan-weight", "0"), None, data="rigid")],
    "v2": [Stage("demo-v2", 3_492, tuple(PERCEPTUAL), "demo")],
    # v3: the weights were raised while watching the flow error and the face masks; then final phases at lr/4 and lr/8
    "v3": [Stage("demo-v3a", 657, (*PERCEPTUAL, *RIGID, "--flow-weight", "50"), "demo-v2"),
           Stage("demo-v3", 471, (*PERCEPTUAL, *RIGID, "--flow-weight", "50", "--mask-weight", "20"), "demo-v3a"),
           Stage("demo-v3", 3_429, (*PERCEPTUAL, *RIGID, "--flow-weight", "200", "--mask-weight", "40"), None),
           Stage("demo-v3", 5_197, tuple(V3_LAST), None),
           Stage("demo-v3", 6_519, (*V3_LAST, "--lr", "0.0005"), None),
           Stage("demo-v3", V3_ITERS, (*V3_LAST, "--lr", "0.00025"), None)],
    # v4: v3 on clips with more blinks (sources with shut eyes); from 1,815 on without the mask term (it held the
    # fine masks open over the eyes too) and with one rigid pair of four; then a final phase at lr/8
    "v4": [Stage("demo-v4", 1_815, (*V3_LAST, "--lr", "0.0005"), "demo-v3", data="blinks"),
           Stage("demo-v4", 3_402, (*PERCEPTUAL, *V4_RIGID, "--lr", "0.0005"), None, data="blinks"),
           Stage("demo-v4", V4_ITERS, (*PERCEPTUAL, *V4_RIGID, "--lr", "0.00025"), None, data="blinks")],
}


def stages(recipe: str = "v4") -> list[Stage]:
    """Every stage ``recipe`` needs, its predecessors' first (v4 needs v3, which needs v2, then v1)."""
    order = list(STAGES)
    return [st for r in order[:order.index(recipe) + 1] for st in STAGES[r]]


def train_args(data: Path, runs: Path, stage: Stage, minutes: float) -> list[str]:
    """The trainer command line of one stage."""
    args = ["--preset", "vox", "--data", str(data), "--out", str(runs / stage.folder), *MODEL_ARGS,
            "--batch-size", "4", "--iters", str(stage.iters), "--max-minutes", str(minutes), "--workers", "0",
            "--log-every", "10", "--resume", "auto", "--no-progress", "--save-every", "200", "--keep", "200",
            "--image-every", "1000", *stage.args]
    if stage.init is not None:
        from train.checkpoints import newest_checkpoint

        init = newest_checkpoint(runs / stage.init / "checkpoints")
        if init is None:
            raise SystemExit(f"train_demo: stage {stage.folder} starts from {stage.init}, which has no checkpoint")
        args += ["--init", str(init)]
    return args


def reached(runs: Path, stage: Stage) -> bool:
    from train.checkpoints import newest_checkpoint

    ckpt = newest_checkpoint(runs / stage.folder / "checkpoints")
    return ckpt is not None and int(ckpt.stem.split("-")[-1]) >= stage.iters


def make_data(runs: Path, stage: Stage) -> Path:
    """The stage's synthetic clips (v1: rigid moves of the portrait; later: webcam-like clips, v4's with more
    blinks), made once."""
    from make_demo_data import load_pictures, write_dataset, write_webcam_dataset

    data = runs / DATA[stage.data]
    if not (data / "train").is_dir():
        if stage.data == "rigid":
            write_dataset(data, load_pictures(["astronaut"]), size=128, clips=48, frames=40, test_clips=4)
        elif stage.data == "blinks":  # eyes closed in half the frames (a fifth in "webcam"): shut-eyed sources
            write_webcam_dataset(data, size=128, clips=64, frames=40, test_clips=2, seed=1, blink_low=-1.0)
        else:
            write_webcam_dataset(data, size=128, clips=64, frames=40, test_clips=2, seed=0)
    return data


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


def curve(run: Path, clips: dict[str, Path], every: int = 1000) -> list[dict]:
    """lia-eval (same identity, all metrics) of every ``every``-th iteration's checkpoint on each clip, and the
    newest one, with the training loss of the 100 iterations before it."""
    from lia_live.evaluation.runner import run_evaluation
    from lia_live.settings import EvalConfig, ModelConfig
    from train.checkpoints import list_checkpoints

    losses = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines() if line.strip()]
    rows = []
    ckpts = list_checkpoints(run / "checkpoints")
    for ckpt in ckpts:
        it = int(ckpt.stem.split("-")[-1])
        if it % every and ckpt != ckpts[-1]:
            continue
        near = [r for r in losses if it - 100 < r["iter"] <= it]
        row = {"iter": it, "train_l1": sum(r["l1"] for r in near) / max(len(near), 1)}
        for name, root in clips.items():
            cfg = EvalConfig(model=ModelConfig(checkpoint=ckpt, device="cpu"), data=root,
                             out=run / "curve" / f"{it}-{name}", domain="face", progress=False)
            res = run_evaluation(cfg, log=lambda _msg: None)["overall"]
            for metric in ("l1", "lpips", "aed", "akd", "akd_fail"):
                row[f"{name}_{metric}"] = res.get(metric)
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
    from lia_live.options import float_range

    p.add_argument("--recipe", choices=tuple(STAGES), default="v4",
                   help="v1: L1 only; v2: + perceptual loss; v3: + rigid pairs with flow and mask terms; "
                        "v4 (shipped): + clips with more blinks, no mask term")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder of the data and of every stage's run")
    p.add_argument("--minutes", type=float_range(0, 10_000, lo_open=True), default=600.0,
                   help="wall-time limit of each stage (it saves and stops; rerun to continue)")
    p.add_argument("--asset", type=Path, default=ASSET, help="where to write the generator")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --asset")
    p.add_argument("--export-only", action="store_true",
                   help="skip training; export the last stage's newest checkpoint")
    p.add_argument("--curve-only", action="store_true", help="only print the curve of the last stage")
    p.add_argument("--no-curve", action="store_true", help="skip the curve after training")
    a = p.parse_args(argv)
    plan = stages(a.recipe)
    last = a.runs / plan[-1].folder
    if a.curve_only:
        curve(last, eval_clips(a.runs / "demo-eval"))
        return 0
    if a.asset.exists() and not a.overwrite:
        print(f"train_demo: {a.asset} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not a.export_only:
        from train.run import main as train_main

        for stage in plan:
            if reached(a.runs, stage):
                continue
            args = train_args(make_data(a.runs, stage), a.runs, stage, a.minutes)
            print("train_demo: python -m train.run " + shlex.join(args), flush=True)
            rc = train_main(args)
            if rc:
                return rc
            if not reached(a.runs, stage):
                print(f"train_demo: stage {stage.folder} stopped before iteration {stage.iters}; rerun to continue",
                      file=sys.stderr)
                return 1
        if a.recipe != "v1" and not a.no_curve:
            curve(last, eval_clips(a.runs / "demo-eval"))
    export(last, a.asset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
