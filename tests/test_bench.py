"""``lia-live bench`` / ``scripts/bench.py``: runs end to end on a tiny checkpoint and reports honestly."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lia_live import bench
from lia_live.model.checkpoint import save_generator

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def tiny_ckpt(tiny_generator, tmp_path):
    return str(save_generator(tiny_generator, tmp_path / "tiny.pt"))


def test_bench_main_prints_table_with_naive_ratio_and_json(tiny_ckpt, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    rc = bench.main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--backends", "eager",
                     "--precisions", "fp32,bf16", "--frames", "6", "--warmup", "1", "--naive-frames", "3",
                     "--rounds", "3", "--threads", "1", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| backend" in out and "naive (official per-frame)" in out and "vs naive" in out
    data = json.loads(out_json.read_text())
    rows = {(r["backend"], r["precision"]): r for r in data["rows"]}
    assert set(rows) == {("eager", "fp32"), ("eager", "bf16")}
    fp32 = rows[("eager", "fp32")]
    assert fp32["frames"] == 6 and data["naive"]["frames"] == 3
    assert 0 < fp32["motion_median_ms"] < fp32["total_median_ms"]
    assert fp32["total_median_ms"] <= fp32["total_p95_ms"]
    assert fp32["fps"] == pytest.approx(1000 / fp32["total_median_ms"])
    assert fp32["rel_l2"] <= 1e-6  # eager fp32 is the reference itself
    assert rows[("eager", "bf16")]["rel_l2"] > 0  # bf16 really ran in reduced precision
    assert data["naive"]["rel_l2"] <= 1e-4  # the naive path computes the same image


def test_interleaved_run_records_every_frame(tiny_generator):
    torch.set_num_threads(1)
    rows, naive = bench.run(tiny_generator, [("eager", "fp32")], "cpu", frames=7, warmup=1, naive_frames=0,
                            rounds=3)
    assert naive is None and len(rows[0].total_ms) == 7 and len(rows[0].synth_ms) == 7
    table = bench.format_table(rows, None)
    assert "eager" in table and f"{statistics.median(rows[0].total_ms):.1f}" in table


def test_bench_user_errors_exit_2(tiny_ckpt, capsys):
    assert bench.main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--frames", "0"]) == 2
    assert "--frames must be >= 1" in capsys.readouterr().err
    assert bench.main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--backends", "nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert bench.main(["--checkpoint", str(Path(tiny_ckpt).with_name("missing.pt")), "--device", "cpu"]) == 2


def test_bench_script_is_a_thin_wrapper():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "--naive-frames" in res.stdout


def test_test_frames_differ(tiny_config):
    frames = bench.test_frames(tiny_config.size, 4)
    assert all(not torch.equal(frames[0], f) for f in frames[1:])
