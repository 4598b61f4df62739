"""Capture: newest-frame-only cameras, reopening a lost camera, files and folders, clear open errors."""

import threading
import time

import numpy as np
import pytest
from media import write_video

from lia_live.capture import CameraCapture, CameraSettings, FileCapture, IterableCapture, open_capture
from lia_live.errors import UserError

FAST = CameraSettings(first_frame_timeout=2.0, max_backoff=0.05)


class FakeCam:
    """A cv2.VideoCapture stand-in: frame k holds k as (k % 256, k // 256, 0) in every pixel (BGR);
    after ``fail_after`` reads it is dead."""

    def __init__(self, start=0, fail_after=None, period=0.002, opened=True):
        self.k, self.fail_after, self.period, self.opened = start, fail_after, period, opened
        self.reads = 0
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        time.sleep(self.period)
        if not self.opened:
            return False, None
        if self.fail_after is not None and self.reads >= self.fail_after:
            return False, None
        self.reads += 1
        self.k += 1
        frame = np.zeros((4, 6, 3), np.uint8)
        frame[..., 0], frame[..., 1] = self.k % 256, self.k // 256
        return True, frame

    def release(self):
        self.released = True


class GatedCam(FakeCam):
    """A FakeCam that delivers a frame only when the test releases one (no timing decides anything)."""

    def __init__(self):
        super().__init__(period=0.0)
        self.gate = threading.Semaphore(0)
        self.closing = threading.Event()  # set by the test before closing the capture

    def read(self):
        while not self.gate.acquire(timeout=0.05):
            if self.closing.is_set():
                return False, None
        return super().read()


def _wait(cond, timeout=10.0):
    """Wait (bounded) for the capture thread to catch up; the assertions after it decide the test."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.001)


def _value(frame):
    return int(frame.image[0, 0, 2]) + 256 * int(frame.image[0, 0, 1])  # RGB now


def test_keeps_only_the_newest_frame():
    cams = []

    def opener(spec, settings):
        cams.append(GatedCam())
        cams[-1].gate.release()  # the first frame, which opening waits for
        return cams[-1]

    cap = CameraCapture(0, FAST, opener=opener, log=lambda m: None)
    try:
        cam = cams[-1]
        assert _value(cap.read(timeout=5.0)) == 1
        got = []
        for burst in (20, 7, 1):
            target = cam.reads + burst
            for _ in range(burst):
                cam.gate.release()
            _wait(lambda target=target: cam.reads == target and cap._latest is not None and
                  _value(cap._latest) == cam.k)
            f = cap.read(timeout=5.0)
            got.append(f)
            assert f.image.shape == (4, 6, 3) and _value(f) == cam.k  # the newest, not the oldest queued one
        indices = [f.index for f in got]
        assert indices == sorted(indices) and len(set(indices)) == 3
        assert cap.dropped == 19 + 6  # stale frames were dropped, not queued
        assert cap.read(timeout=0.01) is None  # nothing new: no repeat of the old frame
        assert cap.live
    finally:
        cams[-1].closing.set()
        cap.close()
    assert cams[-1].released and not cap._thread.is_alive()


def test_lost_camera_is_reopened_with_one_message():
    messages, opened = [], []

    def opener(spec, settings):
        # the first device dies after 5 frames, the next open fails twice, then a good one comes back
        n = len(opened)
        cam = FakeCam(fail_after=5) if n == 0 else FakeCam(opened=False) if n < 3 else FakeCam(start=100)
        opened.append(cam)
        return cam

    cap = CameraCapture(0, FAST, opener=opener, log=messages.append)
    try:
        seen = []
        deadline = time.time() + 5
        while time.time() < deadline and not (seen and seen[-1] > 100):
            f = cap.read(timeout=0.2)
            if f is not None:
                seen.append(int(f.image[0, 0, 2]) + 256 * int(f.image[0, 0, 1]))
        assert seen[-1] > 100, "frames must resume from the reopened camera"
        assert cap.reopens == 3 and len(opened) == 4  # two failed opens, then the good one stays
        assert messages == ["camera 0 lost; sending the last frame and reopening it", "camera 0 is back"]
        assert not cap.lost
    finally:
        cap.close()


def test_camera_that_cannot_open_names_the_index():
    with pytest.raises(UserError, match=r"cannot open camera 7"):
        CameraCapture(7, FAST, opener=lambda s, st: FakeCam(opened=False))


def test_digit_spec_opens_that_camera_index(monkeypatch):
    """``--driving 9`` opens camera index 9 through the default opener (replaced here: no real device)."""
    from lia_live.capture import camera

    asked = []
    monkeypatch.setattr(camera, "default_opener", lambda spec, st: asked.append(spec) or FakeCam(opened=False))
    with pytest.raises(UserError, match=r"camera 9"):
        open_capture("9", CameraSettings(first_frame_timeout=1.0))
    assert asked == [9]


def test_camera_without_frames_times_out():
    with pytest.raises(UserError, match="sent no frame"):
        CameraCapture(0, CameraSettings(first_frame_timeout=0.2), opener=lambda s, st: FakeCam(fail_after=0),
                      log=lambda m: None)


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nope\.mp4"):
        open_capture(str(tmp_path / "nope.mp4"))


def test_file_capture_delivers_every_frame_in_order(tmp_path):
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    path = tmp_path / "in.mp4"
    write_video(path, frames, fps=25)
    cap = open_capture(str(path))
    assert isinstance(cap, FileCapture) and not cap.live and cap.fps == pytest.approx(25)
    got = []
    while (f := cap.read()) is not None:
        got.append(f)
    cap.close()
    assert [f.index for f in got] == list(range(12)) and cap.finished
    assert got[3].media_time == pytest.approx(3 / 25)  # media time, whatever the processing speed
    means = [f.image.mean() for f in got]
    assert np.allclose(means, [10 * i for i in range(12)], atol=3)


def test_frame_folder_and_iterable(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 8, 3), 50 * i, np.uint8))
    cap = open_capture(str(tmp_path))
    vals = []
    while (f := cap.read()) is not None:
        vals.append(int(f.image[0, 0, 0]))
    assert vals == [0, 50, 100]
    it = IterableCapture(iter([np.zeros((2, 2, 3), np.uint8)] * 4))
    assert sum(1 for _ in iter(lambda: it.read(), None)) == 4 and it.finished


def test_close_twice_and_from_other_thread():
    cap = CameraCapture(0, FAST, opener=lambda s, st: FakeCam(), log=lambda m: None)
    t = threading.Thread(target=cap.close)
    t.start()
    t.join()
    cap.close()
    assert not cap._thread.is_alive()
