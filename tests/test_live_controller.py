"""LiveController (lia_live/live/controller.py, the contract in CONTRACT.md): every action, its line, bad
parameters as one-line UserErrors, messages numbering, stats and preview hand-over, thread safety."""

import json
import threading

import numpy as np
import pytest
import torch

from lia_live.errors import UserError
from lia_live.live import ACTIONS, KEYMAP, LiveController, PreviewFrame
from lia_live.motion import MotionController
from lia_live.stats import StageTimer

M = 6


@pytest.fixture()
def said():
    return []


@pytest.fixture()
def ctl(said):
    c = LiveController(say=said.append)
    c.start(MotionController(M), ["a.png", "b.png", "c.png"], compose="crop",
            info={"backend": "eager", "device": "cpu", "precision": "fp32", "model": "tiny"}, timer=StageTimer())
    return c


def test_state_is_json_and_names_the_contract_fields(ctl):
    st = ctl.state()
    assert json.loads(json.dumps(st)) == st
    assert st == {"mode": "relative", "power": 1.0, "ease": 1.0, "reference": "first", "reference_taken": False,
                  "reference_pending": True, "reference_choice": None, "selected_direction": 0,
                  "offsets": [0.0] * M, "source_index": 0, "sources": ["a.png", "b.png", "c.png"],
                  "pending_sources": 0, "passthrough": False, "compose": "crop", "running": True,
                  "info": {"backend": "eager", "device": "cpu", "precision": "fp32", "model": "tiny"},
                  "motion_recording": None, "last_motion": None}


@pytest.mark.parametrize("action, params, line, changed", [
    ("toggle_mode", {}, "mode: absolute", {"mode": "absolute"}),
    ("set_mode", {"mode": "absolute"}, "mode: absolute", {"mode": "absolute"}),
    ("power_up", {}, "motion power 1.1", {"power": 1.1}),
    ("power_down", {}, "motion power 0.9", {"power": 0.9}),
    ("set_power", {"value": 1.75}, "motion power 1.75", {"power": 1.75}),
    ("set_power", {"value": "0.5"}, "motion power 0.5", {"power": 0.5}),
    ("set_ease", {"seconds": 0.25}, "ease 0.25 s", {"ease": 0.25}),
    ("set_reference", {"choice": "landmarks"}, "reference: landmarks (taken again from the next frame(s) with a face)",
     {"reference": "landmarks"}),
    ("toggle_passthrough", {}, "pass-through on (showing the camera)", {"passthrough": True}),
    ("set_passthrough", {"on": True}, "pass-through on (showing the camera)", {"passthrough": True}),
    ("set_passthrough", {"on": False}, "pass-through off", {}),
    ("next_source", {}, "source 2/3: b.png", {"source_index": 1}),
    ("select_source", {"index": 2}, "source 3/3: c.png", {"source_index": 2}),
    ("next_direction", {}, "motion direction 1 selected (offset +0.00)", {"selected_direction": 1}),
    ("offset_up", {}, "direction 0 offset +0.10", {"offsets": [0.1] + [0.0] * (M - 1)}),
    ("offset_down", {}, "direction 0 offset -0.10", {"offsets": [-0.1] + [0.0] * (M - 1)}),
    ("set_offset", {"index": 4, "value": -2.5}, "direction 4 offset -2.50",
     {"offsets": [0.0] * 4 + [-2.5, 0.0], "selected_direction": 4}),
    ("reset_offsets", {}, "direction offsets reset", {}),
    ("reset_reference", {}, "reference pose: taken again from the next frame(s) with a face", {}),
    ("set_compose", {"mode": "paste"}, "compose: paste", {"compose": "paste"}),
    ("quit", {}, "stopping", {"running": False}),
])
def test_each_action_changes_exactly_its_part_and_says_one_line(ctl, said, action, params, line, changed):
    before = ctl.state()
    assert ctl.act(action, **params) == line
    assert said == [line] and ctl.messages() == (1, [line])
    assert ctl.state() == {**before, **changed}


def test_every_action_is_covered_and_every_key_maps_to_one(ctl):
    assert set(KEYMAP.values()) <= set(ACTIONS)
    for key, action in KEYMAP.items():
        c = LiveController(say=lambda m: None)
        c.start(MotionController(M), ["a.png", "b.png"])
        assert c.handle_key(key) == action
        assert c.messages()[0] == 1  # the action ran and said its line
    assert ctl.handle_key(-1) is None and ctl.handle_key(None) is None and ctl.handle_key(ord("x")) is None
    assert ctl.handle_key(0x100000 | ord("m")) is None  # an unmapped extended key
    assert ctl.handle_key(0x0100 | ord("m")) == "toggle_mode"  # OpenCV's modifier bits are ignored


@pytest.mark.parametrize("action, params, message", [
    ("fly", {}, "unknown action 'fly'; known: reset_reference, toggle_mode"),
    ("set_power", {}, "set_power takes value; got none"),
    ("set_power", {"value": 1, "extra": 2}, "set_power takes value; got extra, value"),
    ("toggle_mode", {"mode": "absolute"}, "toggle_mode takes no parameters; got mode"),
    ("set_power", {"value": "abc"}, "set_power: value must be a number in [0, 2], got 'abc'"),
    ("set_power", {"value": 2.5}, "set_power: value must be a number in [0, 2], got 2.5"),
    ("set_power", {"value": float("nan")}, "set_power: value must be a number in [0, 2], got nan"),
    ("set_power", {"value": True}, "set_power: value must be a number in [0, 2], got True"),
    ("set_ease", {"seconds": -1}, "set_ease: seconds must be a number in [0, 60], got -1"),
    ("set_mode", {"mode": "sideways"}, "set_mode: mode must be one of relative, absolute, got 'sideways'"),
    ("set_reference", {"choice": "best"}, "set_reference: choice must be one of first, auto, landmarks, got 'best'"),
    ("set_offset", {"index": 6, "value": 0.1}, "set_offset: index must be a whole number in [0, 5], got 6"),
    ("set_offset", {"index": 1.0, "value": 0.1}, "set_offset: index must be a whole number in [0, 5], got 1.0"),
    ("set_offset", {"index": 1, "value": float("inf")}, "set_offset: value must be a number in [-10, 10], got inf"),
    ("select_source", {"index": 3}, "select_source: index must be a whole number in [0, 2], got 3"),
    ("select_source", {"index": -1}, "select_source: index must be a whole number in [0, 2], got -1"),
    ("select_source", {"index": True}, "select_source: index must be a whole number in [0, 2], got True"),
    ("set_compose", {"mode": ["paste"]}, "set_compose: mode must be one of crop, paste, got ['paste']"),
    ("set_passthrough", {"on": "yes"}, "set_passthrough: on must be true or false, got 'yes'"),
    ("add_source", {"image": "face.png", "name": "x"},
     "add_source: image must be an RGB uint8 (H, W, 3) array of at least 16×16, got str"),
    ("add_source", {"image": np.zeros((32, 32, 3), np.float32), "name": "x"},
     "add_source: image must be an RGB uint8 (H, W, 3) array of at least 16×16, got float32 (32, 32, 3)"),
    ("add_source", {"image": np.zeros((8, 32, 3), np.uint8), "name": "x"},
     "add_source: image must be an RGB uint8 (H, W, 3) array of at least 16×16, got uint8 (8, 32, 3)"),
    ("add_source", {"image": np.zeros((32, 32, 3), np.uint8), "name": " "},
     "add_source: name must be a one-line text, got ' '"),
])
def test_bad_actions_raise_one_line_and_change_nothing(ctl, said, action, params, message):
    before = ctl.state()
    with pytest.raises(UserError) as e:
        ctl.act(action, **params)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert ctl.state() == before and said == [] and ctl.messages() == (0, [])


def test_no_session_refuses_actions_but_reads_work(said):
    c = LiveController(say=said.append)
    with pytest.raises(UserError, match="^power_up: no live session is running$"):
        c.act("power_up")
    assert c.state()["running"] is False and c.preview() is None
    assert c.stats() == {"frames": 0, "fps": 0.0, "latency_ms": 0.0, "stage_ms": {}, "dropped": 0, "no_face": 0}
    assert c.handle_key(ord("m")) == "toggle_mode" and said == []  # a key after the end does nothing
    c.start(MotionController(M), ["a.png"])
    c.end()
    with pytest.raises(UserError, match="no live session is running"):
        c.act("toggle_mode")
    assert c.state()["mode"] == "relative"  # the last session's state stays readable


def test_power_keys_clamp_and_single_source_next_source(said):
    c = LiveController(say=said.append)
    c.start(MotionController(M), ["only.png"])
    for _ in range(12):
        c.act("power_up")
    assert c.state()["power"] == 2.0 and said[-1] == "motion power 2.0"
    assert c.act("next_source") == "source 1/1: only.png" and c.state()["source_index"] == 0


def test_add_source_is_queued_for_the_model_stage(ctl, said):
    img = np.full((40, 30, 3), 7, np.uint8)
    assert ctl.act("add_source", image=img, name=" me ") == "source me: queued, encoded at the next frame"
    assert ctl.state()["pending_sources"] == 1 and ctl.state()["sources"] == ["a.png", "b.png", "c.png"]
    (new,) = ctl.take_new_sources()
    assert new.image is img and new.name == "me" and ctl.take_new_sources() == []
    assert ctl.source_added("me") == 3
    st = ctl.state()
    assert st["sources"][-1] == "me" and st["source_index"] == 3 and st["pending_sources"] == 0
    assert said[-1] == "source 4/4: me (added)"


def test_messages_are_numbered_and_bounded(ctl, said):
    assert ctl.messages() == (0, [])
    ctl.act("toggle_mode")
    ctl.say("warning: something")
    ctl.note("error: kept, not printed")
    ctl.say(None)  # says nothing
    assert ctl.messages() == (3, ["mode: absolute", "warning: something", "error: kept, not printed"])
    assert ctl.messages(2) == (3, ["error: kept, not printed"]) and ctl.messages(3) == (3, [])
    assert said == ["mode: absolute", "warning: something"]
    with pytest.raises(UserError, match="since must be a whole number"):
        ctl.messages("1")
    small = LiveController(say=lambda m: None)
    small._lines = type(small._lines)(maxlen=4)
    for i in range(10):
        small.say(f"line {i}")
    assert small.messages() == (10, ["line 6", "line 7", "line 8", "line 9"])  # the oldest kept
    assert small.messages(8) == (10, ["line 8", "line 9"])


def test_stats_and_preview_hand_over(ctl):
    timer = StageTimer()
    ctl.start(MotionController(M), ["a.png"], timer=timer)
    timer.add("track", 0.5)
    timer.add("track", 0.002)
    timer.no_face, timer.dropped = 3, 2
    timer.frame_done(1.0, 1.01)
    st = ctl.stats()
    assert st == {"frames": 1, "fps": 0.0, "latency_ms": 10.0, "stage_ms": {"track": 251.0}, "dropped": 2,
                  "no_face": 3}
    camera, out = np.zeros((4, 4, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    face = torch.zeros(1, 3, 8, 8)
    frame = PreviewFrame(camera, None, True, face, out, 0, 1.0)
    ctl.publish(frame)
    got = ctl.preview()
    assert got is frame and got.camera is camera and got.output is out  # by reference, no copy
    assert got.face_rgb().shape == (8, 8, 3) and int(got.face_rgb()[0, 0, 0]) == 128


def test_concurrent_actions_are_all_applied(ctl):
    """Four threads press keys while two read the state: every press counts, nothing raises."""
    n, errors = 200, []
    stop = threading.Event()

    def press(action):
        for _ in range(n):
            ctl.act(action)

    def read():
        while not stop.is_set():
            try:
                st = ctl.state()
                assert len(st["offsets"]) == M
                ctl.messages(0)
            except Exception as e:  # noqa: BLE001 - collected, asserted below
                errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=press, args=(a,)) for a in ("offset_up", "offset_up", "offset_down",
                                                                     "toggle_mode")]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    st = ctl.state()
    assert errors == []
    assert st["offsets"][0] == pytest.approx(n * 0.1)  # +0.1 × 400, −0.1 × 200
    assert st["mode"] == "relative"  # toggled an even number of times
    assert ctl.messages()[0] == 4 * n


def test_preview_window_picture_is_a_view_of_the_controller(ctl):
    from lia_live.live.preview import overlay_lines, preview_picture
    from lia_live.output.overlay import draw_lines, side_by_side

    assert overlay_lines(ctl) == ["0.0 fps | latency 0 ms | ms: ", "mode relative | power 1.0 | source 1/3"]
    ctl.act("set_passthrough", on=True)
    ctl.act("set_offset", index=2, value=0.5)
    ctl.act("toggle_mode")
    camera = np.full((120, 160, 3), 90, np.uint8)
    out = np.full((64, 96, 3), 200, np.uint8)
    ctl.publish(PreviewFrame(camera, None, False, None, out, 0, 0.0))
    lines = ["0.0 fps | latency 0 ms | ms: ", "mode absolute | power 1.0 | source 1/3 | PASS-THROUGH",
             "direction 2: offset +0.50", "NO FACE: holding the last motion"]
    assert overlay_lines(ctl) == lines
    expected = draw_lines(side_by_side(camera, out, box=None, face_found=False), lines)
    np.testing.assert_array_equal(preview_picture(ctl), expected)
