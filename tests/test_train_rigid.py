"""Rigid pairs with a known flow (train/rigid.py): the targets, the probe on a real generator, the trainer term."""

from __future__ import annotations

import json
import math

import pytest
import torch
from media import write_png_clips

from lia_live.model import Generator, GeneratorConfig
from train.config import preset_config
from train.rigid import FlowProbe, flow_loss, mask_loss, random_similarity, target_grid, warp
from train.trainer import Trainer


def test_random_similarities_stay_in_their_ranges_and_follow_the_seed():
    theta = random_similarity(256, torch.Generator().manual_seed(0))  # (256, 2, 3)
    a, b = theta[:, 0, 0], theta[:, 1, 0]  # s·cos, s·sin
    scale, angle = torch.hypot(a, b), torch.rad2deg(torch.atan2(b, a))
    assert torch.equal(theta[:, 0, 1], -b) and torch.equal(theta[:, 1, 1], a)  # a rotation and scale, no shear
    assert 0.85 <= scale.min() and scale.max() <= 1.15 and angle.abs().max() <= 15 + 1e-4
    assert theta[:, :, 2].abs().max() <= 0.1
    assert scale.max() - scale.min() > 0.25 and angle.max() - angle.min() > 25  # the ranges are used
    assert torch.equal(theta, random_similarity(256, torch.Generator().manual_seed(0)))


def test_warp_moves_content_where_the_target_grid_says():
    """A 2-pixel shift to the right: pixel x of the output shows pixel x − 2 of the input."""
    img = torch.zeros(1, 3, 16, 16)
    img[:, :, 5, 7] = 1.0
    theta = torch.tensor([[[1.0, 0.0, -2 * 2 / 16], [0.0, 1.0, 0.0]]])
    out = warp(img, theta)
    assert out[0, 0, 5, 9] == pytest.approx(1.0, abs=1e-5) and out.sum() == pytest.approx(3.0, abs=1e-4)
    # the target at a level is where the output pixel's content lives in the source, in grid_sample's space
    grid = target_grid(theta, 16)  # (1, 16, 16, 2)
    assert grid[0, 5, 9, 0] * 8 + 7.5 == pytest.approx(7.0, abs=1e-5)


def test_probe_reads_every_level_and_the_loss_is_zero_only_on_the_true_flow():
    torch.manual_seed(0)
    gen = Generator.from_config(GeneratorConfig(size=64, style_dim=64, motion_dim=8, channel_div=16)).eval()
    probe = FlowProbe(gen)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        gen(x, x)
    assert [f.shape for f in probe.flows] == [(2, s, s, 2) for s in (8, 16, 32, 64)]
    theta = random_similarity(1, torch.Generator().manual_seed(1))
    true = [torch.cat([f[:1], target_grid(theta, f.shape[1])]) for f in probe.flows]
    assert flow_loss(true, theta).item() == pytest.approx(0.0, abs=1e-7)
    off = [f + torch.tensor([0.01, -0.03]) for f in true]
    assert flow_loss(off, theta).item() == pytest.approx(4 * 0.02, rel=1e-4)  # 4 levels × mean(|0.01|, |0.03|)
    assert [m.shape for m in probe.masks] == [(2, 1, s, s) for s in (8, 16, 32, 64)]
    assert all(0 < m.min() and m.max() < 1 for m in probe.masks)
    masks = [torch.full((2, 1, s, s), 0.1) for s in (8, 16, 32, 64)]
    masks[-1][1] = 0.5  # the last sample at the finest level
    assert mask_loss(masks, 1).item() == pytest.approx((0.5 + 0.9) / 2)  # the two finest levels only
    probe.close()
    probe.clear()
    with torch.no_grad():
        gen(x, x)
    assert probe.flows == []  # hooks removed


def test_trainer_replaces_the_last_pairs_and_learns_the_flow(tmp_path):
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=4, seed=4)
    cfg = preset_config("tiny")
    cfg.data, cfg.out, cfg.progress = str(data), str(tmp_path / "run"), False
    cfg.iters, cfg.batch_size, cfg.rigid_pairs, cfg.flow_weight, cfg.log_every = 30, 2, 1, 10.0, 1
    cfg.mask_weight = 10.0
    trainer = Trainer(cfg, torch.device("cpu"))
    src, drv = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    new, theta = trainer._rigid_pairs(src, drv, iteration=7, micro=0)
    assert torch.equal(new[0], drv[0]) and torch.equal(new[1], warp(src[1:], theta)[0])
    again, theta2 = trainer._rigid_pairs(src, drv, iteration=7, micro=0)
    assert torch.equal(theta, theta2) and not torch.equal(theta, trainer._rigid_pairs(src, drv, 8, 0)[1])
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    flows = [r["flow"] for r in rows]
    assert len(flows) == 30 and all(math.isfinite(f) and f > 0 for f in flows)
    assert sum(flows[-5:]) / 5 < 0.7 * sum(flows[:5]) / 5, flows  # the flow term is trained
    masks = [r["mask"] for r in rows]
    assert sum(masks[-5:]) / 5 < 0.8 * sum(masks[:5]) / 5, masks  # and the fine masks open


def test_the_official_recipe_has_no_flow_term(tmp_path):
    cfg = preset_config("vox")
    assert cfg.rigid_pairs == 0 and cfg.flow_weight == 0.0
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=4, seed=5)
    cfg = preset_config("tiny")
    cfg.data, cfg.out, cfg.progress = str(data), str(tmp_path / "r"), False
    cfg.iters, cfg.batch_size, cfg.log_every = 2, 2, 1
    trainer = Trainer(cfg, torch.device("cpu"))
    assert trainer.flow_probe is None
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "r" / "losses.jsonl").read_text().splitlines()]
    assert [(r["flow"], r["mask"]) for r in rows] == [(0.0, 0.0)] * 2
