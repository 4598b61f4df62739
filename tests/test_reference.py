"""Landmark features (head pose, mouth/eye openness) and the landmark reference choice of ``lia-animate``.

Inputs are generated from scikit-image's public-domain astronaut: rotated, mirrored, perspective-warped
and squeezed copies move the features in known directions."""

import math

import cv2
import numpy as np
import pytest
import torch

from lia_live.cli.animate import main as animate
from lia_live.errors import UserError
from lia_live.model.checkpoint import save_generator
from lia_live.reference import (
    SCALES,
    LandmarkFeatures,
    LandmarkReader,
    choose_reference,
    feature_distances,
    features_from_points,
    landmark_features,
    nearest_features,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ANGLES = (-30, -15, 0, 15, 30)


@pytest.fixture(scope="module")
def face():
    """The astronaut's head, 256² RGB uint8 (the face fills most of it)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[10:266, 96:352])


@pytest.fixture(scope="module")
def reader():
    r = LandmarkReader()
    yield r
    r.close()


def rotated(img: np.ndarray, degrees: float, size: int | None = None) -> np.ndarray:
    """``img`` turned counter-clockwise by ``degrees`` (edges reflected), resized to ``size``."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if size is not None:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out)


def turned(img: np.ndarray, amount: float) -> np.ndarray:
    """A perspective warp that shortens one vertical edge and lengthens the other: a head turn about the
    vertical axis, as the mesh sees it."""
    h, w = img.shape[:2]
    d = amount * h
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0, d], [w, -d], [w, h + d], [0, h - d]])
    m = cv2.getPerspectiveTransform(src, dst)
    return np.ascontiguousarray(cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))


# ---- the geometry, on exact points ---------------------------------------------------------------------
def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return rz @ ry @ rx


def _mesh(yaw=0.0, pitch=0.0, roll=0.0, scale=1.0, mouth=0.2, eye_r=0.1, eye_l=0.05) -> np.ndarray:
    """A 468-point mesh with only the points the features use placed: eye corners at x = ±1, forehead above,
    chin below, lids and lips opened by the given fractions of the eye-corner distance (2)."""
    p = np.zeros((468, 3))
    p[33], p[263] = (-1, 0, 0), (1, 0, 0)
    p[10], p[152] = (0, -1.0, 0.2), (0, 1.6, 0.2)
    p[13], p[14] = (0, 1.0 - mouth, 0), (0, 1.0 + mouth, 0)
    p[159], p[145] = (-0.6, -eye_r, 0), (-0.6, eye_r, 0)
    p[386], p[374] = (0.6, -eye_l, 0), (0.6, eye_l, 0)
    return (p @ _rot(yaw, pitch, roll).T) * scale + np.array([120.0, 80.0, 3.0])


def test_pose_angles_are_recovered_exactly_from_a_rotated_mesh():
    for yaw, pitch, roll in [(0, 0, 0), (25, 0, 0), (0, -15, 0), (0, 0, 40), (-20, 10, -30)]:
        f = features_from_points(_mesh(yaw, pitch, roll, scale=37.0))
        assert (f.yaw, f.pitch, f.roll) == pytest.approx((yaw, pitch, roll), abs=1e-6)
        # openness: lid / lip gaps over the eye-corner distance 2, whatever the pose and scale
        assert (f.mouth, f.eye_r, f.eye_l) == pytest.approx((0.2, 0.1, 0.05), abs=1e-9)
    big = features_from_points(_mesh(-20, 10, -30, scale=37.0))
    small = features_from_points(_mesh(-20, 10, -30, scale=0.5))
    assert np.allclose(big.vector(), small.vector(), atol=1e-9)  # no dependence on the face's size
    with pytest.raises(ValueError, match="degenerate"):
        features_from_points(np.zeros((468, 3)))


def test_scaled_distances_and_nearest():
    a = LandmarkFeatures(0, 0, 0, 0.1, 0.1, 0.1)
    b = LandmarkFeatures(10, 0, 0, 0.1, 0.1, 0.1)  # one unit away (10°)
    c = LandmarkFeatures(0, 0, 0, 0.1, 0.13, 0.13)  # √2 units away (two eyes, 0.03 each)
    assert np.allclose(a.vector(), [0, 0, 0, 1, 0.1 / 0.03, 0.1 / 0.03]) and len(SCALES) == 6
    d = feature_distances(a, [b, None, c])
    assert d[0] == pytest.approx(1.0) and math.isinf(d[1]) and d[2] == pytest.approx(math.sqrt(2))
    assert nearest_features(a, [b, None, c])[0] == 0
    assert nearest_features(a, [None, None])[0] is None
    assert nearest_features(a, [])[0] is None


# ---- the face mesh on images -------------------------------------------------------------------------
def test_features_move_in_the_expected_direction(face, reader):
    base = reader.features(face)
    assert base is not None
    # rotating the image counter-clockwise by 20° turns the eye line clockwise in image coordinates (y down)
    ccw, cw = reader.features(rotated(face, 20)), reader.features(rotated(face, -20))
    assert ccw.roll - base.roll == pytest.approx(-20, abs=4)
    assert cw.roll - base.roll == pytest.approx(20, abs=4)
    assert abs(ccw.yaw - base.yaw) < 3 and abs(cw.yaw - base.yaw) < 3  # rotation is roll, not yaw
    # mirroring negates roll
    assert reader.features(np.ascontiguousarray(face[:, ::-1])).roll == pytest.approx(-base.roll, abs=2)
    # a perspective "head turn" moves yaw one way, the opposite warp the other, and its mirror flips it
    left, right = reader.features(turned(face, 0.12)), reader.features(turned(face, -0.12))
    assert left.yaw - base.yaw > 2 and right.yaw - base.yaw < -2
    mirrored = reader.features(np.ascontiguousarray(turned(face, 0.12)[:, ::-1]))
    assert mirrored.yaw == pytest.approx(-left.yaw, abs=2)
    # squeezing the image horizontally makes eyes and mouth look more open (relative to the face's width)
    squeezed = reader.features(cv2.resize(face, (170, 256), interpolation=cv2.INTER_AREA))
    assert squeezed.eye_r > 1.15 * base.eye_r and squeezed.eye_l > 1.15 * base.eye_l
    assert squeezed.mouth > base.mouth
    # the features do not depend on the image size much
    small = reader.features(cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA))
    assert np.linalg.norm(small.vector() - base.vector()) < 1.5


def test_no_face_gives_none(reader):
    assert reader.features(np.zeros((96, 96, 3), np.uint8)) is None
    gradient = np.repeat(np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None], 128, axis=0).repeat(3, axis=2)
    assert landmark_features(np.ascontiguousarray(gradient)) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        reader.features(np.zeros((32, 32), np.uint8))


def _choose(reader, portrait, frames):
    """The landmark reference choice among ``frames`` for ``portrait`` (the α play no part in it)."""
    src = reader.features(portrait)
    feats = [reader.features(f) for f in frames]
    return choose_reference("landmarks", torch.zeros(len(frames), 1), None, feats, src)


def test_choose_reference_by_landmarks_picks_the_frame_built_to_match(face, reader):
    frames = [rotated(face, a, 128) for a in ANGLES] + [np.zeros((128, 128, 3), np.uint8)]
    for k in (1, 3, 4):
        portrait = rotated(face, ANGLES[k], 200)  # another size, so not the same pixels as frame k
        c = _choose(reader, portrait, frames)
        d = feature_distances(reader.features(portrait), [reader.features(f) for f in frames])
        assert (c.index, c.window, c.by, c.faces) == (k, 6, "landmarks", 5), d
        assert math.isinf(d[5]) and np.isfinite(d[:5]).all() and c.distance == pytest.approx(d[k])
        assert d[k] < 1.0 < np.partition(d, 1)[1]  # the match is within one unit, the runner-up beyond
    c = _choose(reader, np.zeros((64, 64, 3), np.uint8), frames)  # no face in the portrait: the first frame
    assert (c.index, c.faces) == (0, 0) and math.isnan(c.distance)
    assert c.describe() == "reference pose: the first frame (the face mesh finds no face in the portrait)"
    c = _choose(reader, face, frames[5:] * 2)  # no face in any frame: the first frame
    assert (c.index, c.faces) == (0, 0) and math.isinf(c.distance)
    assert c.describe() == "reference pose: the face mesh found no face in the 2 driving frames; using the first frame"
    with pytest.raises(UserError, match="unknown reference choice 'best'"):
        choose_reference("best", torch.zeros(1, 1))


# ---- lia-animate --reference landmarks -------------------------------------------------------------------
@pytest.fixture()
def rotated_clip(tmp_path, face, tiny_generator):
    """Five 64² frames of the face turned by ANGLES plus one blank frame; the portrait is the face turned by
    ANGLES[3] at 160² (another resolution: not the frame's pixels)."""
    frames = [rotated(face, a, 64) for a in ANGLES] + [np.zeros((64, 64, 3), np.uint8)]
    d = tmp_path / "drive"
    d.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    src = tmp_path / "src.png"
    cv2.imwrite(str(src), cv2.cvtColor(rotated(face, ANGLES[3], 160), cv2.COLOR_RGB2BGR))
    ckpt = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, ckpt)
    return {"dir": d, "src": src, "ckpt": ckpt, "frames": frames}


def _animate(clip, out, *extra, source=None):
    return animate(["--source", str(source or clip["src"]), "--checkpoint", str(clip["ckpt"]), "--backend",
                    "eager", "--device", "cpu", "--output", str(out), "--no-progress", "--driving",
                    str(clip["dir"]), *extra])


def test_animate_reference_landmarks_end_to_end(rotated_clip, tmp_path, capsys):
    rec = tmp_path / "motion.npz"
    assert _animate(rotated_clip, tmp_path / "out", "--reference", "landmarks", "--record-motion", str(rec),
                    "--batch-size", "4") == 0
    err = capsys.readouterr().err
    assert "reference pose: frame 3 of 6 by landmarks" in err and "5 frames with a face" in err
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    # the recorded reference is the α of frame 3 itself
    from lia_live.animator import Animator
    from lia_live.imaging import to_tensor
    from lia_live.model.checkpoint import load_generator

    anim = Animator(load_generator(rotated_clip["ckpt"]))
    with torch.inference_mode():
        alpha3 = anim.motion(to_tensor(rotated_clip["frames"][3], anim.size))  # (1, M)
    with np.load(rec) as z:
        assert z["ref_alpha"].shape == (1, 8)
        assert np.allclose(z["ref_alpha"][0], alpha3[0].numpy(), atol=1e-5)


def test_animate_reference_landmarks_without_faces(rotated_clip, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((64, 64, 3), np.uint8))
    assert _animate(rotated_clip, tmp_path / "none", "--reference", "landmarks", source=blank) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "finds no face in the source portrait" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "none").exists() or not list((tmp_path / "none").glob("*.png"))
    # driving frames without a face: the first frame is the reference, and the run goes on
    only_blank = tmp_path / "blank_drive"
    only_blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(only_blank / f"{i:03d}.png"), np.zeros((64, 64, 3), np.uint8))
    assert animate(["--source", str(rotated_clip["src"]), "--checkpoint", str(rotated_clip["ckpt"]), "--backend",
                    "eager", "--device", "cpu", "--output", str(tmp_path / "b"), "--no-progress", "--driving",
                    str(only_blank), "--reference", "landmarks"]) == 0
    assert "found no face in the 3 driving frames; using the first frame" in capsys.readouterr().err
    assert len(list((tmp_path / "b").glob("*.png"))) == 3
