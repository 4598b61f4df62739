"""End-to-end trainer runs on the CPU: overfitting, SIGTERM + resume, torchrun DDP, lia-animate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from itertools import permutations
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media import write_png_clips

from lia_live.model.checkpoint import load_generator
from train.checkpoints import newest_checkpoint
from train.config import preset_config
from train.data import find_videos, read_frame, to_tensor
from train.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent

CPU = torch.device("cpu")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def tiny(data: Path, out: Path, **over):
    cfg = preset_config("tiny")
    cfg.data, cfg.out, cfg.progress = str(data), str(out), False
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def losses(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    return {r["iter"]: r for r in rows}


def pair_l1(gen, data: Path) -> float:
    """Mean |G(src, drv) − drv| over every ordered pair of distinct frames of every clip."""
    total, n = 0.0, 0
    gen.eval()
    with torch.no_grad():
        for v in find_videos(data):
            frames = [to_tensor(read_frame(v, i), gen.size) for i in range(v.count)]
            src = torch.stack([frames[i] for i, _ in permutations(range(v.count), 2)])  # (P, 3, S, S)
            drv = torch.stack([frames[j] for _, j in permutations(range(v.count), 2)])  # (P, 3, S, S)
            total += (gen(src, drv) - drv).abs().mean().item() * len(src)
            n += len(src)
    return total / n


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("overfit")
    data = write_png_clips(root / "data", n_clips=2, n_frames=4)
    cfg = tiny(data, root / "run", iters=60, batch_size=2, save_every=30)
    trainer = Trainer(cfg, CPU)
    before = pair_l1(trainer.gen, data)
    t0 = time.perf_counter()
    summary = trainer.run()
    seconds = time.perf_counter() - t0
    return {"data": data, "out": root / "run", "before": before, "summary": summary, "seconds": seconds,
            "after": pair_l1(load_generator(newest_checkpoint(root / "run" / "checkpoints")), data)}


def test_tiny_preset_overfits_synthetic_clips(overfit):
    curve = losses(overfit["out"])
    assert sorted(curve) == list(range(1, 61))
    print(f"\ntiny overfit: pair L1 {overfit['before']:.4f} -> {overfit['after']:.4f}; batch L1 "
          + " ".join(f"{i}:{curve[i]['l1']:.3f}" for i in (1, 10, 20, 30, 40, 50, 60))
          + f"; {60 / overfit['seconds']:.2f} it/s")
    assert overfit["after"] < 0.5 * overfit["before"]
    assert np.mean([curve[i]["l1"] for i in range(56, 61)]) < 0.6 * np.mean([curve[i]["l1"] for i in range(1, 6)])
    assert overfit["summary"]["iter"] == 60 and not overfit["summary"]["stopped"]
    saved = json.loads((overfit["out"] / "config.json").read_text())
    assert saved["iters"] == 60 and saved["preset"] == "tiny"
    assert (overfit["out"] / "tb").is_dir() and any((overfit["out"] / "tb").iterdir())


def test_checkpoint_animates_with_lia_animate(overfit, tmp_path):
    from lia_live.cli.animate import main as animate

    clip = overfit["data"] / "train" / "clip0"
    out = tmp_path / "out.mp4"
    rc = animate(["--source", str(clip / "00000.png"), "--driving", str(clip), "--output", str(out),
                  "--checkpoint", str(newest_checkpoint(overfit["out"] / "checkpoints")), "--device", "cpu",
                  "--no-progress", "--fps", "10"])
    assert rc == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 4


def test_sigterm_saves_and_resume_auto_reproduces_the_losses(tmp_path):
    """A real SIGTERM to a real ``train.run`` process, sent by the process itself right after iteration 2's
    losses are logged (a gate, not a timer): the run stops at exactly iteration 2, saves, and exits 0."""
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=4, seed=1)
    cut = tmp_path / "cut"
    args = ["--preset", "tiny", "--data", str(data), "--out", str(cut), "--iters", "1000", "--batch-size", "2",
            "--save-every", "1000", "--no-progress"]
    gate = textwrap.dedent("""
        import os, signal, sys
        from train import trainer
        log_scalars = trainer.Trainer._log_scalars
        def log_then_sigterm(self, it, *a):
            log_scalars(self, it, *a)
            if it == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        trainer.Trainer._log_scalars = log_then_sigterm
        from train.run import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run([sys.executable, "-c", gate, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((cut / "summary.json").read_text())
    k = summary["iter"]
    assert summary["stopped"] and k == 2 and "SIGTERM" in proc.stderr
    assert newest_checkpoint(cut / "checkpoints").name == "ckpt-0000002.pt"
    assert [r["iter"] for r in map(json.loads, (cut / "losses.jsonl").read_text().splitlines())] == [1, 2]

    Trainer(tiny(data, cut, iters=k + 2, batch_size=2, save_every=1000, resume="auto"), CPU).run()
    whole = tmp_path / "whole"
    Trainer(tiny(data, whole, iters=k + 2, batch_size=2, save_every=1000), CPU).run()
    a, b = losses(cut), losses(whole)
    assert sorted(a) == sorted(b) == list(range(1, k + 3))
    for i in range(1, k + 3):
        for name in ("l1", "g_gan", "g_total", "d_loss"):
            assert a[i][name] == pytest.approx(b[i][name], rel=1e-5, abs=1e-7), (i, name)
    ga = load_generator(newest_checkpoint(cut / "checkpoints")).state_dict()
    gb = load_generator(newest_checkpoint(whole / "checkpoints")).state_dict()
    assert all(torch.allclose(ga[n], gb[n], atol=1e-6) for n in ga)


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    """gloo, 2 ranks × 2 images vs 1 process × 4 images (D's stddev group 2 divides both)."""
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=3, n_frames=4, seed=2)
    common = ["--preset", "tiny", "--data", str(data), "--iters", "3", "--batch-size", "4", "--stddev-group", "2",
              "--save-every", "1000", "--no-progress"]
    ddp = tmp_path / "ddp"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "train.run", *common, "--out", str(ddp)], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=400)
    # A finished run never reports failure: ranks leave through train.dist.exit_process (no interpreter
    # finalisation racing gloo's threads: the old "terminate called without an active exception" abort).
    assert out.returncode == 0 and "terminate called" not in out.stderr, out.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["rank_max_param_diff_gen"] == 0.0 and summary["rank_max_param_diff_dis"] == 0.0

    one = tmp_path / "one"
    cfg = tiny(data, one, iters=3, batch_size=4, stddev_group=2, save_every=1000)
    trainer = Trainer(cfg, CPU)
    init = {k: v.clone() for k, v in trainer.gen.state_dict().items()}
    trainer.run()
    a, b = losses(ddp), losses(one)
    for i in (1, 2, 3):
        for name in ("l1", "g_gan", "d_loss", "d_real", "d_fake"):
            assert a[i][name] == pytest.approx(b[i][name], rel=1e-4, abs=1e-6), (i, name)
    ck_a = torch.load(ddp / "checkpoints" / "ckpt-0000003.pt", weights_only=True)
    ck_b = torch.load(one / "checkpoints" / "ckpt-0000003.pt", weights_only=True)
    # Adam's first steps are ≈ lr·sign(g): a gradient within rounding of 0 may flip sign between the two
    # summation orders and move one weight by up to 2·lr. So compare norms: the DDP/one-process gap must
    # be tiny next to what training moved, and no weight may differ by more than two Adam steps.
    moved = sum((ck_b["gen"][n] - init[n]).norm() ** 2 for n in init) ** 0.5
    gap = sum((ck_a["gen"][n] - ck_b["gen"][n]).norm() ** 2 for n in init) ** 0.5
    gap_d = sum((ck_a["dis"][n] - ck_b["dis"][n]).norm() ** 2 for n in ck_b["dis"]) ** 0.5
    worst = max((ck_a[p][n] - ck_b[p][n]).abs().max().item() for p in ("gen", "dis") for n in ck_a[p])
    print(f"\nDDP vs one process after 3 its: |Δθ_G| = {gap:.2e}, |Δθ_D| = {gap_d:.2e}, max |Δθ| = {worst:.2e}; "
          f"training moved |θ3 − θ0|_G = {moved:.2e}")
    # measured: gap ≈ 1e-3·moved (rounding); ranks that did not average gradients would differ by
    # ≈ lr per weight per step, i.e. a gap of ≈ 0.3·moved.
    assert gap < 1e-2 * moved and gap_d < 1e-2 * moved
    assert worst < 2 * cfg.g_lr


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=3, n_frames=3, seed=3)
    runs = {}
    for accum in (1, 2):
        out = tmp_path / f"acc{accum}"
        Trainer(tiny(data, out, iters=2, batch_size=4, accum=accum, stddev_group=2, save_every=1000), CPU).run()
        runs[accum] = losses(out)
    for i in (1, 2):
        for name in ("l1", "g_gan", "d_loss"):
            assert runs[1][i][name] == pytest.approx(runs[2][i][name], rel=1e-4, abs=1e-6), (i, name)


def test_bf16_autocast_and_init_from_checkpoint(overfit, tmp_path):
    torch.set_num_threads(1)
    ckpt = newest_checkpoint(overfit["out"] / "checkpoints")
    cfg = tiny(overfit["data"], tmp_path / "ft", iters=1, batch_size=2, amp="bf16", init=str(ckpt),
               save_every=1000)
    trainer = Trainer(cfg, CPU)
    ref = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(v, ref["gen"][k]) for k, v in trainer.gen.state_dict().items())
    assert all(torch.equal(v, ref["dis"][k]) for k, v in trainer.dis.state_dict().items())
    trainer.run()
    row = losses(tmp_path / "ft")[1]
    assert all(np.isfinite(row[k]) for k in ("l1", "g_gan", "d_loss"))
    assert row["l1"] < overfit["before"]  # it starts from the fitted weights, not from scratch


def test_optional_r1_penalty_runs_on_its_schedule(tmp_path):
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=3, seed=4)
    out = tmp_path / "r1"
    Trainer(tiny(data, out, iters=3, batch_size=2, r1=10.0, d_reg_every=2, save_every=1000), CPU).run()
    rows = losses(out)
    # as StyleGAN2: regularise when the 0-based step index is a multiple of d_reg_every (steps 0 and 2)
    assert rows[1]["r1"] > 0 and rows[2]["r1"] == 0.0 and rows[3]["r1"] > 0
    assert all(np.isfinite(rows[i]["d_loss"]) for i in (1, 2, 3))


def test_resume_with_a_new_lr_uses_it_and_keeps_the_adam_moments(tmp_path, capsys):
    """A final phase at a lower lr: the resumed optimiser takes the run's --lr (not the saved one)."""
    torch.set_num_threads(1)
    data = write_png_clips(tmp_path / "data", n_clips=2, n_frames=4, seed=3)
    out = tmp_path / "run"
    Trainer(tiny(data, out, iters=2, batch_size=2, save_every=1000), CPU).run()
    saved = torch.load(newest_checkpoint(out / "checkpoints"), weights_only=True)["g_optim"]
    resumed = Trainer(tiny(data, out, iters=3, batch_size=2, save_every=1000, resume="auto", lr=0.0005), CPU)
    assert "G lr 0.0016 → 0.0004" in capsys.readouterr().out
    assert resumed.cfg.g_lr == pytest.approx(0.0004)
    for optim, lr in ((resumed.g_optim, resumed.cfg.g_lr), (resumed.d_optim, resumed.cfg.d_lr)):
        assert [g["lr"] for g in optim.param_groups] == [lr] * len(optim.param_groups)
    moments = resumed.g_optim.state_dict()["state"]
    assert all(torch.equal(moments[k]["exp_avg"], saved["state"][k]["exp_avg"]) for k in saved["state"])
