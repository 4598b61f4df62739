"""lia-eval end to end on a tiny generated dataset with a tiny checkpoint: outputs, numbers, resume, refusals."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from lia_live.cli.evaluate import main
from lia_live.errors import UserError
from lia_live.evaluation import discover_videos
from lia_live.evaluation import runner as runner_mod


@pytest.fixture(scope="module")
def frames(astronaut):
    """Seven 64² frames: a crop window sliding over the astronaut's face."""
    return [cv2.resize(astronaut[40 + 4 * i:200 + 4 * i, 140 + 3 * i:300 + 3 * i], (64, 64),
                       interpolation=cv2.INTER_AREA) for i in range(7)]


@pytest.fixture()
def dataset(tmp_path, frames):
    from lia_live.io.video import VideoWriter

    root = tmp_path / "data"
    a = root / "test" / "vidA"
    a.mkdir(parents=True)
    for i, f in enumerate(frames[:3]):
        cv2.imwrite(str(a / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    with VideoWriter(root / "test" / "vidB.mp4", fps=10) as w:
        for f in frames[3:]:
            w.write(f)
    (root / "train").mkdir()
    return root


@pytest.fixture()
def ckpt(tmp_path, tiny_generator):
    from lia_live.model.checkpoint import save_generator

    return save_generator(tiny_generator, tmp_path / "tiny.safetensors")


def run(args, capsys):
    rc = main([*map(str, args), "--no-progress", "--device", "cpu"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_discover_layouts(tmp_path, dataset):
    videos, folder = discover_videos(dataset)
    assert [v.name for v in videos] == ["vidA", "vidB"] and folder == dataset / "test"
    plain, folder = discover_videos(dataset / "test")
    assert [v.name for v in plain] == ["vidA", "vidB"]
    one, _ = discover_videos(dataset / "test" / "vidA")
    assert [v.name for v in one] == ["vidA"]
    with pytest.raises(UserError, match="no 'val' split .*has: train, test"):
        discover_videos(dataset, split="val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no videos in"):
        discover_videos(tmp_path / "empty")
    with pytest.raises(UserError, match="not found"):
        discover_videos(tmp_path / "missing")


def test_cli_same_identity_writes_all_outputs_and_resumes(tmp_path, dataset, ckpt, frames, capsys, monkeypatch):
    out = tmp_path / "eval"
    args = ["--checkpoint", ckpt, "--data", dataset, "--out", out, "--domain", "face", "--save-videos",
            "--batch-size", "2"]
    rc, stdout, err = run(args, capsys)
    assert rc == 0, err
    for name in ("metrics.json", "per_video.csv", "results.md", "run.json", "per_video/vidA.json",
                 "per_video/vidB.json", "videos/vidA.mp4", "videos/vidB.mp4"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "metrics.json").read_text())
    ov = doc["overall"]
    assert (ov["videos"], ov["frames"]) == (2, 7)
    assert doc["per_video"]["vidA"]["frames"] == 3 and doc["per_video"]["vidB"]["frames"] == 4
    # overall = mean over videos of per-video means (not frame-weighted)
    for m in ("l1", "lpips"):
        assert ov[m] == pytest.approx((doc["per_video"]["vidA"][m] + doc["per_video"]["vidB"][m]) / 2)
    assert ov["frame_weighted"]["l1"] != pytest.approx(ov["l1"], abs=1e-9)
    for k in ("aed_fail", "akd_fail"):
        assert 0.0 <= ov[k] <= 1.0
    assert set(doc["timing_ms_per_frame"]) >= {"model", "lpips", "total"}
    assert "L1" in stdout and "ms per frame" in stdout

    # per-frame L1 recomputed independently from the checkpoint
    from lia_live.animator import Animator
    from lia_live.imaging import to_tensor
    from lia_live.model.checkpoint import load_generator

    rec = json.loads((out / "per_video" / "vidA.json").read_text())
    assert len(rec["per_frame"]["l1"]) == 3 and len(rec["per_frame"]["lpips"]) == 3
    anim = Animator(load_generator(ckpt))
    with torch.no_grad():
        anim.set_source_tensor(to_tensor(frames[0]))
        real = to_tensor(frames[2])
        recon = anim.render(anim.motion(real)).clamp(-1, 1)
    want = float(np.abs(0.5 * (recon.numpy() - real.numpy())).mean())
    assert rec["per_frame"]["l1"][2] == pytest.approx(want, rel=1e-4)

    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert [r["video"] for r in rows] == ["vidA", "vidB"]
    assert float(rows[1]["l1"]) == pytest.approx(doc["per_video"]["vidB"]["l1"])
    md = (out / "results.md").read_text()
    assert "| vidA | vidA | 3 |" in md and "**overall** (2 videos)" in md
    from lia_live.io.video import FrameSource

    assert sum(1 for _ in FrameSource(out / "videos" / "vidB.mp4")) == 4

    # second run: nothing recomputed, same numbers
    calls = []
    real_eval = runner_mod.evaluate_video
    monkeypatch.setattr(runner_mod, "evaluate_video", lambda *a, **k: calls.append(a[1].name) or real_eval(*a, **k))
    rc, _, err = run(args, capsys)
    assert rc == 0 and calls == [] and "2 of 2 videos already scored" in err
    assert json.loads((out / "metrics.json").read_text())["overall"]["l1"] == pytest.approx(ov["l1"])

    # an interrupted run (one video missing) scores only that one
    (out / "per_video" / "vidB.json").unlink()
    rc, _, err = run(args, capsys)
    assert rc == 0 and calls == ["vidB"] and "1 of 2 videos already scored" in err
    assert json.loads((out / "metrics.json").read_text())["overall"]["l1"] == pytest.approx(ov["l1"], rel=1e-6)

    # other settings into the same folder: refused, nothing touched
    before = (out / "metrics.json").read_text()
    rc, _, err = run([*args, "--max-frames", "2"], capsys)
    assert rc == 2 and "other settings (max_frames: None → 2)" in err and len(err.strip().splitlines()) == 1
    assert (out / "metrics.json").read_text() == before


def test_cli_cross_identity_and_max_limits(tmp_path, dataset, ckpt, capsys):
    out = tmp_path / "cross"
    rc, _, err = run(["--checkpoint", ckpt, "--data", dataset, "--out", out, "--cross", "--domain", "face",
                      "--max-frames", "2", "--metrics", "l1,aed,akd"], capsys)
    assert rc == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["per_video"]["vidA"]["source"] == "vidB" and doc["per_video"]["vidB"]["source"] == "vidA"
    assert doc["overall"]["frames"] == 4
    assert "l1" not in doc["overall"] and "lpips" not in doc["overall"] and "aed" in doc["overall"]
    assert any("L1 not measured: cross-identity" in n for n in doc["notes"])
    rec = json.loads((out / "per_video" / "vidA.json").read_text())
    assert len(rec["per_frame"]["akd"]) == 2 and all(v is None or v >= 0 for v in rec["per_frame"]["akd"])

    rc, _, err = run(["--checkpoint", ckpt, "--data", dataset, "--out", tmp_path / "c2", "--cross",
                      "--max-videos", "1"], capsys)
    assert rc == 2 and "--cross needs at least 2 test videos" in err


def test_cli_user_errors_are_one_line(tmp_path, dataset, ckpt, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    cases = [
        (["--out", foreign], "not a lia-eval output folder"),
        (["--out", tmp_path / "o1", "--lpips-weights", tmp_path / "nope.ckpt"], "--lpips-weights file not found"),
        (["--out", tmp_path / "o2", "--split", "val"], "no 'val' split"),
    ]
    for extra, msg in cases:
        rc, _, err = run(["--checkpoint", ckpt, "--data", dataset, "--domain", "face", *extra], capsys)
        assert rc == 2 and msg in err, err
        assert len(err.strip().splitlines()) == 1
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    rc, _, err = run(["--checkpoint", tmp_path / "missing.pt", "--data", dataset, "--out", tmp_path / "o3"], capsys)
    assert rc == 2 and "checkpoint not found" in err
    with pytest.raises(SystemExit) as e:
        main(["--data", str(dataset), "--out", str(tmp_path / "o4"), "--metrics", "fid"])
    assert e.value.code == 2
