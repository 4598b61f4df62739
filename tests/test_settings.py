"""One settings system: every tool's command line is generated from its typed config, flags are named in one
place, shared groups are the same classes, and old command lines keep parsing to the same configs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lia_live.cli import animate, evaluate
from lia_live.cli import live as live_cli
from lia_live.errors import UserError, as_flag
from lia_live.offline import center_square
from lia_live.options import apply_values, config_from_args
from lia_live.runtime import model_device
from lia_live.settings import AnimateConfig, EvalConfig, LiveConfig, ModelConfig, MotionConfig, flag_for
from train import config as train_config

ROOT = Path(__file__).resolve().parent.parent


def parse_live(argv: list[str]) -> LiveConfig:
    return config_from_args(LiveConfig(), live_cli.build_parser().parse_args(argv))


def parse_animate(argv: list[str]) -> AnimateConfig:
    return config_from_args(AnimateConfig(), animate.build_parser().parse_args(argv))


def parse_eval(argv: list[str]) -> EvalConfig:
    return config_from_args(EvalConfig(), evaluate.build_parser().parse_args(argv))


def test_flags_are_named_in_one_place_as_declared():
    assert flag_for("pipeline") == "--serial"  # a boolean switched off by a flag is named by that flag
    assert flag_for("vcam") == "--no-vcam" and flag_for("mjpg") == "--no-mjpg"
    assert flag_for("backend_options") == "--backend-option" and flag_for("sources") == "--source"
    assert flag_for("template") == "--motion"  # lia-animate's motion template
    assert flag_for("source_crop") == "--source-crop" and flag_for("max_frames") == "--max-frames"
    # two fields named fps: the dotted name tells them apart; the bare one falls back to the plain rule
    assert flag_for("capture.fps") == "--camera-fps" and flag_for("output.fps") == "--fps"
    assert flag_for("capture.size") == "--camera-size" and flag_for("output.size") == "--size"
    assert flag_for("not_declared_anywhere") == "--not-declared-anywhere"
    e = UserError("set «pipeline» or «source_crop», not «capture.fps»")
    assert e.render(as_flag) == "set --serial or --source-crop, not --camera-fps"
    assert str(e) == "set pipeline or source_crop, not capture.fps"  # a Python caller sees the field names


def test_shared_groups_are_the_same_classes():
    hints = {cls: {f.name: f for f in dataclasses.fields(cls)} for cls in (LiveConfig, AnimateConfig, EvalConfig)}
    for cls in (LiveConfig, AnimateConfig, EvalConfig):
        assert isinstance(cls().model, ModelConfig)
    assert isinstance(LiveConfig().motion, MotionConfig) and isinstance(AnimateConfig().motion, MotionConfig)
    # lia-animate keeps the official demo's defaults (no tracking), lia-live tracks: same options, own defaults
    assert (AnimateConfig().motion.crop, LiveConfig().motion.crop) == ("none", "auto")
    assert "model" in hints[EvalConfig] and "motion" not in hints[EvalConfig]


def _help_of(parser, flag: str) -> str:
    """The help text of one option, as ``--help`` shows it (whitespace joined, default note dropped)."""
    action = next(a for a in parser._actions if flag in a.option_strings)
    return " ".join(action.help.split())


@pytest.mark.parametrize("flag", ["--motion-power", "--mode", "--crop", "--source-crop", "--checkpoint",
                                  "--device", "--backend", "--precision", "--backend-option"])
def test_the_same_option_has_the_same_help_in_every_tool(flag):
    live_p, anim_p = live_cli.build_parser(), animate.build_parser()
    assert _help_of(live_p, flag).split(" (default")[0] == _help_of(anim_p, flag).split(" (default")[0]


def test_source_crop_none_means_the_centred_square_in_every_tool():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)  # wide: 4 high, 6 wide
    assert np.array_equal(center_square(image), image[:, 1:5])
    tall = image.transpose(1, 0, 2)  # 6 high, 4 wide
    assert np.array_equal(center_square(tall), tall[1:5])
    square = image[:, :4]
    assert center_square(square) is not None and np.array_equal(center_square(square), square)


def test_old_lia_animate_command_line_parses_to_the_same_config():
    cfg = parse_animate(["--source", "s.png", "--driving", "d.mp4", "--output", "o.mp4", "--mode", "absolute",
                         "--crop", "auto", "--source-crop", "auto", "--fps", "12.5", "--max-frames", "3",
                         "--motion-power", "0.5", "--reference", "landmarks", "--batch-size", "2", "--overwrite",
                         "--no-progress", "--backend", "eager", "--backend-option", "a=1", "--backend-option",
                         "b=2", "--device", "cpu", "--checkpoint", "ck.pt", "--record-motion", "m.npz"])
    assert cfg == AnimateConfig(
        source=Path("s.png"), driving=Path("d.mp4"), output=Path("o.mp4"), fps=12.5, max_frames=3, batch_size=2,
        overwrite=True, progress=False, record_motion=Path("m.npz"),
        model=ModelConfig(checkpoint=Path("ck.pt"), device="cpu", backend="eager", backend_options=("a=1", "b=2")),
        motion=MotionConfig(crop="auto", source_crop="auto", mode="absolute", reference="landmarks",
                            motion_power=0.5))
    sweep = parse_animate(["--source", "s.png", "--output", "o", "--manipulate", "3", "--range", "-1", "2.5",
                           "--steps", "4"])
    assert (sweep.manipulate, sweep.range, sweep.steps, sweep.driving) == (3, (-1.0, 2.5), 4, None)
    replay = parse_animate(["--source", "s.png", "--output", "o", "--motion", "t.npz"])
    assert replay.template == Path("t.npz") and replay.motion == AnimateConfig().motion


def test_lia_animate_refuses_what_it_never_accepted(capsys):
    for argv in (["--source", "s.png", "--output", "o", "--driving", "d", "--reference-window", "3"],  # live only
                 ["--source", "s.png", "--output", "o", "--driving", "d", "--motion-power", "2.5"],
                 ["--source", "s.png", "--driving", "d"]):  # --output is required
        with pytest.raises(SystemExit) as e:
            animate.build_parser().parse_args(argv)
        assert e.value.code == 2
    with pytest.raises(UserError, match="give exactly one of --driving"):
        animate.parse_config(["--source", "s.png", "--output", "o"])
    assert "2.5" in capsys.readouterr().err


def test_old_lia_live_and_lia_eval_command_lines_parse():
    cfg = parse_live(["--source", "a.png", "--source", "b.png", "--serial", "--no-vcam", "--camera-fps", "24",
                      "--fps", "25", "--size", "640x360", "--motion-power", "1.5", "--reference", "auto"])
    assert cfg.sources == (Path("a.png"), Path("b.png")) and not cfg.run.pipeline and not cfg.output.vcam
    assert (cfg.capture.fps, cfg.output.fps, cfg.output.size) == (24.0, 25.0, (640, 360))
    assert (cfg.motion.motion_power, cfg.motion.reference) == (1.5, "auto")
    ev = parse_eval(["--data", "d", "--out", "o", "--metrics", "lpips,l1,l1", "--max-videos", "2", "--cross",
                     "--checkpoint", "ck.pt", "--device", "cpu", "--no-progress", "--batch-size", "4"])
    assert ev == EvalConfig(data=Path("d"), out=Path("o"), metrics=("lpips", "l1"), max_videos=2, cross=True,
                            progress=False, batch_size=4, model=ModelConfig(checkpoint=Path("ck.pt"), device="cpu"))
    with pytest.raises(SystemExit):
        parse_eval(["--data", "d", "--out", "o", "--backend", "eager"])  # lia-eval runs eager fp32 only


def test_old_train_command_lines_parse():
    cfg, dry, given = train_config.parse_args(["--preset", "taichi", "--no-flip", "--vgg-scales", "1", "0.5",
                                               "--size", "128", "--channel-div", "4", "--progress", "--dry-run"])
    assert dry and {"preset", "flip", "vgg_scales", "size", "channel_div", "progress"} == given
    assert (cfg.flip, cfg.vgg_scales, cfg.crop, cfg.generator.size, cfg.generator.channel_div) == (
        False, (1.0, 0.5), 224, 128, 4)
    with pytest.raises(SystemExit):
        train_config.parse_args(["--lr", "nan"])



def test_train_flags_that_mean_something_else_in_lia_live_have_their_own_names(capsys):
    """lia-live's --size is the output size and --crop the face crop: train.run says --model-size and
    --random-crop, and still takes the old spellings."""
    new, _, _ = train_config.parse_args(["--model-size", "128", "--random-crop", "32"])
    old, _, _ = train_config.parse_args(["--size", "128", "--crop", "32"])
    assert new == old and (new.generator.size, new.crop) == (128, 32)
    from train.run import main

    assert main(["--preset", "tiny", "--crop", "8", "--dry-run"]) == 2  # named as the tool names it
    assert capsys.readouterr().err.strip() == "train: error: --random-crop must be 0 (off) or >= 16 pixels"
    assert flag_for("crop", train_config.TrainConfig) == "--random-crop" and flag_for("crop") == "--crop"
    assert flag_for("size", train_config.TrainConfig) == "--model-size"


def test_apply_values_reaches_nested_groups_and_leaves_the_rest():
    base = LiveConfig()
    cfg = apply_values(base, {"motion.crop": "none", "run.max_frames": 5, "sources": [Path("x.png")]})
    assert cfg.motion.crop == "none" and cfg.run.max_frames == 5 and cfg.sources == (Path("x.png"),)
    assert cfg.model == base.model and cfg.output == base.output


def test_no_module_outside_the_cli_imports_it():
    code = ("import sys, lia_live.options, lia_live.offline, lia_live.evaluation.runner, train.config, train.run; "
            "print(sorted(m for m in sys.modules if m.startswith('lia_live.cli')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


@pytest.mark.parametrize("parse, argv", [(parse_live, ["--source", "s.png"]),
                                         (parse_animate, ["--source", "s.png", "--output", "o", "--driving", "d"]),
                                         (parse_eval, ["--data", "d", "--out", "o"])])
def test_threads_is_one_option_of_every_inference_tool(parse, argv, capsys):
    assert parse(argv).model.threads is None
    assert parse([*argv, "--threads", "3"]).model.threads == 3
    for bad in ("0", "1.5", "nan"):
        with pytest.raises(SystemExit) as e:
            parse([*argv, "--threads", bad])
        assert e.value.code == 2 and "--threads" in capsys.readouterr().err


def test_the_model_runs_with_the_thread_count_asked_for():
    n = torch.get_num_threads()
    try:
        assert model_device(ModelConfig(device="cpu", threads=1)) == "cpu" and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        model_device(ModelConfig(device="cpu"))  # not given: PyTorch's own count stays
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)
