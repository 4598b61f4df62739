"""scripts/train_demo.py: the demo model's stages chain in order and every command parses as a trainer run."""

from __future__ import annotations

import pytest
import train_demo  # scripts/ is on pytest's pythonpath (setup.cfg)

from train.config import parse_args


def test_stages_chain_in_order_and_parse_as_trainer_runs(tmp_path):
    plan = train_demo.stages("v3")
    assert [s.folder for s in plan] == ["demo", "demo-v2", "demo-v3a"] + ["demo-v3"] * 5
    assert [s.iters for s in plan[3:]] == sorted(s.iters for s in plan[3:])  # one run, continued
    assert train_demo.stages("v1") == plan[:1] and train_demo.stages("v2") == plan[:2]
    for stage in plan:  # every stage starts from its predecessor's newest checkpoint
        if stage.init:
            (tmp_path / stage.init / "checkpoints").mkdir(parents=True, exist_ok=True)
            (tmp_path / stage.init / "checkpoints" / "ckpt-0000200.pt").write_bytes(b"")
    for stage in plan:
        args = train_demo.train_args(tmp_path / "data", tmp_path, stage, 60.0)
        cfg, _, _ = parse_args(args)
        assert cfg.iters == stage.iters and cfg.out == str(tmp_path / stage.folder)
        assert cfg.generator.size == 128 and cfg.generator.channel_div == 8 and cfg.batch_size == 4
        assert cfg.init == (str(tmp_path / stage.init / "checkpoints" / "ckpt-0000200.pt") if stage.init else "")
    last = parse_args(train_demo.train_args(tmp_path / "data", tmp_path, plan[-1], 60.0))[0]
    assert (last.vgg_weights, last.rigid_pairs, last.flow_weight, last.mask_weight) == ("lpips", 2, 500.0, 40.0)
    assert last.lr == 0.00025 and last.amp == "bf16"
    assert parse_args(train_demo.train_args(tmp_path / "data", tmp_path, plan[0], 60.0))[0].vgg_weights == "none"


def test_v4_continues_v3_on_the_blink_clips(tmp_path):
    plan = train_demo.stages("v4")
    assert plan[:-3] == train_demo.stages("v3") and train_demo.stages("v4") == train_demo.stages()
    first, middle, last = plan[-3:]
    assert (first.folder, first.init, first.data) == ("demo-v4", "demo-v3", "blinks")
    assert (last.folder, last.init, last.data, last.iters) == ("demo-v4", None, "blinks", train_demo.V4_ITERS)
    assert first.iters < middle.iters < last.iters and middle.init is None
    (tmp_path / "demo-v3" / "checkpoints").mkdir(parents=True)
    (tmp_path / "demo-v3" / "checkpoints" / f"ckpt-{train_demo.V3_ITERS:07d}.pt").write_bytes(b"")
    cfg = parse_args(train_demo.train_args(tmp_path / train_demo.DATA["blinks"], tmp_path, first, 60.0))[0]
    assert cfg.init.endswith(f"demo-v3/checkpoints/ckpt-{train_demo.V3_ITERS:07d}.pt")
    assert (cfg.lr, cfg.rigid_pairs, cfg.flow_weight, cfg.mask_weight) == (0.0005, 2, 500.0, 40.0)
    assert cfg.data == str(tmp_path / "demo-data-v3")
    cfg = parse_args(train_demo.train_args(tmp_path / train_demo.DATA["blinks"], tmp_path, last, 60.0))[0]
    assert (cfg.init, cfg.rigid_pairs, cfg.flow_weight, cfg.mask_weight, cfg.lr) == ("", 1, 500.0, 0.0, 0.00025)


def test_blink_low_sets_how_often_the_eyes_close():
    import numpy as np
    from make_demo_data import random_path

    def closed(low: float) -> float:
        rng = np.random.default_rng(0)
        return float(np.mean([[p["blink"] > 0.5 for p in random_path(rng, 40, blink_low=low)] for _ in range(200)]))

    assert closed(-3.0) == pytest.approx(0.072375) and closed(-1.0) == pytest.approx(0.206375)
    rng = np.random.default_rng(0)
    assert random_path(rng, 40) == random_path(np.random.default_rng(0), 40, blink_low=-3.0)  # the default


def test_a_stage_is_done_only_at_its_iteration_and_needs_its_predecessor(tmp_path):
    stage = train_demo.stages("v3")[3]  # demo-v3 to 471, from demo-v3a
    assert not train_demo.reached(tmp_path, stage)
    ckpts = tmp_path / "demo-v3" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "ckpt-0000400.pt").write_bytes(b"")
    assert not train_demo.reached(tmp_path, stage)
    (ckpts / f"ckpt-{stage.iters:07d}.pt").write_bytes(b"")
    assert train_demo.reached(tmp_path, stage)
    with pytest.raises(SystemExit, match="starts from demo-v3a, which has no checkpoint"):
        train_demo.train_args(tmp_path / "data", tmp_path, stage, 60.0)
