"""The CUDA backends for real, against eager fp32 (``pytest -m gpu``; skipped without a CUDA GPU).

NOT RUN ON A GPU YET: written without a GPU; ``scripts/gpu_check.sh`` runs this first on a lent machine.
Checks: every CUDA backend at each precision it declares against eager fp32 on the official-shape seeded
model (fp32: rel L2 ≤ 1e-3 — cuDNN may use TF32 —, reduced precision: ≥ 50 dB PSNR for fp16, no NaN, no
black frame), CUDA graphs replay the right frame when the inputs change and earlier outputs are not
overwritten, a captured batch equals the same frames one by one.
"""

import pytest
import torch

from lia_live.backends import available_backends, backend_info, backend_names, create_backend
from lia_live.backends.checks import check_output, psnr, rel_l2
from lia_live.bench import driving_frames, make_animator, seeded_generator

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MIN_PSNR = {"fp16": 50.0, "bf16": 40.0, "fp32": 60.0}


@pytest.fixture(autouse=True)
def engine_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIA_ENGINE_DIR", str(tmp_path_factory.getbasetemp() / "engines"))


@pytest.fixture(scope="module")
def gen():
    from lia_live.model import GeneratorConfig

    return seeded_generator(GeneratorConfig(size=256)).to("cuda")


@pytest.fixture(scope="module")
def frames():
    return [f.to("cuda") for f in driving_frames(256, 3)]


def _cases():
    return [(n, p) for n in backend_names() for p in backend_info(n).precisions]


def _render(anim, img):
    with torch.no_grad():
        return anim.render(anim.motion(img))


@pytest.mark.parametrize("name,precision", _cases(), ids=[f"{n}-{p}" for n, p in _cases()])
def test_cuda_backend_matches_eager_fp32(name, precision, gen, frames):
    ok, why = available_backends("cuda")[name]
    if not ok:
        pytest.skip(f"{name} unavailable on cuda: {why}")
    if name == "compile" and precision != "fp16":
        pytest.skip("compile: its CUDA default (fp16) only — each precision is a cold compile of ~48 s")
    source = frames[0]
    ref = make_animator(create_backend("eager", gen, device="cuda", precision="fp32"), source)
    anim = make_animator(create_backend(name, gen, device="cuda", precision=precision), source)
    outs = []
    for img in frames[1:] + frames[1:2]:  # change the input, then come back to the first frame
        want, got = _render(ref, img), _render(anim, img)
        assert got.shape == want.shape == (1, 3, 256, 256)
        check = check_output(name, got, want, "fp16" if precision != "fp32" else "fp32")
        assert check.finite and not check.black, str(check)
        p, r = psnr(got, want), rel_l2(got, want)
        assert p >= MIN_PSNR[precision], f"{name} {precision}: PSNR {p:.1f} dB, rel L2 {r:.2e}"
        if precision == "fp32":
            assert r <= 1e-3, f"{name} fp32: rel L2 {r:.2e}"
        outs.append(got)
    assert rel_l2(outs[0], outs[1]) > 1e-3  # another driving frame → another image (the graph saw the new input)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-3, atol=1e-3)  # same frame again → same image


def test_cudagraph_outputs_survive_later_replays_and_batches_match(gen, frames):
    if not available_backends("cuda")["cudagraph"][0]:
        pytest.skip("cudagraph unavailable")
    b = create_backend("cudagraph", gen, device="cuda", precision="fp16")
    state = b.encode_source(frames[0])
    with torch.no_grad():
        alphas = [b.encode_motion(f) for f in frames]
        kept = alphas[0].clone()
        latents = [state.latent + gen.dec.direction(a) for a in alphas]
        imgs = [b.synthesize(lat, state.feats) for lat in latents]
        torch.testing.assert_close(alphas[0], kept, rtol=0, atol=0)  # not overwritten by later replays
        assert rel_l2(imgs[1], imgs[2]) > 1e-3
        batch = b.synthesize(torch.cat(latents), [f.expand(3, -1, -1, -1) for f in state.feats])
        motion3 = b.encode_motion(torch.cat(frames))
    torch.testing.assert_close(batch, torch.cat(imgs), rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(motion3, torch.cat(alphas), rtol=2e-3, atol=2e-3)
    assert {("motion", 1), ("motion", 3), ("synthesis", 1), ("synthesis", 3)} <= set(b.graphs)
