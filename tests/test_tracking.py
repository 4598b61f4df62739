"""Face tracking: VoxCeleb-style framing, One-Euro smoothing, following a known path, losing the face."""

import numpy as np
import pytest
from livedata import make_scene

from lia_live.errors import UserError
from lia_live.tracking import (
    CropBox,
    Detection,
    FaceTracker,
    OneEuroFilter,
    crop_portrait,
    crop_portrait_with_box,
    crop_square,
    find_portrait_box,
    vox_box,
)


def test_vox_box_rule():
    box = vox_box(Detection(x=100, y=200, w=50, h=50, score=0.9))
    assert box.side == pytest.approx(1.9 * 50)
    assert box.cx == pytest.approx(125)
    assert box.cy == pytest.approx(225 - 0.22 * 50)


def test_vox_crop_is_a_fixed_point(astronaut):
    """Re-cropping a VoxCeleb-style crop must give (almost) the same square, as on real vox frames."""
    crop, box = crop_portrait_with_box(astronaut, 256, "astronaut")
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    # the head is inside, with room around it: the crop is much bigger than the detector box
    assert 150 < box.side < 230, box
    again = find_portrait_box(crop, "crop")
    # measured: centre (129.2, 127.5), side 259.5; the old whole-frame short-range box, whose size varied with
    # the face size, gave (127, 116) and 273
    assert abs(again.cx - 128) < 4 and abs(again.cy - 128) < 4, again
    assert again.side == pytest.approx(256, rel=0.04)


def test_crop_square_matches_box_matrix(astronaut):
    box = CropBox(225.0, 110.0, 180.0)
    crop = crop_square(astronaut, box, 180)  # scale 1: a plain cut
    x0, y0 = int(box.cx - 90), int(box.cy - 90)
    diff = np.abs(crop.astype(int) - astronaut[y0:y0 + 180, x0:x0 + 180].astype(int))
    assert diff.mean() < 2.0
    small = crop_square(astronaut, box, 64)  # area-filtered path
    big = crop_square(astronaut, box, 128)  # warp path
    import cv2

    assert np.abs(cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA).astype(int) - small).mean() < 4


def test_no_face_names_file_and_suggests_none():
    flat = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(UserError, match=r"no face found in me\.png.*source_crop to none"):
        crop_portrait(flat, 64, name="me.png")


def test_offline_hooks_use_tracking(astronaut):
    from lia_live.offline import _crop_stream, crop_source

    out = crop_source(astronaut, "auto", 64, "astro.png")
    assert out.shape == (64, 64, 3)
    frames = list(_crop_stream(iter([astronaut, astronaut]), "auto", 64))
    assert len(frames) == 2 and all(f.shape == (64, 64, 3) for f in frames)
    assert np.abs(frames[0].astype(int) - out).mean() < 3


def test_one_euro_smooths_jitter_and_follows_steps():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    noisy = 100 + rng.normal(0, 3, 300)
    out = np.array([f([v], i / 30)[0] for i, v in enumerate(noisy)])
    assert out[50:].std() < 0.5 * noisy[50:].std()
    f.reset()
    step = [f([0.0 if i < 30 else 100.0], i / 30)[0] for i in range(90)]
    assert step[29] == pytest.approx(0.0)
    assert 0 < step[31] < 100 and abs(step[-1] - 100) < 1


def _track(scene, detect_every):
    tr = FaceTracker(detect_every=detect_every)
    errors, found_in_gap, detections, refound = [], [], 0, None
    gap_end = scene.gaps[0][1]
    for i, frame in enumerate(scene.frames()):
        r = tr.update(frame, i / scene.fps)
        detections += r.detected
        truth = scene.truth(i)
        if truth is None:
            found_in_gap.append(r.found)
            continue
        if i >= gap_end and refound is None and r.found and r.detected:
            refound = i - gap_end
        if r.found:
            errors.append(np.hypot(r.box.cx - truth[0], r.box.cy - truth[1]))
            assert r.box.side == pytest.approx(scene.crop_side, rel=0.12)
    tr.close()
    return np.array(errors), found_in_gap, detections, refound


def test_crop_centre_follows_known_path(astronaut):
    scene = make_scene(astronaut, n=150, gaps=((60, 80),))
    errors, found_in_gap, detections, refound = _track(scene, detect_every=1)
    print(f"crop-centre error over {len(errors)} frames: mean {errors.mean():.2f} px, "
          f"p95 {np.percentile(errors, 95):.2f} px, max {errors.max():.2f} px (face box ≈ "
          f"{scene.crop_side / 1.9:.0f} px)")
    assert len(errors) == 130  # the face is tracked in every frame where it is visible
    assert errors.mean() < 8 and np.percentile(errors, 95) < 15
    assert not any(found_in_gap)  # a miss is reported at once
    assert refound == 0  # re-detected on the first frame it is back


def test_detect_every_n_runs_fewer_detections(astronaut):
    scene = make_scene(astronaut, n=90, gaps=((45, 55),))
    errors, _, detections, refound = _track(scene, detect_every=3)
    assert detections < 0.6 * scene.n
    assert errors.mean() < 12
    assert refound == 0


def test_detect_every_validated():
    with pytest.raises(UserError, match="detect_every must be >= 1"):
        FaceTracker(detect_every=0)


# The astronaut's face box (centre x, y; side) at native size, measured with the short-range model on windows of
# 1.9-2.5 box sides around the face (the regime of the VoxCeleb calibration; scripts/track_bench.py).
ASTRO_FACE = (224.4, 124.3, 102.4)


def _place(portrait, width, height, face, cx, cy, roll=0.0):
    """``portrait`` warped into a plain width×height frame: face ``face`` px wide centred at (cx, cy), turned by
    ``roll`` degrees (counter-clockwise)."""
    import cv2

    rx, ry, rs = ASTRO_FACE
    m = cv2.getRotationMatrix2D((rx, ry), roll, face / rs)
    m[:, 2] += (cx - rx, cy - ry)
    return cv2.warpAffine(portrait, m, (width, height), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 120, 130))


@pytest.fixture(scope="module")
def detector():
    from lia_live.tracking import FaceDetector

    with FaceDetector() as det:
        yield det


@pytest.mark.parametrize("face", [64, 80])
def test_small_face_in_720p_is_found_at_its_size(astronaut, detector, face):
    """mediapipe's short-range model on the whole frame (the old tracker) found no face below ~176 px at 720p."""
    frame = _place(astronaut, 1280, 720, face, 900, 300)
    found = detector.detect(frame)
    assert found is not None
    assert found.side == pytest.approx(face, rel=0.1)
    assert np.hypot(found.center[0] - 900, found.center[1] - 300) < 0.1 * face


def test_rolled_face_keeps_its_box(astronaut, detector):
    frame = _place(astronaut, 640, 480, 120, 320, 240, roll=30)
    first = detector.detect(frame)
    again = detector.detect(frame, near=first)
    for d in (first, again):
        assert d.side == pytest.approx(120, rel=0.1)
        assert np.hypot(d.center[0] - 320, d.center[1] - 240) < 0.1 * 120
    # the portrait itself is rolled by ≈ +2.5°; turning it 30° counter-clockwise gives ≈ -27.5°
    assert again.angle == pytest.approx(-27.5, abs=4)


def test_search_windows_cover_wide_frames():
    from lia_live.tracking import search_windows

    assert search_windows(640, 480) == [(0, 0, 640, 480)]
    wins = search_windows(1280, 720)
    assert wins[0] == (0, 0, 1280, 720) and (0, 0, 720, 720) in wins and (560, 0, 720, 720) in wins
    big = search_windows(1920, 1080)
    small = [w for w in big if w[2] == 720]
    assert len(small) == 6  # 3 × 2 squares of 720 px cover the frame
    covered = np.zeros((1080, 1920), bool)
    for x, y, w, h in small:
        covered[y:y + h, x:x + w] = True
    assert covered.all()


def _steps(boxes):
    """Frame-to-frame change of consecutive crop boxes, as fractions of the side."""
    return np.array([max(abs(a.cx - b.cx), abs(a.cy - b.cy), abs(a.side - b.side)) / a.side
                     for a, b in zip(boxes, boxes[1:])])


def test_still_face_crop_is_steady(astronaut):
    """Sensor noise on a still face must not shake the crop. Measured here after the first 10 frames: the
    smoothed crop moves 0.044% of its side per frame on average (max 0.14%), the unsmoothed crop of each
    detection 0.35%; the old whole-frame short-range detector gave 0.095% and 0.91%."""
    base = _place(astronaut, 640, 480, 96, 320, 240).astype(np.int16)
    noise = np.random.default_rng(0).normal(0, 3.0, (4, *base.shape)).round().astype(np.int16)  # sensor noise
    tr = FaceTracker()
    boxes, raw = [], []
    for i in range(30):
        r = tr.update(np.clip(base + noise[i % 4], 0, 255).astype(np.uint8), i / 30)
        assert r.found and r.detected
        boxes.append(r.box)
        raw.append(vox_box(tr.last_detection))
    tr.close()
    smooth, unsmoothed = _steps(boxes)[10:], _steps(raw)[10:]
    print(f"still-face crop step: smoothed mean {100 * smooth.mean():.3f}% max {100 * smooth.max():.3f}%, "
          f"unsmoothed mean {100 * unsmoothed.mean():.3f}%")
    assert smooth.mean() < 0.0008 and smooth.max() < 0.003
    assert unsmoothed.mean() < 0.0055
    assert boxes[-1].side == pytest.approx(1.9 * 96, rel=0.1)


def test_mediapipe_models_print_nothing(astronaut, capfd):
    """mediapipe's native INFO/W0000 lines (graph start, first landmarks) must not reach the terminal."""
    from lia_live.evaluation.metrics import Landmarks
    from lia_live.tracking import FaceDetector

    lm = Landmarks("face")
    assert lm(astronaut[:, 40:]).shape == (468, 2)  # a non-square image: mediapipe warns about its ROI
    lm.close()
    with FaceDetector() as det:
        assert det.detect(astronaut) is not None
    err = capfd.readouterr().err
    assert "W0000" not in err and "INFO" not in err and err == "", err
