"""The LIA training loop, as the official trainer runs it, on one or many processes.

Per iteration (``shared/notes/lia-training-recipe.md`` §1.8): a G step on
``L1 + VGG pyramid + softplus(−D(recon))`` with D frozen, then a D step on
``softplus(−D(driving)) + softplus(D(recon.detach()))`` with the reconstruction from before the G
step; optional lazy R1 every ``d_reg_every`` iterations. Gradient accumulation splits each rank's share
of the global batch into ``accum`` micro-batches.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lia_live.errors import UserError
from lia_live.fsutil import write_atomic
from lia_live.log import progress_bar
from lia_live.model import Generator, GeneratorConfig
from lia_live.model.checkpoint import _strip_prefix, build_generator, read_generator_state
from lia_live.signals import Stopper

from . import dist
from .checkpoints import (
    list_checkpoints,
    load_checkpoint,
    newest_checkpoint,
    newest_readable_before,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig, dumps
from .data import PairDataset, RankBatchSampler, display_batch, find_videos, make_loader
from .discriminator import Discriminator
from .losses import VGGPyramidLoss, d_logistic, g_nonsaturating, load_vgg19_features, r1_penalty
from .rigid import FlowProbe, flow_loss, mask_loss, random_similarity, warp

LOSS_NAMES = ("l1", "vgg", "g_gan", "g_total", "d_loss", "d_real", "d_fake", "r1", "flow", "mask")


class StopFlag(Stopper):
    """SIGTERM / SIGINT ask the loop to save and exit; a second SIGINT interrupts at once (the shared Stopper)."""

    def __init__(self):
        super().__init__("saving a checkpoint and exiting (Ctrl-C again to abort without saving)",
                         say=lambda msg: dist.eprint(f"train: got {msg}"))


def _autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Builds models, optimisers, data and logging from a TrainConfig; ``run()`` trains to ``cfg.iters``."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.world = dist.world_size()
        self.rank = dist.rank()
        cfg.validate(self.world)
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.stop = StopFlag()
        resume_path = self._resume_path()

        gcfg = cfg.generator
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.gen = Generator.from_config(gcfg).to(device)
        self.dis = Discriminator(cfg.generator.size, 1, cfg.d_channel_div, cfg.stddev_group).to(device)
        if cfg.init and resume_path is None:
            self._load_init(cfg.init, gcfg)
        self.g_optim = torch.optim.Adam(self.gen.parameters(), lr=cfg.g_lr, betas=cfg.g_betas)
        self.d_optim = torch.optim.Adam(self.dis.parameters(), lr=cfg.d_lr, betas=cfg.d_betas)
        self.start_iter = 0
        if resume_path is not None:
            self._load_resume(resume_path, gcfg)
        if resume_path is None or self.rank != 0:  # rank 0 of a resumed run keeps its restored RNG state
            dist.seed_all(cfg.seed + 1 + self.start_iter)

        if self.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            # dec.to_rgb1 exists (official weights) but the forward never uses it, as upstream.
            self.gen_ddp: Any = nn.parallel.DistributedDataParallel(self.gen, device_ids=ids,
                                                               find_unused_parameters=True)
            self.dis_ddp: Any = nn.parallel.DistributedDataParallel(
                self.dis, device_ids=ids, broadcast_buffers=False)
        else:
            self.gen_ddp, self.dis_ddp = self.gen, self.dis

        self.vgg = self._build_vgg()
        self.flow_probe = FlowProbe(self.gen) if cfg.rigid_pairs and max(cfg.flow_weight, cfg.mask_weight) > 0 else None
        videos = find_videos(cfg.data, cfg.split)
        self.dataset = PairDataset(videos, cfg.generator.size, cfg.seed, cfg.crop, cfg.flip, cfg.jitter)
        self.sampler = RankBatchSampler(cfg.batch_size, self.rank, self.world, cfg.accum, self.start_iter,
                                        cfg.iters)
        self.loader = make_loader(self.dataset, self.sampler, cfg.workers, device.type == "cuda")
        self.writer = None
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    # -- set-up -------------------------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        cfg = self.cfg
        if cfg.resume == "auto":
            path = newest_checkpoint(self.ckpt_dir)
            if path is None:
                dist.print0(f"train: --resume auto: no checkpoint in {self.ckpt_dir}; starting from scratch")
            return path
        if cfg.resume:
            path = Path(cfg.resume)
            if not path.is_file():
                raise UserError(f"--resume: checkpoint not found: {path}")
            return path
        if list_checkpoints(self.ckpt_dir):
            raise UserError(f"{self.ckpt_dir} already holds checkpoints; pass --resume auto to continue that run "
                            f"or choose another --out")
        return None

    def _load_init(self, path: str, gcfg: GeneratorConfig) -> None:
        sd, stored_cfg, full = read_generator_state(path)
        gen = build_generator(sd, stored_cfg, source=path)
        if gen.config != gcfg:
            raise UserError(f"--init {path} holds a generator with {gen.config.to_dict()}, but the run is configured "
                            f"for {gcfg.to_dict()}; set --size/--style-dim/--motion-dim/--channel-div to match")
        self.gen.load_state_dict(gen.state_dict())
        if isinstance(full.get("dis"), dict):
            try:
                self.dis.load_state_dict(_strip_prefix(full["dis"]), strict=True)
            except RuntimeError as e:
                raise UserError(f"--init {path}: its discriminator does not match this run's "
                                f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e})") from None
            dist.print0(f"train: initialised G and D from {path}")
        else:
            dist.print0(f"train: initialised G from {path} (it has no discriminator; D starts from scratch)")

    def _load_resume(self, path: Path, gcfg: GeneratorConfig) -> None:
        try:
            ckpt = load_checkpoint(path)
        except UserError as e:
            if self.cfg.resume != "auto":
                raise
            older = newest_readable_before(path)
            hint = (f"the newest readable one is {older}: pass --resume {older}" if older is not None
                    else "no older checkpoint there can be read either")
            raise UserError(f"--resume auto: the newest checkpoint is damaged ({e}); {hint}, or move "
                            f"{path.name} away") from None
        if GeneratorConfig.from_dict(ckpt["config"]) != gcfg:
            raise UserError(f"{path} was trained with generator {ckpt['config']}, but this run asks for "
                            f"{gcfg.to_dict()}; resume with the same model options")
        try:
            self.gen.load_state_dict(ckpt["gen"])
            self.dis.load_state_dict(ckpt["dis"])
            self.g_optim.load_state_dict(ckpt["g_optim"])
            self.d_optim.load_state_dict(ckpt["d_optim"])
        except (RuntimeError, ValueError) as e:
            raise UserError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None
        self._apply_optim_settings()
        if self.rank == 0 and isinstance(ckpt.get("rng"), dict):
            set_rng_state(ckpt["rng"])
        self.start_iter = int(ckpt["iter"])
        dist.print0(f"train: resumed from {path} at iteration {self.start_iter}")

    def _apply_optim_settings(self) -> None:
        """The configured lr and betas win over the ones saved in the optimiser state (a resumed run may lower
        ``--lr`` for a final phase); the moment estimates are kept. A change is printed."""
        cfg = self.cfg
        for name, optim, lr, betas in (("G", self.g_optim, cfg.g_lr, cfg.g_betas),
                                       ("D", self.d_optim, cfg.d_lr, cfg.d_betas)):
            old = optim.param_groups[0]
            changes = []
            if old["lr"] != lr:
                changes.append(f"lr {old['lr']:.6g} → {lr:.6g}")
            if tuple(old["betas"]) != tuple(betas):
                changes.append(f"betas {tuple(old['betas'])} → {tuple(betas)}")
            if changes:
                dist.print0(f"train: {name} {', '.join(changes)} (from this run's options)")
            for group in optim.param_groups:
                group["lr"], group["betas"] = lr, tuple(betas)

    def _build_vgg(self) -> VGGPyramidLoss | None:
        cfg = self.cfg
        if cfg.vgg_weights == "none" or cfg.vgg_weight == 0:
            return None
        feats = None
        if self.rank == 0:  # rank 0 downloads into the torchvision cache first
            feats = load_vgg19_features(cfg.vgg_weights)
        dist.barrier()
        if feats is None:
            feats = load_vgg19_features(cfg.vgg_weights)
        return VGGPyramidLoss(feats, cfg.vgg_scales, (cfg.vgg_weight,) * 5).to(self.device)

    # -- one iteration ------------------------------------------------------------------------------
    def _batches(self, data_iter) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for _ in range(self.cfg.accum):
            src, drv = next(data_iter)
            out.append((src.to(self.device, non_blocking=True), drv.to(self.device, non_blocking=True)))
        return out

    def _rigid_pairs(self, src: torch.Tensor, drv: torch.Tensor, iteration: int, micro: int):
        """The last ``--rigid-pairs`` driving frames replaced by random similarity moves of their sources
        (``train.rigid``); returns (driving, θ or None). Seeded by (seed, iteration, rank, micro-batch)."""
        k = min(self.cfg.rigid_pairs, src.shape[0])
        if k == 0:
            return drv, None
        gen = torch.Generator().manual_seed(((self.cfg.seed * 1_000_003 + iteration) * 1_009 + self.rank) * 101 + micro)
        theta = random_similarity(k, gen)
        return torch.cat([drv[:-k], warp(src[-k:], theta).to(drv.dtype)]), theta

    def step(self, data_iter, iteration: int) -> torch.Tensor:
        """One G step and one D step over the global batch; returns this rank's loss terms (LOSS_NAMES)."""
        cfg = self.cfg
        batches = self._batches(data_iter)
        thetas = []
        for m, (src, drv) in enumerate(batches):
            drv, theta = self._rigid_pairs(src, drv, iteration, m)
            batches[m] = (src, drv)
            thetas.append(theta)
        terms = torch.zeros(len(LOSS_NAMES), device=self.device)  # (10,)
        self.gen.train()
        self.dis.train()
        recons = self._g_step(batches, thetas, terms)
        if cfg.gan_weight == 0 and cfg.r1 == 0:
            return terms  # no adversarial term: D is not trained (L1/VGG-only runs)
        self._d_step(batches, recons, terms)
        if cfg.r1 > 0 and iteration % cfg.d_reg_every == 0:
            self._r1_step(batches, terms)
        return terms

    def _no_sync(self, ddp, m: int):
        """Gradient accumulation: DDP all-reduces only on the last micro-batch ``m`` of the step."""
        return ddp.no_sync() if self.world > 1 and m < self.cfg.accum - 1 else contextlib.nullcontext()

    def _g_step(self, batches: list, thetas: list, terms: torch.Tensor) -> list[torch.Tensor]:
        """The generator's update (L1, VGG, GAN and the rigid-pair terms); returns the detached outputs."""
        cfg, n = self.cfg, self.cfg.accum
        self.dis.requires_grad_(False)
        recons = []
        for m, (src, drv) in enumerate(batches):
            with self._no_sync(self.gen_ddp, m):
                if self.flow_probe is not None:
                    self.flow_probe.clear()
                with _autocast(self.device, cfg.amp):
                    recon = self.gen_ddp(src, drv)  # (b, 3, S, S)
                    l1 = F.l1_loss(recon.float(), drv.float())
                    vgg = self.vgg(recon, drv) if self.vgg is not None else recon.new_zeros((), dtype=torch.float32)
                    gan = g_nonsaturating(self.dis(recon)) if cfg.gan_weight > 0 else torch.zeros_like(l1)
                g_loss = cfg.l1_weight * l1 + vgg + cfg.gan_weight * gan
                theta = thetas[m]
                if self.flow_probe is not None and theta is not None:
                    flow = flow_loss(self.flow_probe.flows, theta)
                    mask = mask_loss(self.flow_probe.masks, theta.shape[0])
                    g_loss = g_loss + cfg.flow_weight * flow + cfg.mask_weight * mask
                    terms[8:10] += torch.stack([flow, mask]).detach() / n
                (g_loss / n).backward()
            recons.append(recon.detach())
            terms[:4] += torch.stack([l1, vgg, gan, g_loss]).detach() / n
        self.g_optim.step()
        self.g_optim.zero_grad(set_to_none=True)
        return recons

    def _d_step(self, batches: list, recons: list, terms: torch.Tensor) -> None:
        """The discriminator's logistic update on real driving frames vs the generator's outputs."""
        n = self.cfg.accum
        self.dis.requires_grad_(True)
        for m, ((_, drv), recon) in enumerate(zip(batches, recons)):
            with self._no_sync(self.dis_ddp, m):
                with _autocast(self.device, self.cfg.amp):
                    logits = self.dis_ddp(torch.cat([drv, recon.to(drv.dtype)]))  # (2b, 1)
                real, fake = logits.float().chunk(2)
                d_loss = d_logistic(real, fake)
                (d_loss / n).backward()
            terms[4:7] += torch.stack([d_loss, real.mean(), fake.mean()]).detach() / n
        self.d_optim.step()
        self.d_optim.zero_grad(set_to_none=True)

    def _r1_step(self, batches: list, terms: torch.Tensor) -> None:
        """The lazy R1 penalty on real frames (every ``d_reg_every`` iterations, scaled by that interval)."""
        cfg, n = self.cfg, self.cfg.accum
        for m, (_, drv) in enumerate(batches):
            with self._no_sync(self.dis_ddp, m):
                real = drv.detach().requires_grad_(True)
                logits = self.dis_ddp(real)  # (b, 1)
                r1 = r1_penalty(logits, real)
                (cfg.r1 / 2 * r1 * cfg.d_reg_every / n).backward()
            terms[7] += r1.detach() / n
        self.d_optim.step()
        self.d_optim.zero_grad(set_to_none=True)

    # -- logging ------------------------------------------------------------------------------------
    def _open_writer(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            dist.print0("train: tensorboard is not installed; no TensorBoard logs (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.out / "tb"), purge_step=self.start_iter + 1)

    def _log_images(self, iteration: int) -> None:
        if self.writer is None:
            return
        from torchvision.utils import make_grid

        src, drv = self._display
        was_training = self.gen.training
        self.gen.eval()
        with torch.no_grad():
            recon = self.gen(src, drv).clamp(-1, 1)  # (n, 3, S, S)
        self.gen.train(was_training)
        rows = torch.stack([src, drv, recon], dim=1).flatten(0, 1)  # (3n, 3, S, S): src | drv | recon per row
        grid = make_grid((rows.float().cpu() + 1) / 2, nrow=3, padding=2)
        self.writer.add_image("source|driving|reconstruction", grid, iteration)

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train from the start/resume iteration to ``cfg.iters``; returns a summary (also saved as JSON)."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / "config.json", dumps(cfg) + "\n")
        if self.start_iter >= cfg.iters:
            dist.print0(f"train: already at iteration {self.start_iter} >= --iters {cfg.iters}; nothing to do")
            return {"iter": self.start_iter, "stopped": False}
        self.writer = self._open_writer()
        if self.rank == 0:
            self._display = tuple(t.to(self.device) for t in display_batch(self.dataset))
        bar = progress_bar(cfg.iters, "train", unit="it", enabled=self.rank == 0 and cfg.progress,
                           initial=self.start_iter)
        it, saved_at, stopped = self.start_iter, self.start_iter, False
        t_last, it_last = time.perf_counter(), self.start_iter
        t_start = t_last
        data_iter = self._data_iter = iter(self.loader)
        with self.stop:
            while it < cfg.iters:
                terms = self.step(data_iter, it)
                it += 1
                if it % cfg.log_every == 0 or it == cfg.iters:
                    means = dist.all_mean(terms).tolist()
                    now = time.perf_counter()
                    its = (it - it_last) / max(now - t_last, 1e-9)
                    t_last, it_last = now, it
                    if self.rank == 0:
                        self._log_scalars(it, dict(zip(LOSS_NAMES, means)), its)
                        bar.set_postfix(l1=f"{means[0]:.4f}", vgg=f"{means[1]:.3f}", d=f"{means[4]:.3f}")
                if self.rank == 0 and it % cfg.image_every == 0:
                    self._log_images(it)
                bar.update(1)
                out_of_time = cfg.max_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.max_minutes
                stopped = dist.any_true(self.stop.requested or out_of_time, self.device)
                if it % cfg.save_every == 0 or it == cfg.iters or stopped:
                    self._save(it)
                    saved_at = it
                if stopped:
                    break
            if saved_at != it:
                self._save(it)
        bar.close()
        self._close_data()
        summary = {"iter": it, "stopped": stopped, "world_size": self.world,
                   "rank_max_param_diff_gen": dist.max_param_diff(self.gen),
                   "rank_max_param_diff_dis": dist.max_param_diff(self.dis),
                   "checkpoint": str(self.ckpt_dir / f"ckpt-{it:07d}.pt")}
        if self.rank == 0:
            write_atomic(self.out / "summary.json", json.dumps(summary, indent=2))
            self._close_writer()
            dist.print0(f"train: {'stopped' if stopped else 'finished'} at iteration {it}; "
                        f"checkpoint {summary['checkpoint']}")
        return summary

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()  # joins its event-file thread
            self.writer = None

    def _close_data(self) -> None:
        """Stop the DataLoader iterator's worker processes now (not whenever the garbage collector runs)."""
        it, self._data_iter = getattr(self, "_data_iter", None), None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def close(self) -> None:
        """Release, in order, everything that runs beside the main thread or holds the process group:
        the TensorBoard writer (a thread), the DataLoader workers (processes), the DDP wrappers (they hold
        the process group and its gradient buckets). Safe to call twice and after a failure."""
        self._close_writer()
        self._close_data()
        self.loader = None
        self.gen_ddp = self.dis_ddp = None
        gc.collect()

    def _log_scalars(self, it: int, losses: dict[str, float], its: float) -> None:
        record = {"iter": it, **losses, "it_s": its, "images_s": its * self.cfg.batch_size}
        with open(self.out / "losses.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is None:
            return
        for k, v in losses.items():
            self.writer.add_scalar(f"loss/{k}", v, it)
        self.writer.add_scalar("lr/g", self.g_optim.param_groups[0]["lr"], it)
        self.writer.add_scalar("lr/d", self.d_optim.param_groups[0]["lr"], it)
        self.writer.add_scalar("speed/it_s", its, it)
        self.writer.add_scalar("speed/images_s", its * self.cfg.batch_size, it)

    def _save(self, it: int) -> None:
        if self.rank == 0:
            save_checkpoint(self.ckpt_dir, it, self.gen, self.dis, self.g_optim, self.d_optim,
                            self.cfg.to_dict(), self.cfg.keep)
        dist.barrier()
