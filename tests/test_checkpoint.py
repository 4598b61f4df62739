"""Checkpoint loading: official layout, lia-live formats, and every bad-file case (one clear line, exit 2)."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lia_live.errors import CheckpointError
from lia_live.model import Generator
from lia_live.model.checkpoint import infer_config, load_generator, save_generator

ROOT = Path(__file__).resolve().parent.parent


def official_like(gen: Generator, path: Path, with_args=True) -> Path:
    """A file shaped like the authors' training saves: gen, dis, optimisers, argparse Namespace."""
    g_opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    ckpt = {"gen": gen.state_dict(), "dis": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)},
            "g_optim": g_opt.state_dict(), "d_optim": {"state": {}, "param_groups": []}}
    if with_args:
        ckpt["args"] = argparse.Namespace(size=gen.config.size, batch_size=64, lr=0.002, dataset="vox")
    torch.save(ckpt, path)
    return path


def same_weights(a: Generator, b: Generator) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_layout_loads_with_namespace_allowed(tiny_generator, tmp_path):
    p = official_like(tiny_generator, tmp_path / "vox.pt")
    g = load_generator(p)
    assert g.config == tiny_generator.config
    assert same_weights(g, tiny_generator)
    assert not g.training


def test_official_256_architecture_is_inferred(tmp_path):
    torch.manual_seed(1)
    g = Generator(256)
    p = official_like(g, tmp_path / "vox.pt")
    loaded = load_generator(p)
    assert loaded.config.size == 256 and loaded.config.style_dim == 512 and loaded.config.motion_dim == 20
    assert loaded.config.channel_div == 1 and loaded.config.channel_multiplier == 1
    assert same_weights(loaded, g)


def test_infer_config_for_512():
    sd = Generator(512).state_dict()
    cfg = infer_config(sd)
    assert (cfg.size, cfg.style_dim, cfg.motion_dim, cfg.channel_div) == (512, 512, 20, 1)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_own_format_round_trip(tiny_generator, tmp_path, suffix):
    p = save_generator(tiny_generator, tmp_path / f"g{suffix}")
    g = load_generator(p)
    assert g.config == tiny_generator.config and same_weights(g, tiny_generator)
    if suffix == ".pt":  # plain tensors and primitives only
        obj = torch.load(p, weights_only=True)
        assert obj["format"] == "lia-live" and obj["config"]["size"] == 64


def test_ddp_prefix_is_stripped(tiny_generator, tmp_path):
    sd = {"module." + k: v for k, v in tiny_generator.state_dict().items()}
    torch.save({"gen": sd}, tmp_path / "ddp.pt")
    assert same_weights(load_generator(tmp_path / "ddp.pt"), tiny_generator)


def test_missing_file():
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        load_generator("nope.pt")


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_generator(p)


def test_truncated(tiny_generator, tmp_path):
    p = official_like(tiny_generator, tmp_path / "full.pt")
    data = p.read_bytes()
    t = tmp_path / "truncated.pt"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(t)


def test_truncated_safetensors(tiny_generator, tmp_path):
    p = save_generator(tiny_generator, tmp_path / "g.safetensors")
    t = tmp_path / "t.safetensors"
    t.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_generator(t)


def test_wrong_architecture_names_keys(tiny_generator, tmp_path):
    sd = dict(tiny_generator.state_dict())
    sd.pop("dec.direction.weight")
    sd["dec.extra.weight"] = torch.zeros(3)
    torch.save({"gen": sd}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "wrong.pt")
    msg = str(e.value)
    assert "dec.direction.weight" in msg or "cannot infer" in msg


def test_wrong_shapes_named(tiny_generator, tiny_config, tmp_path):
    sd = dict(tiny_generator.state_dict())
    sd["dec.to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
    torch.save({"format": "lia-live", "version": 1, "config": tiny_config.to_dict(), "gen": sd}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"dec.to_rgbs.0.bias has shape \(1, 4, 1, 1\)"):
        load_generator(tmp_path / "s.pt")


def test_no_generator_inside(tmp_path):
    torch.save({"model": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no generator weights"):
        load_generator(tmp_path / "other.pt")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo PWNED > pwned.txt",))


def test_malicious_pickle_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"gen": {}, "payload": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load .*evil.pt"):
        load_generator(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


class Harmless:
    """Any class other than argparse.Namespace must be refused, even a harmless one."""

    def __init__(self):
        self.x = 1


def test_other_globals_are_refused(tmp_path):
    torch.save({"gen": {}, "x": Harmless()}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match="refused.*Harmless"):
        load_generator(tmp_path / "obj.pt")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300)


def test_convert_command(tiny_generator, tmp_path):
    src = official_like(tiny_generator, tmp_path / "vox.pt")
    out = tmp_path / "vox.safetensors"
    r = run_cli("-m", "lia_live.cli.live", "convert", str(src), str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"converted {src} → {out}: GeneratorConfig(size=64")
    assert same_weights(load_generator(out), tiny_generator)
    again = run_cli("-m", "lia_live.cli.live", "convert", str(src), str(out))
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"lia-live convert: error: output already exists: {out} (choose another name or allow --overwrite)"]
    assert run_cli("-m", "lia_live.cli.live", "convert", str(src), str(out), "--overwrite").returncode == 0
    bad = run_cli("-m", "lia_live.cli.live", "convert", str(src), str(tmp_path / "vox.bin"))
    assert bad.returncode == 2 and "output must end in .safetensors or .pt, got vox.bin" in bad.stderr


@pytest.mark.parametrize("case", ["missing", "garbage", "evil"])
def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path, case, astronaut):
    import cv2

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), astronaut[..., ::-1])
    ck = tmp_path / "ck.pt"
    if case == "garbage":
        ck.write_bytes(b"\x00garbage" * 10)
    elif case == "evil":
        torch.save({"gen": {}, "payload": Boom()}, ck)
    r = run_cli("-m", "lia_live.cli.animate", "--source", str(src), "--driving", str(src.parent),
                "--checkpoint", str(ck), "--output", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lia-animate: error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "pwned.txt").exists()
