"""The live pipeline end to end on synthetic input (tiny model, fake virtual camera, no devices)."""

import json
import time

import cv2
import numpy as np
import pytest
import torch
from livedata import Collect, make_scene, register_fake_vcam
from media import count_video_frames, write_video

from lia_live.capture import CameraCapture, CameraSettings
from lia_live.cli.live import main
from lia_live.live import STAGES, LiveConfig, LiveController, LiveStages, SourceEntry, load_sources, run_live
from lia_live.model.checkpoint import save_generator
from lia_live.motion import MotionController
from lia_live.output import Compositor, letterbox

N_FRAMES, GAP = 75, (35, 50)


# mediapipe's threads + two OpenMP threads oversubscribe a 2-core box (measured 5-10× slower)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def ckpt(tmp_path, tiny_generator):
    p = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, p)
    return p


@pytest.fixture(scope="module")
def scene(astronaut):
    return make_scene(astronaut, n=N_FRAMES, gaps=(GAP,))


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut, scene):
    d = tmp_path_factory.mktemp("live")
    cv2.imwrite(str(d / "astro.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(d / "astro_small.png"), cv2.cvtColor(astronaut[::2, ::2], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(d / "blank.png"), np.full((120, 160, 3), 128, np.uint8))
    write_video(d / "drive.mp4", scene.frames(), fps=scene.fps)
    assert count_video_frames(d / "drive.mp4") == N_FRAMES
    return d


def _anim(tiny_generator):
    from lia_live.animator import Animator

    return Animator(tiny_generator)


def test_file_mode_counts_stats_and_missing_face(media, ckpt, tmp_path, capsys):
    fake = register_fake_vcam()
    out, js = tmp_path / "out.mp4", tmp_path / "stats.json"
    rc = main(["--source", str(media / "astro.png"), "--driving", str(media / "drive.mp4"), "--checkpoint",
               str(ckpt), "--backend", "eager", "--output", str(out), "--vcam-backend", "fake", "--size", "320x180",
               "--stats-json", str(js), "--stats-every", "0", "--compose", "paste"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "backend eager" in err and "device cpu" in err and "precision fp32" in err
    assert count_video_frames(out) == N_FRAMES  # every input frame → one output frame
    (cam,) = fake.instances
    assert cam.count == N_FRAMES and cam.closed and cam.width == 320 and cam.height == 180
    stats = json.loads(js.read_text())
    assert stats["frames"] == N_FRAMES and stats["frames_sent"] == N_FRAMES
    gap = GAP[1] - GAP[0]
    assert stats["frames_without_face"] == gap
    assert set(stats["stage_ms_mean"]) == set(STAGES)
    assert stats["latency_ms_mean"] > 0
    # the output keeps moving through the missing-face stretch (eases back, never freezes)
    kept = cam.frames  # the last 64 frames: indices N-64 .. N-1
    first = N_FRAMES - len(kept)
    gap_frames = kept[GAP[0] - first: GAP[0] + 5 - first]
    assert all(np.abs(a.astype(int) - b).mean() > 0 for a, b in zip(gap_frames, gap_frames[1:]))


def _stages(anim, entries, out_size, tracker=None, ease=1.0, say=lambda m: None, **motion):
    ctrl = MotionController(anim.basis.shape[1], ease_seconds=ease, **motion)
    controller = LiveController(say=say)
    controller.start(ctrl, [str(e.path) for e in entries])
    return LiveStages(anim, entries, lambda mode: Compositor(*out_size, mode), controller, tracker)


def test_no_face_in_driver_keeps_last_motion_then_eases(tiny_generator, astronaut, scene):
    anim = _anim(tiny_generator)
    crop = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    src = SourceEntry(path="astro", image=astronaut, crop=crop, box=None)
    from lia_live.tracking import FaceTracker, center_box

    src.box = center_box(astronaut)
    tracker = FaceTracker()
    sess = _stages(anim, [src], (64, 64), tracker, ease=0.1)
    ctrl = sess.motion
    with torch.inference_mode():
        outs = [sess.process(scene.frame(i), i / 30) for i in range(GAP[0])]
        assert ctrl.alpha_ref is not None and sess.controller.preview() is None
        last = ctrl.alpha.clone()
        dists, gap_outs = [], []
        for i in range(GAP[0], GAP[1]):
            gap_outs.append(sess.process(scene.frame(i), i / 30))
            dists.append(float((ctrl.alpha - ctrl.alpha_ref).norm()))
    tracker.close()
    assert sess.timer.no_face == GAP[1] - GAP[0]
    assert len(outs) + len(gap_outs) == GAP[1]
    d_last = float((last - ctrl.alpha_ref).norm())
    assert d_last > 0 and dists[0] == pytest.approx(d_last * np.exp(-1 / 3), rel=1e-3)  # from the last motion
    assert all(b < a for a, b in zip(dists, dists[1:]))  # easing to the reference
    assert dists[-1] < 0.1 * dists[0]
    assert np.abs(gap_outs[0].astype(int) - gap_outs[1]).mean() > 0  # not frozen


def test_hotkey_handlers_change_state(tiny_generator, astronaut):
    anim = _anim(tiny_generator)
    entries = [SourceEntry("a", astronaut, cv2.resize(astronaut, (64, 64)), None),
               SourceEntry("b", astronaut[:, ::-1].copy(), cv2.resize(astronaut[:, ::-1], (64, 64)), None)]
    from lia_live.tracking import center_box

    for e in entries:
        e.box = center_box(e.image)
    said = []
    sess = _stages(anim, entries, (96, 64), say=said.append)
    keys, ctrl = sess.controller, sess.motion
    frame = cv2.resize(astronaut, (96, 64))
    with torch.inference_mode():
        out0 = sess.process(frame, 0.0)
        ref0 = ctrl.alpha_ref.clone()
        assert keys.handle_key(ord("m")) == "toggle_mode" and ctrl.mode == "absolute"
        out_abs = sess.process(frame, 0.05)
        assert sess.last_args.alpha_ref is None and np.abs(out_abs.astype(int) - out0).mean() > 0
        keys.handle_key(ord("m"))
        assert ctrl.mode == "relative"
        sess.process(frame, 0.06)
        assert sess.last_args.alpha_ref is ctrl.alpha_ref
        for _ in range(15):
            keys.handle_key(ord("+"))
        assert ctrl.power == 2.0  # clamped
        keys.handle_key(ord("-"))
        assert ctrl.power == pytest.approx(1.9)
        keys.handle_key(ord("p"))
        assert keys.state()["passthrough"]
        np.testing.assert_array_equal(sess.process(frame, 0.1), letterbox(frame, 96, 64))
        keys.handle_key(ord("p"))
        state_a = anim.source
        out_a = sess.process(frame, 0.2)
        assert keys.handle_key(ord("n")) == "next_source" and keys.state()["source_index"] == 1
        assert np.abs(sess.process(frame, 0.3).astype(int) - out_a).mean() > 0
        assert anim.source is not state_a
        keys.handle_key(ord("n"))
        sess.process(frame, 0.35)
        assert anim.source is state_a  # encoded once, reused
        keys.handle_key(ord("r"))
        assert ctrl.want_reference
        sess.process(np.ascontiguousarray(frame[:, ::-1]), 0.4)
        assert not ctrl.want_reference and not torch.equal(ctrl.alpha_ref, ref0)
        # live direction offsets: select direction 2, nudge it up twice, then reset
        keys.handle_key(ord("d")), keys.handle_key(ord("d"))
        keys.handle_key(ord("k")), keys.handle_key(ord("k"))
        assert ctrl.selected == 2 and float(ctrl.offsets[2]) == pytest.approx(0.2)
        keys.handle_key(ord("o"))
        assert not ctrl.offsets.any()
        assert keys.handle_key(-1) is None and keys.handle_key(ord("x")) is None
        keys.handle_key(27)
        assert not keys.running
    assert any("reference" in m for m in said)


class FakeWindow:
    """A preview window that presses scripted keys: {show call number: key}."""

    def __init__(self, script):
        self.script, self.calls, self.open, self.closed = script, 0, True, False
        self.shapes = set()

    def show(self, rgb):
        self.calls += 1
        self.shapes.add(rgb.shape)
        return self.script.get(self.calls, -1)

    def close(self):
        self.closed = True


class SceneCam:
    """A fake cv2.VideoCapture playing the scene at ~30 fps (BGR); dies after ``die_at`` for ``down`` s."""

    def __init__(self, scene, die_at=None, down=0.0, state=None):
        self.scene, self.die_at, self.down = scene, die_at, down
        self.state = state if state is not None else {"i": 0, "dead_until": None}

    def isOpened(self):
        until = self.state["dead_until"]
        return until is None or time.time() >= until

    def read(self):
        time.sleep(1 / 30)
        st = self.state
        if not self.isOpened():
            return False, None
        if self.die_at is not None and st["i"] == self.die_at and st["dead_until"] is None:
            st["dead_until"] = time.time() + self.down
            return False, None
        st["i"] += 1
        return True, cv2.cvtColor(self.scene.frame(st["i"] % self.scene.n), cv2.COLOR_RGB2BGR)

    def release(self):
        pass


def _cfg(media, sources=None, **run):
    sources = sources or (media / "astro.png", media / "astro_small.png")
    return LiveConfig(sources=sources).replace(output={"size": (160, 96), "vcam_backend": "fake"},
                                               run={"stats_every": 0, **run})


def test_hotkeys_work_in_webcam_mode(media, tiny_generator, scene):
    fake = register_fake_vcam()
    state = {"i": 0, "dead_until": None}
    cap = CameraCapture(0, CameraSettings(first_frame_timeout=2), opener=lambda s, st: SceneCam(scene, state=state),
                        log=lambda m: None)
    window = FakeWindow({3: ord("m"), 4: ord("+"), 5: ord("p"), 6: ord("n"), 7: ord("r"), 10: ord("q")})
    stats = run_live(_cfg(media), capture=cap, animator=_anim(tiny_generator), window=window)
    assert window.calls == 10 and window.closed  # 'q' stopped the loop; the window was released
    st = stats["state"]
    assert {k: st[k] for k in ("mode", "power", "source_index", "passthrough", "reference_taken")} == {
        "mode": "absolute", "power": 1.1, "source_index": 1, "passthrough": True, "reference_taken": True}
    # the window is also refreshed while waiting for a camera frame, so frames <= key polls
    assert fake.instances[0].count == stats["frames"] and 3 <= stats["frames"] <= 10
    assert fake.instances[0].closed
    assert not cap._thread.is_alive()


def test_camera_lost_mid_stream_keeps_sending(media, tiny_generator, scene, capsys):
    fake = register_fake_vcam()
    state = {"i": 0, "dead_until": None}
    messages = []
    cap = CameraCapture(0, CameraSettings(first_frame_timeout=2, max_backoff=0.1),
                        opener=lambda s, st: SceneCam(scene, die_at=8, down=0.6, state=state), log=messages.append)
    stats = run_live(_cfg(media, max_frames=16, sources=(media / "astro.png",)), capture=cap,
                     animator=_anim(tiny_generator))
    assert stats["frames"] == 16
    cam = fake.instances[0]
    assert cam.count > 16 + 5  # the last frame was re-sent while the camera was away
    assert sum("lost" in m for m in messages) == 1 and any("back" in m for m in messages)


def test_user_errors_exit_2_with_one_line(media, ckpt, tmp_path, capsys, monkeypatch):
    from lia_live.capture import camera

    monkeypatch.setattr(camera, "default_opener", lambda spec, st: SceneCam(None, state={"i": 0, "dead_until": 1e18}))
    base = ["--checkpoint", str(ckpt), "--backend", "eager", "--stats-every", "0"]
    rc = main(["--source", str(media / "blank.png"), "--driving", str(media / "drive.mp4"), "--no-vcam",
               "--output", str(tmp_path / "x.mp4")] + base)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "blank.png" in err[-1] and "set --source-crop to none" in err[-1]
    assert err[-1].startswith("lia-live: error:")

    rc = main(["--source", str(media / "astro.png"), "--driving", "9"] + base)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "camera 9" in err[-1]

    no_cam = ["--vcam-backend", "v4l2loopback", "--vcam-device", "/dev/video-none"]
    rc = main(["--source", str(media / "astro.png"), "--driving", str(media / "drive.mp4")] + no_cam + base)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "no virtual camera device" in err[-1] and "modprobe v4l2loopback" in err[-1]

    out = tmp_path / "y.mp4"
    rc = main(["--source", str(media / "astro.png"), "--driving", str(media / "drive.mp4"), "--output",
               str(out), "--max-frames", "3"] + no_cam + base)
    err = capsys.readouterr().err
    assert rc == 0 and "warning: no virtual camera device" in err and count_video_frames(out) == 3

    rc = main(["--source", str(media / "astro.png"), "--output", str(out), "--no-vcam"] + base)
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_source_crop_none_accepts_a_faceless_image(media, tiny_generator):
    (entry,) = load_sources([media / "blank.png"], 64, "none")
    assert entry.crop.shape == (64, 64, 3)


def test_subcommands(capsys):
    assert main(["backends", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "eager" in out and "auto" in out  # `lia-live bench` itself: tests/test_bench.py


def test_dry_run_prints_config(capsys, tmp_path):
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((32, 32, 3), 128, np.uint8))
    assert main(["--source", str(face), "--dry-run", "--size", "640x360", "--motion-power", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "output.size = [640, 360]" in out and "motion.motion_power = 1.5" in out and "model.backend = auto" in out
    with pytest.raises(SystemExit) as e:
        main(["--source", str(face), "--motion-power", "3"])
    assert e.value.code == 2
    assert main(["--source", str(tmp_path / "missing.png"), "--dry-run"]) == 2
    assert "source image not found" in capsys.readouterr().err


@pytest.mark.parametrize("compose", ["crop", "paste"])
def test_device_frame_path_matches_the_host_path(media, tiny_generator, scene, compose):
    """The GPU-resident frame path (upload → crop → compose → download), run on CPU tensors, gives the same
    frames as the OpenCV path, pipelined and serial alike."""
    from lia_live.capture import IterableCapture

    outs = {}
    for path, pipeline in (("host", True), ("device", True), ("device", False)):
        sink = Collect()
        cfg = LiveConfig(sources=(media / "astro.png",)).replace(
            output={"size": (160, 96), "vcam": False, "compose": compose},
            run={"stats_every": 0, "frame_path": path, "pipeline": pipeline})
        stats = run_live(cfg, capture=IterableCapture((scene.frame(i) for i in range(12)), fps=30),
                         animator=_anim(tiny_generator), extra_outputs=[sink])
        assert stats["frames"] == 12 and len(sink.frames) == 12
        outs[(path, pipeline)] = np.stack(sink.frames).astype(int)
    host, dev, dev_serial = outs[("host", True)], outs[("device", True)], outs[("device", False)]
    assert np.abs(host - dev).mean() < 1.0 and np.abs(host - dev).max() <= 40  # crop interpolation differs a little
    np.testing.assert_array_equal(dev, dev_serial)  # concurrency changes nothing


def test_library_errors_name_settings_and_the_cli_names_flags():
    from lia_live.errors import UserError, as_flag

    e = UserError("no face found in x.png; set «source_crop» to none")
    assert str(e) == "no face found in x.png; set source_crop to none"  # what a Python caller passes
    assert e.render(as_flag) == "no face found in x.png; set --source-crop to none"  # what a CLI user types
