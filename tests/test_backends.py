"""Every backend available here against the eager fp32 reference, the registry, and the naive baseline."""

import math

import pytest
import torch

from reference import rel_l2

from lia_live.backends import available_backends, backend_names, create_backend, resolve_backend_name
from lia_live.backends.engines import psnr
from lia_live.errors import UserError
from lia_live.imaging import to_tensor

# (backend, precision, model): bf16 on the 256 official-shape model and a real-looking image; the rest on
# the tiny model (a cold inductor compile of the 256 graphs takes minutes on 2 cores; the 256 ONNX graphs
# are checked against eager in test_export.py).
COMBOS = [("eager", "fp32", "tiny"), ("eager", "bf16", "ref"), ("onnxruntime", "fp32", "tiny"),
          ("compile", "fp32", "tiny"), ("compile", "bf16", "tiny"), ("tensorrt", "fp16", "ref"),
          ("tensorrt", "fp32", "ref")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def engine_root(tmp_path_factory):
    """One engine directory per module, so ONNX files exported once are reused by later tests."""
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def seeded_tiny(tiny_config):
    """The tiny model initialised with the reference fixture's recipe (so its images look like the 256's)."""
    from lia_live.bench import seeded_generator

    return seeded_generator(tiny_config, seed=7)


def _frame(backend, source, driving):
    """Relative-motion frame exactly as the Animator computes it."""
    state = backend.encode_source(source)
    alpha_ref = backend.encode_motion(source)
    alpha = backend.encode_motion(driving)
    basis = backend.basis.to(backend.device)  # (D, M)
    latent = state.latent + (state.alpha + alpha - alpha_ref) @ basis.t()  # (1, D)
    return backend.synthesize(latent, state.feats)


def _device_for(name):
    return "cuda" if name == "tensorrt" else "cpu"


@pytest.mark.parametrize("name,precision,model", COMBOS, ids=[f"{n}-{p}" for n, p, _ in COMBOS])
def test_backend_matches_eager_fp32(name, precision, model, ref_generator, seeded_tiny, astronaut, engine_root):
    device = _device_for(name)
    ok, why = available_backends(device)[name]
    if not ok:
        pytest.skip(f"{name} unavailable here: {why}")
    gen = ref_generator if model == "ref" else seeded_tiny
    size = gen.config.size
    source = to_tensor(astronaut, size).to(device)
    driving = torch.flip(to_tensor(astronaut[40:472, 60:492], size), dims=(3,)).to(device)  # another pose
    kw = {"engine_root": engine_root} if name in ("onnxruntime", "tensorrt") else {}
    reference = create_backend("eager", gen, device=device, precision="fp32")
    backend = create_backend(name, gen, device=device, precision=precision, **kw)
    with torch.no_grad():
        want = _frame(reference, source, driving)
        got = _frame(backend, source, driving)
    assert got.shape == want.shape == (1, 3, size, size)
    assert torch.isfinite(got).all()
    r = rel_l2(got.cpu().numpy(), want.cpu().numpy())
    if precision == "fp32":
        assert r <= 1e-4, f"{name} fp32 rel L2 {r:.2e}"
    else:
        p = psnr(got.cpu(), want.cpu())
        assert r <= 2e-2 and p >= 35, f"{name} {precision}: rel L2 {r:.2e}, PSNR {p:.1f} dB"
    # the comparison can fail: another driving frame gives a clearly different image
    other = _frame(reference, source, source)
    assert rel_l2(other.cpu().numpy(), want.cpu().numpy()) > 1e-2


def test_registry_has_four_backends_and_reports_tensorrt_reason():
    assert {"eager", "compile", "onnxruntime", "tensorrt"} <= set(backend_names())
    avail = available_backends("cpu")
    assert avail["eager"][0] and avail["compile"][0]
    ok, why = avail["tensorrt"]
    try:
        import torch_tensorrt  # noqa: F401
    except (ImportError, OSError):
        assert not ok and "torch_tensorrt not installed" in why


def test_auto_picks_highest_priority_available_backend():
    from lia_live.backends import backend_info

    avail = available_backends("cpu")
    name = resolve_backend_name("auto", "cpu")
    assert avail[name][0]
    cpu = torch.device("cpu")
    assert all(backend_info(n).rank(cpu) <= backend_info(name).rank(cpu) for n, (ok, _) in avail.items() if ok)
    if avail["onnxruntime"][0]:
        assert name == "onnxruntime"  # CPU preference (docs/benchmarks.md)
    assert backend_info("tensorrt").rank(torch.device("cuda")) > backend_info("compile").rank(torch.device("cuda"))


def test_unknown_backend_and_bad_precision_are_user_errors(tiny_generator):
    with pytest.raises(UserError, match="unknown backend"):
        create_backend("nope", tiny_generator)
    with pytest.raises(UserError, match="does not support precision"):
        create_backend("onnxruntime", tiny_generator, precision="bf16")
    with pytest.raises(UserError, match="fp16 is not supported on CPU"):
        create_backend("eager", tiny_generator, precision="fp16")


def test_reduced_precision_leaves_callers_model_fp32(tiny_generator):
    create_backend("eager", tiny_generator, precision="bf16")
    assert all(p.dtype == torch.float32 for p in tiny_generator.parameters())


def test_graph_backend_runs_batches_sample_by_sample(seeded_tiny, engine_root):
    if not available_backends("cpu")["onnxruntime"][0]:
        pytest.skip("onnxruntime unavailable")
    ort = create_backend("onnxruntime", seeded_tiny, engine_root=engine_root)
    eager = create_backend("eager", seeded_tiny)
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        assert rel_l2(ort.encode_motion(imgs).numpy(), eager.encode_motion(imgs).numpy()) < 1e-4
        state = eager.encode_source(imgs)
        want = eager.synthesize(state.latent, state.feats)
        got = ort.synthesize(state.latent, state.feats)
    assert got.shape == (2, 3, 64, 64)
    assert rel_l2(got.numpy(), want.numpy()) < 1e-4
    # a second backend on the same weights reuses the exported files instead of exporting again
    before = {p.name: p.stat().st_mtime_ns for p in engine_root.iterdir()}
    create_backend("onnxruntime", seeded_tiny, engine_root=engine_root)
    assert {p.name: p.stat().st_mtime_ns for p in engine_root.iterdir()} == before
    assert len(before) == 4  # two .onnx files and their sidecars


def test_naive_path_matches_official_reference(ref_generator, ref):
    from lia_live.backends.naive import NaivePath

    naive = NaivePath(ref_generator)
    src = torch.from_numpy(ref["source"])
    drv = torch.from_numpy(ref["driving"][:1])
    out = naive(src, drv)  # absolute motion, batch 1
    assert rel_l2(out.numpy(), ref["recon_absolute"][:1]) <= 1e-4


@pytest.mark.parametrize("relative", [False, True])
def test_naive_path_computes_the_fast_paths_image(tiny_generator, relative):
    """The benchmark's baseline and the fast path compute the same frame (an honest comparison)."""
    from lia_live.animator import Animator
    from lia_live.backends.naive import NaivePath

    g = torch.Generator().manual_seed(3)
    src, drv, ref_frame = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1 for _ in range(3))
    anim = Animator(tiny_generator)
    anim.set_source_tensor(src)
    naive = NaivePath(tiny_generator)
    h_start = None
    if relative:
        anim.set_reference(anim.motion(ref_frame))
        h_start = naive.motion(ref_frame)
    with torch.no_grad():
        fast = anim.step_tensor(drv)
    slow = naive(src, drv, h_start)
    assert rel_l2(slow.numpy(), fast.numpy()) <= 1e-4
    assert not math.isclose(float(fast.abs().sum()), 0.0)
