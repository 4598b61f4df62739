"""The control panel's parts without a server or a browser: input switching, outputs, preview encoding, prefs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from media import count_video_frames
from uihelp import Frame

from lia_live.capture import IterableCapture
from lia_live.errors import UserError
from lia_live.tracking import CropBox
from lia_live.ui import prefs
from lia_live.ui.devices import Devices, InputChoice, SwitchingInput, SwitchingOutputs
from lia_live.ui.panel import check_params, decode_upload
from lia_live.ui.preview import (
    BOUNDARY,
    OPENING,
    PreviewEncoder,
    StreamStats,
    encode_jpeg,
    part,
    read_stamp,
    stamp,
    tiles,
)


def _frames(value: int, n: int) -> list[np.ndarray]:
    return [np.full((8, 8, 3), value + i, np.uint8) for i in range(n)]


class Opener:
    """Opens "a"/"b" as 3-frame files (values 10.. and 100..); anything else fails like a missing camera."""

    def __init__(self):
        self.opened: list[str] = []

    def __call__(self, spec, settings):
        if spec not in ("a", "b"):
            raise UserError(f"cannot open camera {spec}")
        self.opened.append(spec)
        return IterableCapture(_frames(10 if spec == "a" else 100, 3), fps=1000.0, name=spec)


def _read(inp: SwitchingInput, n: int) -> list[int]:
    got: list[int] = []
    for _ in range(100 * n):
        f = inp.read(0.05)
        if f is not None:
            got.append(int(f.image[0, 0, 0]))
        if len(got) == n:
            break
    return got


def test_input_loops_a_file_and_switches_at_a_frame_boundary():
    lines: list[str] = []
    opener = Opener()
    inp = SwitchingInput(InputChoice("a"), say=lines.append, opener=opener)
    assert inp.live and not inp.finished
    assert _read(inp, 5) == [10, 11, 12, 10, 11]  # played like a camera: from the start again at its end
    inp.request(InputChoice("b"))
    assert _read(inp, 2) == [100, 101]
    assert lines == ["input: b"]
    inp.request(InputChoice("7"))  # a camera that is not there: said, and the old input goes on
    assert _read(inp, 1) == [102]
    assert inp.error == "cannot open camera 7" and lines[-1] == "input 7: cannot open camera 7"
    assert inp.choice.driving == "b"
    inp.stop()
    assert inp.finished and inp.read(0.01) is None
    inp.close()
    inp.resume()
    assert not inp.finished and _read(inp, 1) == [100]  # opened again after close
    assert opener.opened == ["a", "a", "b", "b"]


def test_input_frames_are_restamped_in_order():
    inp = SwitchingInput(InputChoice("a"), opener=Opener())
    frames = [inp.read(0.05) for _ in range(8)]
    got = [f for f in frames if f is not None]
    assert [f.index for f in got] == list(range(1, len(got) + 1))
    assert all(b.media_time >= a.media_time for a, b in zip(got, got[1:]))


class FakeCam:
    opened: list = []

    def __init__(self, w, h, fps, device=None, backend=None):
        self.device = "/dev/video9"
        self.sent = 0
        FakeCam.opened.append(self)

    def send(self, rgb):
        self.sent += 1

    def close(self):
        self.device = None


def test_outputs_switch_vcam_and_record_between_frames(tmp_path, monkeypatch):
    import lia_live.output

    monkeypatch.setattr(lia_live.output, "VirtualCamera", FakeCam)
    FakeCam.opened = []
    lines: list[str] = []
    outs = SwitchingOutputs((64, 48), 25.0, vcam=False, say=lines.append, record_dir=tmp_path)
    frame = np.zeros((48, 64, 3), np.uint8)
    outs.send(frame)
    assert FakeCam.opened == [] and outs.state()["vcam_device"] is None
    outs.set_vcam(True)
    outs.set_recording(True)
    assert FakeCam.opened == []  # applied by the loop's next frame, not by the caller
    for _ in range(5):
        outs.send(frame)
    st = outs.state()
    assert st["vcam_device"] == "/dev/video9" and st["recording"] and FakeCam.opened[0].sent == 5
    outs.set_vcam(False)
    outs.set_recording(False)
    outs.send(frame)
    st = outs.state()
    assert st["vcam_device"] is None and not st["recording"]
    saved = st["last_recording"]
    assert saved is not None and saved.startswith(str(tmp_path)) and count_video_frames(saved) == 5
    assert lines[-1] == f"recording saved: {saved} (5 frames)"


def test_vcam_failure_is_one_line_and_not_retried_each_frame(monkeypatch):
    import lia_live.output

    calls = []

    def broken(*a, **k):
        calls.append(1)
        raise UserError("no virtual camera device (x); to create one, install v4l2loopback")

    monkeypatch.setattr(lia_live.output, "VirtualCamera", broken)
    lines: list[str] = []
    outs = SwitchingOutputs((64, 48), 25.0, vcam=True, say=lines.append)
    for _ in range(3):
        outs.send(np.zeros((48, 64, 3), np.uint8))
    assert calls == [1] and outs.state()["vcam_error"].startswith("no virtual camera device")
    assert lines == ["virtual camera: no virtual camera device (x); to create one, install v4l2loopback"]


def test_device_actions_check_their_parameters(tmp_path):
    lines: list[str] = []
    inp = SwitchingInput(InputChoice("a"), opener=Opener())
    dev = Devices(inp, SwitchingOutputs((64, 48), 25.0, vcam=False), say=lines.append)
    with pytest.raises(UserError, match="driving video or frame folder not found"):
        dev.act("set_input", driving=str(tmp_path / "missing.mp4"))
    with pytest.raises(UserError, match="within 7680×4320"):
        dev.act("set_input", driving="1", width=99999)
    with pytest.raises(UserError, match="unknown device action"):
        dev.act("explode")
    assert dev.act("set_input", driving="3", width=640, height=480, fps=15.0).startswith("input: switching to 3")
    assert dev.state()["camera_size"] == "1280x720"  # applied only when the loop opens it
    assert dev.act("stop").startswith("stopping") and inp.finished and not dev.want_running
    assert dev.act("start") == "starting" and not inp.finished and dev.want_running


def test_params_are_typed_before_the_controller_sees_them():
    assert check_params("set_power", {"value": 1}) == {"value": 1.0}
    assert check_params("set_offset", {"index": 3, "value": -0.5}) == {"index": 3, "value": -0.5}
    for action, params, text in (("set_power", {"value": "1"}, "value must be float"),
                                 ("set_power", {"value": True}, "value must be float"),
                                 ("set_offset", {"index": 1.5, "value": 0}, "index must be int"),
                                 ("set_vcam", {"on": 1}, "on must be bool"),
                                 ("reset_reference", {"x": 1}, "takes no parameter 'x'")):
        with pytest.raises(UserError, match=text):
            check_params(action, params)


def test_decode_upload_refuses_what_is_not_an_image():
    import cv2

    with pytest.raises(UserError, match="empty"):
        decode_upload(b"")
    with pytest.raises(UserError, match="not an image"):
        decode_upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    ok = decode_upload(cv2.imencode(".jpg", np.full((40, 50, 3), 200, np.uint8))[1].tobytes())
    assert ok.shape == (40, 50, 3) and ok.dtype == np.uint8


def _preview(seq: int, face=True, output=True) -> Frame:
    cam = np.zeros((480, 640, 3), np.uint8)
    return Frame(cam, CropBox(320.0, 240.0, 200.0), True, None, np.full((720, 1280, 3), 9, np.uint8) if output
                 else None, seq, time.perf_counter())


def test_tiles_and_message_layout():
    pic, parts = tiles(_preview(3), with_output=True, height=90)
    assert pic.shape == (90, 120 + 160, 3) and [p["label"] for p in parts] == ["camera", "output"]
    assert tuple(pic[45, 120 + 80]) == (9, 9, 9) and tuple(pic[26, 60]) == (0, 220, 0)  # the face box, top edge
    jpeg = encode_jpeg(pic)
    msg = part(jpeg)
    # the JPEG, then at once the next part's boundary and headers: Chromium shows a part only then
    assert msg == jpeg + f"\r\n--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode() and jpeg[:2] == b"\xff\xd8"
    assert msg[len(jpeg) + 2:] == OPENING  # what starts the stream starts each next part


@pytest.mark.parametrize("ms", [0, 1, 0xABCDEF, (1 << 24) - 1])
def test_stamp_survives_jpeg(ms):
    """The benchmark's time stamp reads back from the decoded JPEG (black/white blocks on JPEG blocks)."""
    import cv2

    pic, _ = tiles(_preview(1), with_output=False, height=240)
    marked = stamp(pic, ms)
    assert np.array_equal(marked[:-8], pic[:-8]) and (ms == 0 or not np.array_equal(marked, pic))  # bottom only
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(encode_jpeg(marked), np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)
    assert read_stamp(back) == ms


def test_stream_stats_per_page():
    from lia_live.ui.preview import PreviewMessage

    st = StreamStats()
    assert st.get("a") == {"sent": 0, "seq": -1, "fps": 0.0, "behind_ms": None, "tiles": []}
    for k in range(11):  # 10 frames a second for one second, each 25 ms after the loop published it
        st.sent("a", PreviewMessage(b"", k, [{"label": "camera", "width": 4}], published=100.0 + k / 10),
                100.025 + k / 10)
    got = st.get("a")
    assert got["sent"] == 11 and got["seq"] == 10 and got["fps"] == pytest.approx(10.0) and got["behind_ms"] == 25.0
    assert st.get("b")["sent"] == 0 and st.get(None)["sent"] == 0  # another page's numbers are its own
    for k in range(StreamStats.KEEP + 5):
        st.sent(f"v{k}", PreviewMessage(b"", 0), 1.0)
    assert st.get("a")["sent"] == 0 and st.get(f"v{StreamStats.KEEP + 4}")["sent"] == 1  # the oldest forgotten


class Published:
    """A preview source: the stand-in (polled) or the real controller (its publish wakes the encoder)."""

    def __init__(self, real: bool):
        from lia_live.live import LiveController

        self.ctrl = LiveController(say=lambda line: None) if real else None
        self.now = None

    def publish(self, frame) -> None:
        if self.ctrl is not None:
            self.ctrl.publish(frame)
        self.now = frame

    def source(self):
        return self.ctrl.preview if self.ctrl is not None else (lambda: self.now)


@pytest.mark.parametrize("real", [False, True], ids=["polled", "woken-by-publish"])
def test_encoder_encodes_the_newest_frame_only_for_a_waiting_page(real):
    src = Published(real)
    src.publish(_preview(1))
    enc = PreviewEncoder(src.source(), height=60)
    assert (enc.source_owner is not None) == real
    enc.start()

    def newest(seen):
        count, msg = asyncio.run(asyncio.wait_for(enc.newer(seen), 10))
        return count, msg.seq

    try:
        assert newest(0) == (1, 1) and enc.encoded == 1
        for seq in (2, 3, 4):  # no page waits meanwhile: none of these is encoded...
            src.publish(_preview(seq))
        assert newest(1) == (2, 4) and enc.encoded == 2  # ...until one asks: it gets the newest
        assert newest(0) == (2, 4) and enc.encoded == 2  # a new page gets the last one at once
    finally:
        enc.stop()


def test_prefs_round_trip_and_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    src = tmp_path / "me.png"
    src.write_bytes(b"x")
    settings = {"sources": [str(src), str(tmp_path / "gone.png")], "mode": "absolute", "motion_power": 1.25,
                "vcam": False, "driving": "clip.mp4", "ease": 1.0, "bogus": 1}
    assert prefs.save(settings) == tmp_path / "cfg" / "lia-live" / "ui.json"
    loaded = prefs.load()
    assert loaded["sources"] == [str(src)] and "bogus" not in loaded and loaded["motion_power"] == 1.25
    assert prefs.command_line(loaded) == (f"lia-live --source {src} --driving clip.mp4 --mode absolute "
                                          f"--motion-power 1.25 --no-vcam")
    prefs.prefs_path().write_text("{broken")
    assert prefs.load() == {}


def test_saved_settings_start_the_panel_unless_the_command_line_says_otherwise(tmp_path):
    from lia_live.cli.ui import given_settings
    from lia_live.settings import LiveConfig
    from lia_live.ui.app import starting_config

    src = tmp_path / "saved.png"
    saved = {"sources": [str(src)], "driving": "clip.mp4", "camera_size": "640x480", "mode": "absolute",
             "motion_power": 0.5, "compose": "paste", "vcam": False}
    argv = ["--source", "me.png", "--motion-power", "1.5", "--no-vcam"]
    given = given_settings(argv)
    assert given == {"sources", "motion_power", "vcam"}
    cfg = LiveConfig(sources=(Path("me.png"),)).replace(motion={"motion_power": 1.5}, output={"vcam": False})
    out = starting_config(cfg, saved, given)
    assert out.sources == (Path("me.png"),) and out.motion.motion_power == 1.5 and out.output.vcam is False
    assert (out.capture.driving, out.capture.size, out.motion.mode, out.output.compose) == \
        ("clip.mp4", (640, 480), "absolute", "paste")
    bare = starting_config(LiveConfig(), saved, frozenset())
    assert bare.sources == (src,) and bare.motion.motion_power == 0.5


def test_panel_options_and_the_host_warning():
    from lia_live.cli.ui import build_ui_parser
    from lia_live.ui.app import DEFAULT_PORT, host_warning

    a = build_ui_parser().parse_args([])
    assert (a.host, a.port, a.no_browser, getattr(a, "sources", None)) == ("127.0.0.1", DEFAULT_PORT, False, None)
    a = build_ui_parser().parse_args(["--port", "0", "--no-browser", "--host", "0.0.0.0", "--source", "x.png"])
    assert (a.host, a.port, a.no_browser) == ("0.0.0.0", 0, True)
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert host_warning("0.0.0.0").startswith("warning: the control panel listens on 0.0.0.0: anyone who can")


def test_ui_cli_errors_are_one_line(capsys):
    from lia_live.cli.live import main

    with pytest.raises(SystemExit) as e:  # argparse's usage error, as for every lia-live option
        main(["ui", "--port", "70000"])
    assert e.value.code == 2 and "--port: must be <= 65535" in capsys.readouterr().err
    assert main(["ui", "--source", "/nonexistent/face.png", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lia-live: error:") and "face.png" in err[0]


def test_cameras_from_sysfs(tmp_path, monkeypatch):
    import lia_live.ui.cameras as cameras

    monkeypatch.setattr(cameras.shutil, "which", lambda name: None)  # no v4l2-ctl: the common resolutions

    for n, name, index in ((0, "Integrated Camera", "0"), (1, "Integrated Camera", "1"), (10, "lia-live", "0")):
        d = tmp_path / f"video{n}"
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "index").write_text(index + "\n")
    cams = cameras.list_cameras(tmp_path)
    assert [(c["index"], c["name"]) for c in cams] == [(0, "Integrated Camera"), (10, "lia-live")]
    assert all(c["resolutions"] == cameras.COMMON for c in cams)


class KeyWindow:
    """A preview window stand-in: at its 5th frame it reads the panel's state over HTTP and presses '+', at
    the 10th it reads it again and presses 'q' (the hotkeys of the OpenCV window)."""

    def __init__(self, out: list[str]):
        self.out, self.open, self.calls, self.seen = out, True, 0, []

    def _power(self) -> float:
        from uihelp import request

        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", "".join(self.out))
        assert m is not None
        status, body = request(int(m.group(1)), "GET", f"/api/state?token={m.group(2)}")
        return json.loads(body)["state"]["power"]

    def show(self, rgb) -> int:
        self.calls += 1
        if self.calls == 5:
            self.seen.append(self._power())
            return ord("+")
        if self.calls == 10:
            self.seen.append(self._power())
            return ord("q")
        return -1

    def close(self) -> None:
        self.open = False


@pytest.mark.usefixtures("one_thread")
def test_hotkeys_and_the_page_share_one_state(tmp_path, monkeypatch, astronaut):
    """`lia-live ui` with a preview window: a key pressed in the window changes what the page reads; 'q'
    there ends the panel (exit 0)."""
    import cv2

    from lia_live.settings import LiveConfig
    from lia_live.ui.app import PanelOptions, run_panel

    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_VIDEOS_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name))
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames_dir / f"{i:03d}.png"), cv2.cvtColor(np.roll(astronaut, 4 * i, axis=1),
                                                                    cv2.COLOR_RGB2BGR))
    cfg = LiveConfig(sources=(tmp_path / "face.png",)).replace(
        capture={"driving": str(frames_dir)}, output={"vcam": False}, model={"backend": "eager"},
        motion={"crop": "none"}, run={"stats_every": 0.0})

    class Out(list):
        def write(self, s):
            self.append(s)

        def flush(self):
            pass

    out = Out()
    window = KeyWindow(out)
    assert run_panel(cfg, PanelOptions(port=0, browser=False), out=out, window=window) == 0
    assert window.seen == [1.0, 1.1] and window.calls == 10


@pytest.mark.usefixtures("one_thread")
def test_motion_recording_from_a_front_end_counts_frames_exactly(tmp_path, tiny_generator, astronaut):
    """record_motion(path) from the panel: the model stage starts at the next frame, saves when asked to stop
    (or when the session ends), and never resumes a finished recording."""
    import cv2

    from lia_live.animator import Animator
    from lia_live.live import LiveController, LiveStages, make_source
    from lia_live.motion import MotionController
    from lia_live.output import Compositor

    face = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    anim = Animator(tiny_generator)
    said: list[str] = []
    ctrl = LiveController(say=said.append)
    ctrl.start(MotionController(anim.basis.shape[1]), ["face"])
    stages = LiveStages(anim, [make_source("face", face, anim.size, "none")], lambda m: Compositor(64, 64, m), ctrl)
    with pytest.raises(UserError, match="record_motion: path must be a file name or None"):
        ctrl.act("record_motion", path=3)
    stages.process(face, 0.0)  # not recording
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    assert ctrl.act("record_motion", path=str(first)) == f"motion recording: to {first} from the next frame"
    for i in range(1, 6):
        stages.process(np.roll(face, i, axis=1), i / 30)
    assert ctrl.state()["motion_recording"] == str(first) and not first.exists()
    ctrl.act("record_motion", path=None)
    stages.process(face, 6 / 30)  # the stop is applied at this frame boundary
    with np.load(first) as z:
        assert z["alpha"].shape[0] == 5 and np.allclose(z["time"], [i / 30 for i in range(1, 6)])
    assert ctrl.state()["motion_recording"] is None and ctrl.state()["last_motion"] == str(first)
    assert f"motion recorded: {first} (5 frames)" in said
    ctrl.act("record_motion", path=str(second))
    for i in range(3):
        stages.process(face, (7 + i) / 30)
    stages.close()  # the session ends while recording: saved, and not resumed by the next session
    with np.load(second) as z:
        assert z["alpha"].shape[0] == 3
    assert ctrl.state()["motion_recording"] is None and ctrl.state()["last_motion"] == str(second)
