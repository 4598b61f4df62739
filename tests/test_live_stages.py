"""The live stages driven through the controller: reference windows held on file input (issue 23, «reference»
auto on a short clip), the landmarks reference live, sources added and compose switched at frame
boundaries, the preview and pipeline errors handed to the controller. Tiny model, no devices."""

import cv2
import numpy as np
import pytest
import torch
from livedata import Collect

from lia_live.animator import Animator
from lia_live.capture import IterableCapture
from lia_live.cli.animate import main as animate
from lia_live.imaging import to_tensor
from lia_live.live import LiveConfig, LiveController, LiveStages, make_source, run_live
from lia_live.live.stages import end_marker
from lia_live.model.checkpoint import save_generator
from lia_live.motion import MotionController
from lia_live.output import Compositor
from lia_live.reference import LandmarkFeatures

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def face(astronaut):
    return cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)


@pytest.fixture()
def clip(tmp_path, face, tiny_generator):
    """An 8-frame 64² clip whose frame 3 is the portrait itself (the others are shifted / mirrored views), as
    RGB arrays and as a PNG folder, with the portrait and a checkpoint on disk."""
    frames = [np.roll(face, 9, axis=1), face[:, ::-1], np.roll(face, -7, axis=0), face,
              np.roll(face[:, ::-1], 5, axis=1), np.roll(face, 12, axis=0), np.roll(face, 15, axis=1),
              np.roll(face, -11, axis=1)]
    frames = [np.ascontiguousarray(f) for f in frames]
    d = tmp_path / "drive"
    d.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    ckpt = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, ckpt)
    return {"frames": frames, "dir": d, "src": src, "ckpt": ckpt}


def _live_run(clip, tiny_generator, pipeline=True, controller=None, load=False, **motion):
    """lia-live over the clip (every frame collected); ``load``: the model from the checkpoint file."""
    cfg = LiveConfig(sources=(clip["src"],)).replace(
        motion={"crop": "none", "source_crop": "none", **motion}, output={"size": (64, 64), "vcam": False},
        run={"stats_every": 0, "pipeline": pipeline},
        model={"checkpoint": clip["ckpt"], "backend": "eager", "device": "cpu"})
    sink = Collect()
    stats = run_live(cfg, capture=IterableCapture(iter(clip["frames"]), fps=30),
                     animator=None if load else Animator(tiny_generator), extra_outputs=[sink], controller=controller)
    return stats, sink.frames


def _animate_run(clip, out, *extra):
    assert animate(["--source", str(clip["src"]), "--checkpoint", str(clip["ckpt"]), "--backend", "eager",
                    "--device", "cpu", "--output", str(out), "--no-progress", "--driving", str(clip["dir"]),
                    "--crop", "none", "--source-crop", "none", "--batch-size", "1", *extra]) == 0
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(out.glob("*.png"))]


@pytest.mark.parametrize("window, pipeline", [(2.0, True), (2.0, False), (0.09, True)])
def test_auto_reference_on_a_file_renders_every_frame_against_the_chosen_pose(clip, tiny_generator, tmp_path,
                                                                             window, pipeline):
    """A file input holds the window's frames until the reference is chosen: a clip shorter than the window
    (2 s > 8 frames at 30 fps) chooses at its end, a longer one (0.09 s: frames 0-3) when the window closes;
    either way no frame shows the still portrait and lia-live gives lia-animate's frames (which chooses over
    the whole clip: frame 3 here too)."""
    controller = LiveController()
    stats, live = _live_run(clip, tiny_generator, pipeline, controller, reference="auto", reference_window=window)
    offline = _animate_run(clip, tmp_path / "offline", "--reference", "auto")
    assert stats["frames"] == len(live) == len(offline) == 8
    choice = stats["state"]["reference_choice"]
    n = 8 if window == 2.0 else 4
    assert (choice["index"], choice["window"], choice["by"], choice["distance"]) == (3, n, "auto", 0.0)
    said = controller.messages()[1]
    assert sum(m.startswith("reference pose: frame 3 of ") for m in said) == 1
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(live, offline)) <= 1
    assert all(np.abs(live[i].astype(int) - live[i + 1]).max() > 0 for i in range(7))  # nothing frozen


def _stages(tiny_generator, face, said, hold=False, landmarks=None, source_crop="none", **motion):
    anim = Animator(tiny_generator)
    controller = LiveController(say=said.append)
    controller.start(MotionController(anim.basis.shape[1], **motion), ["face"])
    entries = [make_source("face", face, anim.size, "none")]
    kw = {"landmarks": landmarks} if landmarks is not None else {}
    return LiveStages(anim, entries, lambda mode: Compositor(96, 64, mode), controller, hold=hold,
                      source_crop=source_crop, **kw)


def _prepared(stages, image, i):
    from lia_live.capture.base import Frame

    return stages.prepare(Frame(image, 0.0, i, i / 30))


def test_held_window_is_released_in_order_with_pass_through_frames(clip, tiny_generator, face):
    said = []
    stages = _stages(tiny_generator, face, said, hold=True, reference="auto", window_seconds=0.09)
    ctl, frames = stages.controller, clip["frames"]
    with torch.inference_mode():
        out = [stages.infer(_prepared(stages, frames[0], 0))]
        ctl.act("set_passthrough", on=True)
        out.append(stages.infer(_prepared(stages, frames[1], 1)))
        ctl.act("set_passthrough", on=False)
        out += [stages.infer(_prepared(stages, frames[i], i)) for i in (2, 3, 4)]
    assert [len(w) for w in out] == [0, 0, 0, 4, 1]  # frames 0-3 wait for the window (0.09 s), then go on
    released = out[3]
    assert [w.frame.index for w in released] == [0, 1, 2, 3]
    assert [w.passthrough for w in released] == [False, True, False, False] and released[1].face is None
    c = stages.motion.choice
    assert c.index == 2 and c.window == 3  # the pass-through frame is no candidate
    assert said[:2] == ["reference auto: choosing the reference pose among the frames of the next 0.09 s (its "
                        "frames are rendered once it is chosen)", "pass-through on (showing the camera)"]
    # the end of the input closes an open window with what it has
    stages.controller.act("reset_reference")
    with torch.inference_mode():
        assert stages.infer(_prepared(stages, frames[5], 5)) == []
        flushed = stages.infer(end_marker())
    assert [w.frame.index for w in flushed] == [5] and stages.motion.choice.window == 1
    assert stages.infer(end_marker()) == []


class FakeMesh:
    """A landmark reader whose features are the image's mean grey level as yaw (None below 10: no face)."""

    def __init__(self):
        self.calls, self.closed = 0, False

    def features(self, image):
        self.calls += 1
        v = float(image.mean())
        return None if v < 10 else LandmarkFeatures(v, 0.0, 0.0, 0.0, 0.0, 0.0)

    def close(self):
        self.closed = True


def test_landmarks_reference_live(tiny_generator, face):
    said, mesh = [], FakeMesh()
    portrait = np.full((64, 64, 3), 120, np.uint8)
    stages = _stages(tiny_generator, portrait, said, landmarks=lambda: mesh, reference="landmarks",
                     window_seconds=0.09)
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 80, 118, 200, 119)]
    with torch.inference_mode():
        for i, f in enumerate(frames):
            stages.process(f, i / 30)
        alpha2 = stages.anim.motion(to_tensor(frames[2]))  # (1, M)
    c = stages.motion.choice
    assert (c.index, c.window, c.by, c.faces) == (2, 4, "landmarks", 3)
    assert torch.allclose(stages.motion.alpha_ref, alpha2)
    assert mesh.calls == 1 + 4  # the portrait once, then the window's frames only (not frame 4)
    assert said[-1] == "reference pose: frame 2 of 4 by landmarks (distance to the portrait's pose 0.200; first " \
                       "frame inf; 3 frames with a face)"
    stages.close()
    assert mesh.closed


def test_landmarks_without_a_face_in_the_portrait_take_the_first_frame(tiny_generator, monkeypatch):
    from lia_live import log

    monkeypatch.setattr(log, "_FLAGS", [False])  # a library caller: settings by their names
    said = []
    stages = _stages(tiny_generator, np.zeros((64, 64, 3), np.uint8), said, landmarks=FakeMesh,
                     reference="landmarks", window_seconds=0.0)
    with torch.inference_mode():
        stages.process(np.full((64, 64, 3), 90, np.uint8), 0.0)
    assert said == ["warning: «reference» landmarks: the face mesh finds no face in the portrait face; the "
                    "first frame becomes the reference",
                    "reference pose: the first frame (the face mesh finds no face in the portrait)"]
    assert stages.motion.choice.index == 0 and stages.motion.choice.faces == 0
    assert stages.controller.messages()[1][0].startswith("warning: reference landmarks: ")
    monkeypatch.setattr(log, "_FLAGS", [True])  # in lia-live: as flags, like its stderr
    stages.controller.say("add «preview»")
    assert stages.controller.messages()[1][-1] == "add --preview"


def test_sources_added_and_compose_switched_at_frame_boundaries(tiny_generator, face):
    said = []
    stages = _stages(tiny_generator, face, said)
    ctl = stages.controller
    with torch.inference_mode():
        out0 = stages.process(face, 0.0)
        ctl.act("add_source", image=np.ascontiguousarray(face[:, ::-1]), name="mirror")
        assert len(stages.sources) == 1  # queued only: the model stage encodes it with the next frame
        np.testing.assert_array_equal(stages.process(face, 0.04), out0)  # this frame was prepared before
        assert ctl.state()["sources"] == ["face", "mirror"] and ctl.state()["source_index"] == 1
        out1 = stages.process(face, 0.06)  # the next one shows the new source
        assert stages.anim.source is stages.sources[1].state and np.abs(out1.astype(int) - out0).max() > 0
        ctl.act("select_source", index=0)
        np.testing.assert_array_equal(stages.process(face, 0.08), out0)  # same pose, first source again
        ctl.act("set_compose", mode="paste")
        paste = stages.process(face, 0.12)
    assert set(stages._compositors) == {(0, "crop"), (1, "crop"), (0, "paste")}
    assert paste.shape == out0.shape and np.abs(paste.astype(int) - out0).max() > 0
    assert "source 2/2: mirror (added)" in said
    # a portrait without a face (crop auto) is refused with a warning; the session goes on
    auto = _stages(tiny_generator, face, said, source_crop="auto")
    auto.controller.act("add_source", image=np.zeros((64, 64, 3), np.uint8), name="blank")
    with torch.inference_mode():
        auto.process(face, 0.0)
    assert sum(m.startswith("warning: source blank not added: no face found in blank") for m in said) == 1
    assert auto.controller.state()["sources"] == ["face"]


class Failing(Collect):
    def send(self, rgb):
        if len(self.frames) == 2:
            raise RuntimeError("disk on fire")
        super().send(rgb)


def test_preview_and_pipeline_errors_reach_the_controller(clip, tiny_generator):
    controller = LiveController(say=lambda m: None)
    stats, frames = _live_run(clip, tiny_generator, controller=controller, load=True)
    p = controller.preview()
    assert p.seq == 7 and p.camera is clip["frames"][7] and np.array_equal(p.output, frames[-1])
    assert p.face_rgb().shape == (64, 64, 3) and p.face_found
    said = [m for m in controller.messages()[1] if not m.startswith("WARNING: a CUDA GPU")]  # on a GPU box
    assert said[0] == f"model {clip['ckpt']} (64²) | backend eager | device cpu | precision fp32"
    assert said[1:4] == ["running on the CPU: expect a few frames per second", "input: frames (file: every frame)",
                         "frame path: host (pipelined stages)"]
    assert controller.state()["info"] == {"backend": "eager", "device": "cpu", "precision": "fp32",
                                          "model": str(clip["ckpt"])}
    assert said[-1].startswith("done: 8 frames")
    cfg = LiveConfig(sources=(clip["src"],)).replace(motion={"crop": "none", "source_crop": "none"},
                                                     output={"size": (64, 64), "vcam": False},
                                                     run={"stats_every": 0, "pipeline": False})
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_live(cfg, capture=IterableCapture(iter(clip["frames"])), animator=Animator(tiny_generator),
                 extra_outputs=[Failing()], controller=controller)
    n, said = controller.messages()
    assert said[-1] == "error: disk on fire" and controller.preview().seq == 1
    assert controller.state()["running"] is False
