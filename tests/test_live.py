"""The live pipeline end to end on synthetic input (tiny model, fake virtual camera, no devices)."""

import json
import time

import cv2
import numpy as np
import pytest
import torch

from lia_live.capture import CameraCapture, CameraSettings
from lia_live.cli.live import main
from lia_live.live import STAGES, LiveConfig, LiveSession, SourceEntry, load_sources, run_live
from lia_live.model.checkpoint import save_generator
from lia_live.output import Compositor, letterbox
from livedata import count_video_frames, make_scene, register_fake_vcam, write_video

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
    assert write_video(scene.frames(), d / "drive.mp4", fps=scene.fps) == N_FRAMES
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


def test_no_face_in_driver_keeps_last_motion_then_eases(tiny_generator, astronaut, scene):
    anim = _anim(tiny_generator)
    crop = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    src = SourceEntry(path="astro", image=astronaut, crop=crop, box=None)
    from lia_live.tracking import FaceTracker, center_box

    src.box = center_box(astronaut)
    tracker = FaceTracker()
    sess = LiveSession(anim, [src], Compositor(64, 64, "crop"), tracker, ease_seconds=0.1, say=lambda m: None)
    with torch.inference_mode():
        outs = [sess.process(scene.frame(i), i / 30) for i in range(GAP[0])]
        assert sess.alpha_ref is not None and sess.face_found
        last = sess.alpha.clone()
        dists, gap_outs = [], []
        for i in range(GAP[0], GAP[1]):
            gap_outs.append(sess.process(scene.frame(i), i / 30))
            dists.append(float((sess.alpha - sess.alpha_ref).norm()))
    tracker.close()
    assert not sess.face_found
    assert len(outs) + len(gap_outs) == GAP[1]
    lost_from = 0
    d_last = float((last - sess.alpha_ref).norm())
    assert d_last > 0 and dists[0] == pytest.approx(d_last * np.exp(-1 / 3), rel=1e-3)  # from the last motion
    assert all(b < a for a, b in zip(dists[lost_from:], dists[lost_from + 1:]))  # easing to the reference
    assert dists[-1] < 0.1 * dists[lost_from]
    assert np.abs(gap_outs[lost_from].astype(int) - gap_outs[lost_from + 1]).mean() > 0  # not frozen


def test_hotkey_handlers_change_state(tiny_generator, astronaut):
    anim = _anim(tiny_generator)
    entries = [SourceEntry("a", astronaut, cv2.resize(astronaut, (64, 64)), None),
               SourceEntry("b", astronaut[:, ::-1].copy(), cv2.resize(astronaut[:, ::-1], (64, 64)), None)]
    from lia_live.tracking import center_box

    for e in entries:
        e.box = center_box(e.image)
    said = []
    sess = LiveSession(anim, entries, Compositor(96, 64, "crop"), tracker=None, say=said.append)
    frame = cv2.resize(astronaut, (96, 64))
    with torch.inference_mode():
        sess.process(frame, 0.0)
        ref0 = sess.alpha_ref.clone()
        assert sess.handle_key(ord("m")) == "toggle_mode" and sess.mode == "absolute" and anim.alpha_ref is None
        sess.handle_key(ord("m"))
        assert sess.mode == "relative" and anim.alpha_ref is sess.alpha_ref
        for _ in range(15):
            sess.handle_key(ord("+"))
        assert sess.motion_power == 2.0  # clamped
        sess.handle_key(ord("-"))
        assert sess.motion_power == pytest.approx(1.9)
        sess.handle_key(ord("p"))
        assert sess.passthrough
        np.testing.assert_array_equal(sess.process(frame, 0.1), letterbox(frame, 96, 64))
        sess.handle_key(ord("p"))
        state_a = anim.source
        out_a = sess.process(frame, 0.2)
        assert sess.handle_key(ord("n")) == "next_source" and sess.source_index == 1 and anim.source is not state_a
        assert np.abs(sess.process(frame, 0.3).astype(int) - out_a).mean() > 0
        sess.handle_key(ord("n"))
        assert anim.source is state_a  # encoded once, reused
        sess.handle_key(ord("r"))
        assert sess.want_reference
        sess.process(np.ascontiguousarray(frame[:, ::-1]), 0.4)
        assert not sess.want_reference and not torch.equal(sess.alpha_ref, ref0)
        assert sess.handle_key(-1) is None and sess.handle_key(ord("x")) is None
        sess.handle_key(27)
        assert not sess.running
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


def _cfg(media, **kw):
    base = dict(sources=(media / "astro.png", media / "astro_small.png"), driving="0", width=160, height=96,
                vcam_backend="fake", stats_every=0)
    base.update(kw)
    return LiveConfig(**base)


def test_hotkeys_work_in_webcam_mode(media, tiny_generator, scene):
    fake = register_fake_vcam()
    state = {"i": 0, "dead_until": None}
    cap = CameraCapture(0, CameraSettings(first_frame_timeout=2), opener=lambda s, st: SceneCam(scene, state=state),
                        log=lambda m: None)
    window = FakeWindow({3: ord("m"), 4: ord("+"), 5: ord("p"), 6: ord("n"), 7: ord("r"), 10: ord("q")})
    stats = run_live(_cfg(media), capture=cap, animator=_anim(tiny_generator), window=window)
    assert window.calls == 10 and window.closed  # 'q' stopped the loop; the window was released
    st = stats["state"]
    assert st == {"mode": "absolute", "motion_power": 1.1, "source_index": 1, "passthrough": True,
                  "reference_set": True}
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


def test_user_errors_exit_2_with_one_line(media, ckpt, tmp_path, capsys):
    base = ["--checkpoint", str(ckpt), "--backend", "eager", "--stats-every", "0"]
    rc = main(["--source", str(media / "blank.png"), "--driving", str(media / "drive.mp4"), "--no-vcam",
               "--output", str(tmp_path / "x.mp4")] + base)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "blank.png" in err[-1] and "--source-crop none" in err[-1]
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


def test_dry_run_prints_config(capsys):
    assert main(["--source", "face.png", "--dry-run", "--size", "640x360", "--motion-power", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "width = 640" in out and "motion_power = 1.5" in out and "backend = auto" in out
    with pytest.raises(SystemExit) as e:
        main(["--source", "face.png", "--motion-power", "3"])
    assert e.value.code == 2
