"""The live pipeline end to end on synthetic input (tiny model, fake virtual camera, no devices)."""

import json
import threading

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


class GatedCam:
    """A cv2.VideoCapture stand-in that delivers the next scene frame (BGR) only when the test releases one
    (no timing decides anything). ``state`` is shared by the cameras one opener makes: ``dead`` makes reads
    fail (a camera unplugged), ``closing`` ends a waiting read at shutdown."""

    def __init__(self, scene, state):
        self.scene, self.state = scene, state

    def isOpened(self):
        return not self.state["dead"]

    def read(self):
        st = self.state
        while not st["gate"].acquire(timeout=0.02):
            if st["closing"].is_set():
                return False, None
        if st["dead"]:
            return False, None
        k = st["k"]
        st["k"] += 1
        return True, cv2.cvtColor(self.scene.frame(k % self.scene.n), cv2.COLOR_RGB2BGR)

    def release(self):
        pass


def _gated_camera(scene, messages=None):
    """A CameraCapture over GatedCam s (the first frame, which opening waits for, is released) and their
    shared state."""
    state = {"gate": threading.Semaphore(1), "closing": threading.Event(), "dead": False, "k": 0}
    cap = CameraCapture(0, CameraSettings(first_frame_timeout=10, max_backoff=0.05),
                        opener=lambda spec, st: GatedCam(scene, state),
                        log=(messages.append if messages is not None else lambda m: None))
    return cap, state


class KeyWindow:
    """A preview window that presses the scripted key when output frame ``seq`` is shown ({seq: key}) and lets
    the camera deliver the next frame on the following poll, once the key has been applied; 'q' ends it."""

    def __init__(self, controller, state, script):
        self.controller, self.state, self.script = controller, state, script
        self.open, self.closed, self.shown = True, False, []
        self._release = False

    def show(self, rgb):
        if self._release:  # the key pressed with the last frame is applied: the next frame may come
            self._release = False
            self.state["gate"].release()
        frame = self.controller.preview()
        if frame is None or (self.shown and frame.seq == self.shown[-1]):
            return -1
        self.shown.append(frame.seq)
        key = self.script.get(frame.seq, -1)
        if key == ord("q"):
            self.state["closing"].set()
        else:
            self._release = True
        return key

    def close(self):
        self.closed = True


def _cfg(media, sources=None, **run):
    sources = sources or (media / "astro.png", media / "astro_small.png")
    return LiveConfig(sources=sources).replace(output={"size": (160, 96), "vcam_backend": "fake"},
                                               run={"stats_every": 0, **run})


def test_hotkeys_work_in_webcam_mode(media, tiny_generator, scene):
    """One camera frame in flight at a time; each key lands between two frames: exact counts and states."""
    fake = register_fake_vcam()
    cap, state = _gated_camera(scene)
    controller = LiveController()
    script = {1: ord("m"), 2: ord("+"), 3: ord("p"), 4: ord("n"), 5: ord("r"), 7: ord("q")}
    window = KeyWindow(controller, state, script)
    stats = run_live(_cfg(media), capture=cap, animator=_anim(tiny_generator), window=window,
                     controller=controller)
    assert window.shown == list(range(8)) and window.closed  # 'q' at frame 7 stopped the loop
    assert stats["frames"] == 8 and stats["frames_dropped"] == 0 and state["k"] == 8
    st = stats["state"]
    assert {k: st[k] for k in ("mode", "power", "source_index", "passthrough", "reference_taken", "running")} == {
        "mode": "absolute", "power": 1.1, "source_index": 1, "passthrough": True, "reference_taken": True,
        "running": False}
    cam = fake.instances[0]
    assert cam.count == 8 and cam.closed
    sent = [f.reshape(96, 160, 3) for f in cam.frames]  # pyvirtualcam hands its backend flat frames
    # frames 4..7 came after 'p' (pressed with frame 3): the camera itself, letterboxed; frame 3 was animated
    for k in range(4, 8):
        np.testing.assert_array_equal(sent[k], letterbox(scene.frame(k), 160, 96))
    assert not np.array_equal(sent[3], letterbox(scene.frame(3), 160, 96))
    said = controller.messages()[1]
    assert said.count("mode: absolute") == 1 and said.count("motion power 1.1") == 1
    assert "source 2/2: " + str(media / "astro_small.png") in said and "stopping" in said
    assert not cap._thread.is_alive()


class LossScript:
    """An output that runs the camera: the next frame after each animated frame; after frame 5 the camera
    dies until ``keepalives`` re-sends of the last frame were seen; stops the camera after ``n`` frames."""

    def __init__(self, state, messages, n, keepalives=3):
        self.state, self.messages, self.n, self.keepalives = state, messages, n, keepalives
        self.frames, self.resent, self.last, self.said = 0, 0, None, None

    def send(self, rgb):
        if rgb is self.last:  # the sink re-sends its last frame while the camera is away
            self.resent += 1
            if self.resent == self.keepalives:
                self.state["dead"] = False
                self.state["gate"].release()
            return
        self.last = rgb
        self.frames += 1
        if self.frames == self.n:
            self.said = list(self.messages)  # before shutdown (whose last read fails)
            self.state["closing"].set()
            return
        self.state["dead"] = self.frames == 6
        self.state["gate"].release()

    def close(self):
        pass


def test_camera_lost_mid_stream_keeps_sending(media, tiny_generator, scene):
    fake = register_fake_vcam()
    messages = []
    cap, state = _gated_camera(scene, messages)
    script = LossScript(state, messages, n=12)
    stats = run_live(_cfg(media, max_frames=12, sources=(media / "astro.png",)), capture=cap,
                     animator=_anim(tiny_generator), extra_outputs=[script])
    assert stats["frames"] == 12 and script.frames == 12 and state["k"] == 12
    assert script.resent >= 3  # the last frame was re-sent while the camera was away (the test waited for 3)
    assert fake.instances[0].count == 12 + script.resent and stats["frames_sent"] == 12 + script.resent
    assert [m.split(" ", 2)[2] for m in script.said] == [
        "lost; sending the last frame and reopening it", "is back"]


def test_user_errors_exit_2_with_one_line(media, ckpt, tmp_path, capsys, monkeypatch):
    from lia_live.capture import camera

    monkeypatch.setattr(camera, "default_opener", lambda spec, st: GatedCam(None, {"dead": True}))
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
    assert main(["--source", str(face), "--dry-run", "--size", "640x360", "--motion-power", "1.5", "--reference",
                 "landmarks"]) == 0
    out = capsys.readouterr().out
    assert "output.size = [640, 360]" in out and "motion.motion_power = 1.5" in out and "model.backend = auto" in out
    assert "motion.reference = landmarks" in out
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


def test_each_source_portrait_is_read_once(media, ckpt, tmp_path, monkeypatch):
    """The CLI checks the portraits before loading the model and the run uses what it read."""
    from lia_live.live import sources

    calls, read = [], sources.read_image
    monkeypatch.setattr(sources, "read_image", lambda path, what: calls.append(path) or read(path, what))
    out = tmp_path / "two.mp4"
    rc = main(["--source", str(media / "astro.png"), "--source", str(media / "astro_small.png"), "--driving",
               str(media / "drive.mp4"), "--checkpoint", str(ckpt), "--backend", "eager", "--no-vcam", "--output",
               str(out), "--max-frames", "2", "--stats-every", "0"])
    assert rc == 0 and count_video_frames(out) == 2
    assert calls == [media / "astro.png", media / "astro_small.png"]


def test_hotkey_hint_only_for_terminal_sessions(media, tiny_generator, scene, capsys):
    """A camera without a window: a terminal session is told how to get hotkeys; a front end that brings its
    own controller (the control panel) is not told about keys it does not use."""
    from lia_live.capture.base import IterableCapture

    class LiveFrames(IterableCapture):
        live = True

    register_fake_vcam()
    hint = "hotkeys need a preview window"
    run_live(_cfg(media), capture=LiveFrames([scene.frame(k) for k in range(3)]), animator=_anim(tiny_generator))
    assert capsys.readouterr().err.count(hint) == 1
    panel = LiveController()
    run_live(_cfg(media), capture=LiveFrames([scene.frame(k) for k in range(3)]), animator=_anim(tiny_generator),
             controller=panel)
    said = panel.messages()[1]
    assert any("frame path: " in m for m in said) and not any("hotkeys need" in m for m in said)
