"""``lia-live bench``: runs end to end on a tiny checkpoint and reports honestly."""

import contextlib
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lia_live import bench
from lia_live.cli.bench import main
from lia_live.model.checkpoint import save_generator

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def engine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIA_ENGINE_DIR", str(tmp_path / "engines"))


@pytest.fixture()
def tiny_ckpt(tiny_generator, tmp_path):
    return str(save_generator(tiny_generator, tmp_path / "tiny.pt"))


def test_bench_main_prints_table_with_naive_ratio_batches_and_json(tiny_ckpt, tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    rc = main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--backends", "eager",
               "--precisions", "fp32,bf16", "--batch-sizes", "1,3", "--frames", "6", "--warmup", "1",
               "--naive-frames", "3", "--rounds", "3", "--threads", "2", "--json", str(out_json)])
    assert rc == 0
    assert torch.get_num_threads() == threads  # --threads does not leak out of main
    out = capsys.readouterr().out
    assert "| backend" in out and "naive (official per-frame)" in out and "vs naive" in out and "1st frame s" in out
    data = json.loads(out_json.read_text())
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {("eager", "fp32", 1), ("eager", "bf16", 1), ("eager", "fp32", 3)}
    fp32 = rows[("eager", "fp32", 1)]
    assert fp32["calls"] == fp32["frames"] == 6 and data["naive"]["frames"] == 3
    assert 0 < fp32["motion_median_ms"] < fp32["total_median_ms"] <= fp32["total_p95_ms"]
    assert fp32["fps"] == pytest.approx(1000 / fp32["total_median_ms"])
    assert 0 < fp32["setup_s"] < fp32["first_frame_s"]
    assert fp32["rel_l2"] <= 1e-6  # eager fp32 is the reference itself
    assert rows[("eager", "bf16", 1)]["rel_l2"] > 0  # bf16 really ran in reduced precision
    b3 = rows[("eager", "fp32", 3)]
    assert b3["frames"] == 18 and b3["frame_ms"] == pytest.approx(b3["total_median_ms"] / 3)
    assert b3["rel_l2"] <= 1e-5  # every frame of the batch is the right one
    assert data["naive"]["rel_l2"] <= 1e-4  # the naive path computes the same image


def test_interleaved_run_records_every_frame(tiny_generator):
    rows, naive = bench.run(tiny_generator, [("eager", "fp32")], "cpu", frames=7, warmup=1, naive_frames=0,
                            rounds=3)
    assert naive is None and len(rows[0].total_ms) == 7 and len(rows[0].synth_ms) == 7
    table = bench.format_table(rows, None)
    assert "eager" in table and f"{statistics.median(rows[0].total_ms):.1f}" in table


def test_a_backend_that_fails_is_reported_as_skipped(tiny_generator):
    rows, _ = bench.run(tiny_generator, [("eager", "fp32"), ("compile", "fp32", 1)], "cpu", frames=2, warmup=0,
                        naive_frames=0, rounds=1, options={"mode": "reduce-overhead"})
    assert rows[0].total_ms and not rows[1].total_ms
    assert rows[1].note == "skipped: compile: mode reduce-overhead uses CUDA graphs and needs a CUDA device"
    assert "skipped: compile" in bench.format_table(rows, None)


def test_default_combos_on_cpu():
    combos = bench.default_combos("cpu", ["eager", "onnxruntime"], None)
    assert ("eager", "fp32", 1) in combos and ("eager", "bf16", 1) in combos
    assert all(b == 1 for _, _, b in combos) and all(p != "fp16" for _, p, _ in combos)
    assert bench.default_combos("cpu", ["eager"], ["fp32"], [1, 8]) == [("eager", "fp32", 1), ("eager", "fp32", 8)]


def test_bench_user_errors_exit_2(tiny_ckpt, capsys):
    with pytest.raises(SystemExit) as e:  # a number out of range is a usage error at parse time
        main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--frames", "0"])
    assert e.value.code == 2 and "--frames: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--backends", "nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["--checkpoint", tiny_ckpt, "--device", "cpu", "--backend-option", "mode"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["--checkpoint", str(Path(tiny_ckpt).with_name("missing.pt")), "--device", "cpu"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_lia_live_bench_subcommand_runs_the_benchmark(tiny_ckpt, capsys):
    from lia_live.cli.live import main as live_main

    assert live_main(["bench", "--checkpoint", tiny_ckpt, "--device", "cpu", "--backends", "eager",
                      "--frames", "1", "--warmup", "0", "--naive-frames", "0", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| eager" in out and "model: " + tiny_ckpt in out
    assert live_main(["backends", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "--backend auto → onnxruntime" in out or "--backend auto → compile" in out
    assert "--backend-option mode (freezing|" in out and "default --batch-size 1" in out


def _help(main, *argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return buf.getvalue()


def test_every_subcommand_has_help():
    from lia_live.cli.live import SUBCOMMANDS
    from lia_live.cli.live import main as live_main

    assert {"backends", "bench", "convert", "engines", "serve"} <= set(SUBCOMMANDS)
    for argv in [[name] for name in SUBCOMMANDS] + [["engines", "build"]]:
        assert _help(live_main, *argv).startswith("usage: lia-live " + " ".join(argv)), argv
    assert "--naive-frames" in _help(live_main, "bench") and "SRC" in _help(live_main, "convert")
    assert "--engine-dir" in _help(live_main, "engines", "build")
    assert "'lia-live convert'" in _help(live_main)  # the main help lists every subcommand


def test_engines_build_refuses_a_backend_it_cannot_build(capsys):
    from lia_live.cli.live import main as live_main

    with pytest.raises(SystemExit) as e:
        live_main(["engines", "build", "--backends", "eager"])
    assert e.value.code == 2 and "unknown 'eager'; choose from tensorrt,onnxruntime" in capsys.readouterr().err


def test_runtime_bench_does_not_import_the_cli():
    code = "import sys, lia_live.bench; print(sorted(m for m in sys.modules if m.startswith('lia_live.cli')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_driving_frames_differ(tiny_config):
    frames = bench.driving_frames(tiny_config.size, 4)
    assert all(not torch.equal(frames[0], f) for f in frames[1:])


def test_seeded_generator_is_deterministic_and_image_like(tiny_config):
    a, b = bench.seeded_generator(tiny_config), bench.seeded_generator(tiny_config)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = bench.seeded_generator(tiny_config, seed=8)
    assert not torch.equal(a.dec.direction.weight, c.dec.direction.weight)
    mod_bias = [v for k, v in bench.seeded_state(a, 7).items() if k.endswith("modulation.bias")]
    assert mod_bias and all(abs(float(v.mean()) - 1) < 0.2 for v in mod_bias)
