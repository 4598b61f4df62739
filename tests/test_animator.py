"""Animator: source encoded once, relative/absolute motion, parity with Generator.forward."""

import numpy as np
import pytest
import torch
from reference import max_abs, rel_l2

from lia_live.animator import Animator
from lia_live.imaging import from_tensor, to_tensor


def test_step_before_source_is_a_clear_error(tiny_generator):
    anim = Animator(tiny_generator)
    with pytest.raises(RuntimeError, match="set_source"):
        anim.step(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_tensor_path_matches_fixture_and_forward(ref_generator, ref, mode):
    anim = Animator(ref_generator)
    anim.set_source_tensor(torch.from_numpy(ref["source"]))
    drv = torch.from_numpy(ref["driving"])
    anim.set_reference(drv[:1] if mode == "relative" else None)
    with torch.no_grad():
        out = anim.step_tensor(drv)  # batch of 3 frames against one cached source
    want = ref[f"recon_{mode}"]
    assert rel_l2(out, want) <= 1e-4 and max_abs(out, want) <= 2e-3


def test_source_is_encoded_once(tiny_generator, monkeypatch):
    anim = Animator(tiny_generator)
    calls = {"n": 0}
    orig = anim.backend.encode_source

    def counting(img):
        calls["n"] += 1
        return orig(img)

    monkeypatch.setattr(anim.backend, "encode_source", counting)
    rng = np.random.default_rng(0)
    anim.set_source(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for _ in range(5):
        anim.step(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert calls["n"] == 1


def test_uint8_step_equals_generator(tiny_generator, astronaut):
    src = astronaut[:256, 128:384]
    drv = astronaut[100:356, 150:406]
    anim = Animator(tiny_generator)
    anim.set_source(src)
    anim.set_reference(None)
    out = anim.step(drv)
    with torch.no_grad():
        want = from_tensor(tiny_generator(to_tensor(src, 64), to_tensor(drv, 64)))[0]
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_relative_with_reference_equal_to_frame_reproduces_source_motion(tiny_generator, astronaut):
    """Driving with the reference frame itself adds no motion: z = w_src + α_src·Qᵀ."""
    anim = Animator(tiny_generator)
    anim.set_source(astronaut)
    frame = astronaut[::-1].copy()
    anim.set_reference(frame)
    out = anim.step_tensor(to_tensor(frame, 64))
    src = anim.source
    with torch.no_grad():
        want = tiny_generator.dec.synthesize(src.latent + src.alpha @ anim.basis.t(), src.feats)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_motion_power_scales_the_delta(tiny_generator, astronaut):
    anim = Animator(tiny_generator)
    anim.set_source(astronaut)
    anim.set_reference(astronaut)
    alpha = anim.motion(to_tensor(astronaut[::-1].copy(), 64))
    anim.motion_power = 0.0
    z0 = anim.latent(alpha)
    anim.motion_power = 2.0
    z2 = anim.latent(alpha)
    anim.motion_power = 1.0
    z1 = anim.latent(alpha)
    torch.testing.assert_close(z1, (z0 + z2) / 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z0, anim.source.latent + anim.source.alpha @ anim.basis.t(), atol=1e-6, rtol=0)
    assert (z2 - z0).abs().max() > 1e-3


def test_wrong_image_types_are_user_errors(tiny_generator):
    from lia_live.errors import UserError

    anim = Animator(tiny_generator)
    with pytest.raises(UserError, match="uint8"):
        anim.set_source(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(UserError, match="RGB"):
        anim.set_source(np.zeros((64, 64), np.uint8))


def test_output_is_clamped_not_normalised():
    t = torch.tensor([[-3.0, -1.0, 0.0], [0.5, 1.0, 4.0]]).reshape(1, 1, 2, 3).expand(1, 3, 2, 3)
    img = from_tensor(t)[0][..., 0]
    assert img.tolist() == [[0, 0, 128], [191, 255, 255]]
