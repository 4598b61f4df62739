"""Outputs: compositor (crop / paste back), virtual camera errors and hints, file output, preview layout."""

import numpy as np
import pytest
from livedata import register_fake_vcam
from media import count_video_frames

from lia_live.errors import UserError
from lia_live.output import Compositor, FileOutput, VirtualCamera, letterbox, vcam_hint
from lia_live.output.compose import feather_mask, fit_rect
from lia_live.output.overlay import draw_lines, side_by_side
from lia_live.tracking import CropBox, crop_square


def test_letterbox_keeps_aspect():
    img = np.full((100, 100, 3), 200, np.uint8)
    out = letterbox(img, 320, 180)
    assert out.shape == (180, 320, 3)
    f = fit_rect(100, 100, 320, 180)
    assert (f.w, f.h, f.x0, f.y0) == (180, 180, 70, 0)
    assert out[:, :70].max() == 0 and out[:, 250:].max() == 0 and out[:, 70:250].min() == 200


def test_crop_mode_resizes_face_to_output():
    comp = Compositor(1280, 720, "crop")
    face = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = comp.compose(face)
    assert out.shape == (720, 1280, 3) and out[:, 280:1000].mean() > 50


def test_feather_mask_shape():
    m = feather_mask(64, 0.25)
    assert m.shape == (64, 64) and m[32, 32] == 1.0 and m[0, 0] < 0.01 and m[0, 32] < 0.1


def test_paste_back_of_the_source_crop_reproduces_the_portrait(astronaut):
    """Pasting the unchanged source crop back must give the portrait itself: the affine is exact."""
    box = CropBox(225.0, 110.0, 180.0)
    crop = crop_square(astronaut, box, 128)
    comp = Compositor(640, 360, "paste")
    comp.set_source(astronaut, box, 128)
    out = comp.compose(crop)
    ref = letterbox(astronaut, 640, 360)
    assert out.shape == ref.shape
    x0, y0, x1, y1 = comp._paste.roi
    diff = np.abs(out.astype(int) - ref).mean(axis=2)
    assert diff[y0:y1, x0:x1].mean() < 4.0  # resampling only
    outside = np.ones(diff.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert diff[outside].max() == 0  # nothing outside the crop region changes
    # a different face changes the inside of the region, fading out at its border
    black = comp.compose(np.zeros_like(crop))
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    assert black[cy, cx].max() == 0 and np.abs(black[y0 + 1, cx].astype(int) - ref[y0 + 1, cx]).max() < 40


def test_paste_needs_source():
    with pytest.raises(RuntimeError, match="set_source"):
        Compositor(64, 64, "paste").compose(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="compose"):
        Compositor(64, 64, "blend")


def test_missing_virtual_camera_is_a_user_error_with_hint():
    with pytest.raises(UserError, match="no virtual camera device") as e:
        VirtualCamera(64, 48, 30, device="/dev/video-does-not-exist", backend="v4l2loopback")
    assert vcam_hint() in str(e.value)  # this OS's set-up advice travels with the error
    with pytest.raises(UserError, match="unknown vcam_backend"):
        VirtualCamera(64, 48, 30, backend="no-such-backend")


def test_fake_virtual_camera_receives_frames():
    fake = register_fake_vcam()
    cam = VirtualCamera(64, 48, 30, backend="fake")
    for i in range(3):
        cam.send(np.full((48, 64, 3), i, np.uint8))
    cam.close()
    (inst,) = fake.instances
    assert inst.count == 3 and inst.closed and cam.frames == 3
    assert inst.frames[-1].size == 64 * 48 * 3 and inst.frames[-1].reshape(-1)[0] == 2


def test_file_output_is_finalised(tmp_path):
    out = FileOutput(tmp_path / "o.mp4", 25)
    for i in range(7):
        out.send(np.full((48, 64, 3), 30 * i, np.uint8))
    out.close()
    assert count_video_frames(tmp_path / "o.mp4") == 7
    with pytest.raises(UserError, match="already exists"):
        FileOutput(tmp_path / "o.mp4", 25)
    empty = FileOutput(tmp_path / "e.mp4", 25)
    empty.close()
    assert not (tmp_path / "e.mp4").exists()


def test_preview_picture_layout():
    cam = np.zeros((480, 640, 3), np.uint8)
    out = np.full((720, 1280, 3), 255, np.uint8)
    pic = side_by_side(cam, out, height=360, box=CropBox(320, 240, 200), face_found=True)
    assert pic.shape == (360, 480 + 640, 3)
    assert pic[:, :480, 1].max() >= 200  # the green tracking box is drawn on the input side
    before = pic.copy()
    draw_lines(pic, ["12.0 fps"])
    assert (pic != before).any()


def test_preview_refuses_without_display(monkeypatch):
    import sys

    from lia_live.output import PreviewWindow

    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is Linux-specific")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="needs a display"):
        PreviewWindow()
