"""Motion policy and motion you can keep: reference choice, templates (record → replay), direction offsets,
and the concurrent pipeline's hand-offs."""

import threading

import cv2
import numpy as np
import pytest
import torch

from lia_live.animator import Animator
from lia_live.cli.animate import main as animate
from lia_live.model.checkpoint import save_generator
from lia_live.motion import MotionController
from lia_live.pipeline import END, Handoff, Pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- reference choice --------------------------------------------------------------------------------
def test_auto_reference_picks_the_frame_nearest_the_portrait():
    m = 4
    src = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    seq = [torch.tensor([[0.0, 0.0, 2.0, 0.0]]), torch.tensor([[0.9, 0.1, 0.0, 0.0]]),  # frame 1 is nearest
           torch.tensor([[0.0, 3.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0, 0.0, 1.0]])]
    ctrl = MotionController(m, reference="auto", window_seconds=0.1)
    ctrl.set_source_alpha(src)
    msgs = [ctrl.update(a, t=i * 0.04)[1] for i, a in enumerate(seq)]
    assert ctrl.choice is not None and ctrl.choice.index == 1 and ctrl.choice.window == 4
    assert torch.equal(ctrl.alpha_ref, seq[1])
    assert ctrl.choice.distance == pytest.approx(float((seq[1] - src).norm()))
    assert ctrl.choice.first_distance == pytest.approx(float((seq[0] - src).norm()))
    assert msgs[0] == ("reference auto: choosing the reference pose among the frames of the next 0.1 s (the portrait "
                       "keeps its own pose until then)")
    assert msgs[1:3] == [None, None]
    assert msgs[3] == "reference pose: frame 1 of 4 (distance to the portrait's pose 0.141; first frame 2.236)"
    # while the window is being collected the output is the neutral pose (reference = the frame itself)
    ctrl2 = MotionController(m, reference="auto", window_seconds=1.0)
    ctrl2.set_source_alpha(src)
    args, _ = ctrl2.update(seq[0], 0.0)
    assert args.alpha_ref is args.alpha


def test_first_reference_and_absolute_mode_messages():
    ctrl = MotionController(3, mode="absolute")
    args, msg = ctrl.update(torch.ones(1, 3), 0.0)
    assert msg is None and args.alpha_ref is None  # no "reference captured" talk in absolute mode
    ctrl = MotionController(3)
    args, msg = ctrl.update(torch.ones(1, 3), 0.0)
    assert "reference pose captured" in msg and torch.equal(args.alpha_ref, torch.ones(1, 3))


# ---- offline: auto reference, batches, templates ---------------------------------------------------------
@pytest.fixture()
def clip(tmp_path, astronaut, tiny_generator):
    """A 6-frame PNG clip whose frame 3 is the portrait itself; the others are shifted/flipped views."""
    face = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    frames = [np.roll(face, 9, axis=1), face[:, ::-1], np.roll(face, -7, axis=0), face,
              np.roll(face[:, ::-1], 5, axis=1), np.roll(face, 12, axis=0)]
    d = tmp_path / "drive"
    d.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    ckpt = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, ckpt)
    return {"dir": d, "src": src, "ckpt": ckpt, "frames": frames, "face": face}


def _run(clip, out, *extra):
    return animate(["--source", str(clip["src"]), "--checkpoint", str(clip["ckpt"]), "--backend", "eager",
                    "--device", "cpu", "--output", str(out), "--no-progress", *extra])


def _pngs(folder):
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def test_offline_auto_reference_chooses_the_portraits_own_pose(clip, tmp_path, capsys):
    assert _run(clip, tmp_path / "auto", "--driving", str(clip["dir"]), "--reference", "auto") == 0
    err = capsys.readouterr().err
    assert "reference pose: frame 3 of 6" in err and "distance to the portrait's pose 0.000" in err
    auto = _pngs(tmp_path / "auto")
    assert len(auto) == 6
    # frame 3 drives with its own pose as reference: the output is the neutral portrait = the render of α_src
    from lia_live.imaging import from_tensor
    from lia_live.model.checkpoint import load_generator

    anim = Animator(load_generator(clip["ckpt"]))
    anim.set_source(clip["face"])
    neutral = cv2.cvtColor(from_tensor(anim.render(None))[0], cv2.COLOR_RGB2BGR)
    assert np.abs(auto[3].astype(int) - neutral).max() <= 1
    # with the first frame as reference, frame 3 is not the neutral pose
    assert _run(clip, tmp_path / "first", "--driving", str(clip["dir"])) == 0
    assert np.abs(_pngs(tmp_path / "first")[3].astype(int) - neutral).max() > 1


def test_batches_give_the_same_frames_as_single_steps(clip, tmp_path):
    assert _run(clip, tmp_path / "b1", "--driving", str(clip["dir"]), "--batch-size", "1") == 0
    assert _run(clip, tmp_path / "b4", "--driving", str(clip["dir"]), "--batch-size", "4") == 0
    one, four = _pngs(tmp_path / "b1"), _pngs(tmp_path / "b4")
    assert len(one) == len(four) == 6
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(one, four)) <= 1


def test_record_then_replay_reproduces_the_run(clip, tmp_path, astronaut, capsys):
    rec = tmp_path / "perf.npz"
    assert _run(clip, tmp_path / "direct", "--driving", str(clip["dir"]), "--record-motion", str(rec),
                "--batch-size", "2", "--motion-power", "1.3") == 0
    with np.load(rec) as z:
        assert z["alpha"].shape == (6, 8) and z["size"] == 64 and str(z["format"]) == "lia-live-motion/1"
        assert len(z["ref_frames"]) == 1 and np.allclose(z["power"], 1.3)
    assert rec.stat().st_size < 4096  # a few hundred bytes of motion, no pixels
    assert _run(clip, tmp_path / "replay", "--motion", str(rec), "--batch-size", "2") == 0
    direct, replay = _pngs(tmp_path / "direct"), _pngs(tmp_path / "replay")
    assert len(direct) == len(replay) == 6
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(direct, replay)) <= 1
    # the same motion on another portrait: different pixels, same frame count
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), cv2.cvtColor(cv2.resize(astronaut[::-1], (64, 64)), cv2.COLOR_RGB2BGR))
    assert animate(["--source", str(other), "--checkpoint", str(clip["ckpt"]), "--backend", "eager", "--device",
                    "cpu", "--output", str(tmp_path / "o"), "--motion", str(rec), "--no-progress"]) == 0
    assert len(_pngs(tmp_path / "o")) == 6
    capsys.readouterr()


def test_foreign_template_is_refused_in_one_line(clip, tmp_path, tiny_config, capsys):
    from lia_live.model import Generator

    rec = tmp_path / "perf.npz"
    assert _run(clip, tmp_path / "direct", "--driving", str(clip["dir"]), "--record-motion", str(rec)) == 0
    torch.manual_seed(123)
    other = tmp_path / "other.safetensors"
    save_generator(Generator.from_config(tiny_config).eval(), other)
    capsys.readouterr()
    rc = animate(["--source", str(clip["src"]), "--checkpoint", str(other), "--backend", "eager", "--device",
                  "cpu", "--output", str(tmp_path / "x"), "--motion", str(rec), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "recorded with another model" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "x").exists()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    rc = animate(["--source", str(clip["src"]), "--checkpoint", str(clip["ckpt"]), "--output", str(tmp_path / "y"),
                  "--motion", str(tmp_path / "junk.npz"), "--no-progress"])
    assert rc == 2 and "not a motion template" in capsys.readouterr().err


# ---- direction offsets ---------------------------------------------------------------------------------
def test_offsets_move_the_output_along_the_direction_and_round_trip(tiny_generator, astronaut, tmp_path):
    from lia_live.templates import load_offsets, save_offsets

    anim = Animator(tiny_generator)
    anim.set_source(cv2.resize(astronaut, (64, 64)))
    k, m = 2, anim.basis.shape[1]
    with torch.inference_mode():
        base = anim.latent(None)
        off = torch.zeros(1, m)
        off[0, k] = 0.5
        moved = anim.latent(None, offset=off)
        # the latent moves by exactly 0.5 · q_k, the k-th motion direction
        torch.testing.assert_close(moved - base, 0.5 * anim.basis[:, k][None], rtol=0, atol=1e-6)
        img0, img1 = anim.render(None), anim.render(None, offset=off)
        torch.testing.assert_close(img1, anim.render_direction(k, 0.5))
        assert (img1 - img0).abs().mean() > 1e-4
    ctrl = MotionController(m)
    ctrl.select_direction(k)
    ctrl.nudge(0.3)
    ctrl.nudge(0.2)
    args, _ = ctrl.update(torch.zeros(1, m), 0.0)
    assert args.offset is not None and float(args.offset[0, k]) == pytest.approx(0.5)
    path = tmp_path / "offsets.json"
    save_offsets(path, ctrl.offsets, anim)
    assert load_offsets(path, anim) == pytest.approx([0.5 if i == k else 0.0 for i in range(m)])
    path.write_text('{"format": "lia-live-offsets/1", "offsets": [1, 2]}')
    with pytest.raises(Exception, match="has 2 values"):
        load_offsets(path, anim)


# ---- pipeline hand-offs ----------------------------------------------------------------------------------
def test_in_order_handoff_delivers_every_item_once_in_order():
    stop, pipe = threading.Event(), Pipeline()
    out = Handoff(newest_only=False, capacity=1)
    it = iter(range(200))
    pipe.stage("src", lambda _: next(it, END), None, Handoff(newest_only=False, capacity=1, name="a"))
    pipe.stage("double", lambda x: 2 * x, pipe.threads[0].outbox, out)
    pipe.start()
    got = []
    while (x := out.get(stop)) is not END:
        if x is not None:
            got.append(x)
    pipe.join()
    assert got == [2 * i for i in range(200)]


def test_newest_only_handoff_drops_stale_items():
    stop = threading.Event()
    h = Handoff(newest_only=True)
    for i in range(5):
        h.put(i, stop)
    assert h.get(stop, timeout=0.1) == 4 and h.dropped == 4
    assert h.get(stop, timeout=0.01) is None
    h.close()
    assert h.get(stop) is END


def test_a_failing_stage_stops_the_pipeline_and_reraises():
    pipe = Pipeline()
    out = Handoff(newest_only=False)

    def boom(_):
        raise ValueError("stage failed")

    pipe.stage("boom", boom, None, out)
    pipe.start()
    assert out.get(threading.Event()) is END
    pipe.join()
    with pytest.raises(ValueError, match="stage failed"):
        pipe.raise_errors()
