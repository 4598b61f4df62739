"""Every registered backend against the eager fp32 reference, the registry, options, batches, the naive baseline.

Backends that need a GPU are exercised on CPU where their logic allows (``cudagraph`` with a stand-in for
the CUDA capture); tests/test_gpu.py runs them for real on a CUDA machine.
"""

import math

import pytest
import torch
from reference import rel_l2

from lia_live.backends import (
    available_backends,
    backend_info,
    backend_names,
    base,
    create_backend,
    default_batch_size,
    default_precision,
    parse_backend_options,
    resolve_backend_name,
)
from lia_live.backends.checks import psnr
from lia_live.bench import seeded_generator
from lia_live.errors import UserError
from lia_live.imaging import to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def engine_cache(tmp_path_factory, monkeypatch):
    """Engines and compiled code go to a temporary cache, shared by the module (exported once, reused)."""
    root = tmp_path_factory.getbasetemp() / "engine-cache"
    monkeypatch.setenv("LIA_ENGINE_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def seeded_tiny(tiny_config):
    """The tiny model with the seeded-weights recipe (so its images look like the 256's)."""
    return seeded_generator(tiny_config, seed=7)


def _frame(backend, source, driving):
    """Relative-motion frame through the product's Animator."""
    from lia_live.animator import Animator

    anim = Animator(backend)
    anim.set_source_tensor(source)
    anim.set_reference(anim.motion(source))
    return anim.render(anim.motion(driving))


def _cases():
    """(backend, precision) for every registered backend and every precision it declares."""
    return [(n, p) for n in backend_names() for p in backend_info(n).precisions]


@pytest.mark.parametrize("name,precision", _cases(), ids=[f"{n}-{p}" for n, p in _cases()])
def test_backend_matches_eager_fp32(name, precision, seeded_tiny, ref_generator, astronaut):
    ok, why = available_backends("cpu")[name]
    if not ok:
        pytest.skip(f"{name} needs another device (tests/test_gpu.py): {why}")
    if precision == "fp16":
        with pytest.raises(UserError, match="fp16 is not supported on CPU"):
            create_backend(name, seeded_tiny, precision=precision)
        return
    if name == "compile" and precision != "fp32":
        pytest.skip("one cold inductor compile per run is enough on 2 cores (fp32 below)")
    # bf16 on the 256 official-shape model (realistic error); everything else on the tiny model
    gen = ref_generator if (precision == "bf16" and name == "eager") else seeded_tiny
    size = gen.config.size
    source = to_tensor(astronaut, size)
    driving = torch.flip(to_tensor(astronaut[40:472, 60:492], size), dims=(3,))  # another pose
    reference = create_backend("eager", gen, precision="fp32")
    backend = create_backend(name, gen, precision=precision)
    with torch.no_grad():
        want = _frame(reference, source, driving)
        got = _frame(backend, source, driving)
    assert got.shape == want.shape == (1, 3, size, size)
    assert torch.isfinite(got).all()
    r = rel_l2(got.numpy(), want.numpy())
    if precision == "fp32":
        assert r <= 1e-4, f"{name} fp32 rel L2 {r:.2e}"
    else:
        p = psnr(got, want)
        assert 0 < r <= 2e-2 and p >= 35, f"{name} {precision}: rel L2 {r:.2e}, PSNR {p:.1f} dB"
    # the comparison can fail: another driving frame gives a clearly different image
    other = _frame(reference, source, source)
    assert rel_l2(other.numpy(), want.numpy()) > 1e-2


def test_auto_is_the_best_ranked_available_backend_on_cpu():
    avail = available_backends("cpu")
    name = resolve_backend_name("auto", "cpu")
    cpu = torch.device("cpu")
    ranks = {n: backend_info(n).rank(cpu) for n, (ok, _) in avail.items() if ok}
    assert avail[name][0] and ranks[name] == max(ranks.values())
    assert list(ranks.values()).count(ranks[name]) == 1  # no tie decided by dict order
    if avail["onnxruntime"][0]:
        assert name == "onnxruntime"  # the measured CPU choice (docs/benchmarks.md)
    assert not avail["cudagraph"][0] and not avail["tensorrt"][0]


@pytest.fixture()
def fake_cuda(monkeypatch):
    """Pretend PyTorch sees a CUDA GPU (availability only: nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_on_cuda_without_tensorrt_is_cudagraph_in_fp16(fake_cuda):
    from lia_live.backends import tensorrt

    if tensorrt._available(torch.device("cuda"))[0]:
        pytest.skip("torch_tensorrt is installed here")
    assert resolve_backend_name("auto", "cuda") == "cudagraph"
    assert default_precision("auto", "cuda") == "fp16"
    assert default_precision("compile", "cuda") == "fp16" and default_precision("compile", "cpu") == "fp32"
    assert default_precision("eager", "cuda") == "fp32"  # the reference stays exact


def test_auto_on_cuda_prefers_tensorrt_when_importable(fake_cuda, monkeypatch):
    from lia_live.backends import tensorrt

    monkeypatch.setattr(base._REGISTRY["tensorrt"], "available", lambda device: (True, "fake"))
    assert resolve_backend_name("auto", "cuda") == "tensorrt"
    assert default_precision("auto", "cuda") == "fp16"
    assert tensorrt  # the module registered itself


def test_no_backend_available_is_a_user_error():
    with pytest.raises(UserError, match="no inference backend is available on meta"):
        resolve_backend_name("auto", "meta")


def test_unknown_backend_and_bad_precision_are_user_errors(tiny_generator):
    with pytest.raises(UserError, match="unknown backend"):
        create_backend("nope", tiny_generator)
    with pytest.raises(UserError, match="does not support precision"):
        create_backend("onnxruntime", tiny_generator, precision="bf16")
    with pytest.raises(UserError, match="not available on cpu"):
        create_backend("cudagraph", tiny_generator)


def test_backend_options_are_declared_converted_and_checked(tiny_generator):
    assert parse_backend_options(["mode=max-autotune", " cache = off "]) == {"mode": "max-autotune", "cache": "off"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_backend_options(["mode"])
    info = backend_info("compile")
    assert info.convert_options({"mode": "default", "cache": "off", "channels-last": "yes"}) == \
        {"mode": "default", "cache": False, "channels_last": True}
    with pytest.raises(UserError, match=r"no option 'bogus' \(it takes: mode, cache, channels-last\)"):
        info.convert_options({"bogus": "1"})
    with pytest.raises(UserError, match="choose one of freezing"):
        info.convert_options({"mode": "fastest"})
    with pytest.raises(UserError, match="expected true/false"):
        info.convert_options({"cache": "maybe"})
    assert backend_info("cudagraph").convert_options({"share-pool": "off", "warmup": "5"}) == \
        {"share_pool": False, "warmup": 5}
    with pytest.raises(UserError, match="invalid literal"):
        backend_info("onnxruntime").convert_options({"threads": "two"})
    with pytest.raises(UserError, match="has no option 'mode' \\(it takes: check\\)"):
        create_backend("eager", tiny_generator, options={"mode": "x"})
    assert not create_backend("eager", tiny_generator, options={"check": "off"}).check_on_source
    with pytest.raises(UserError, match="needs a CUDA device"):  # the option reaches the factory
        create_backend("compile", tiny_generator, options={"mode": "reduce-overhead"})


def test_default_batch_size(fake_cuda, monkeypatch):
    assert default_batch_size("cpu") == 1 and default_batch_size("cpu", "eager") == 1
    assert default_batch_size("cuda", "cudagraph") == 8 and default_batch_size("cuda", "eager") == 8
    assert default_batch_size("cuda", "compile") == 1  # fixed-shape compiled graphs
    monkeypatch.setattr(base._REGISTRY["tensorrt"], "available", lambda device: (True, "fake"))
    assert default_batch_size("cuda") == 1  # auto → tensorrt: fixed-shape engines


@pytest.mark.parametrize("name", backend_names())
def test_registry_and_backend_agree_on_batching(name):
    info = backend_info(name)
    cls = info.factory
    assert info.batch_friendly == cls.prefers_batch
    assert (cls.max_batch is None) == cls.prefers_batch  # batch-friendly backends take any batch natively
    assert info.precision_for("cpu") in info.precisions and info.precision_for("cuda") in info.precisions


def test_reduced_precision_leaves_callers_model_fp32(tiny_generator):
    create_backend("eager", tiny_generator, precision="bf16")
    assert all(p.dtype == torch.float32 for p in tiny_generator.parameters())


def test_fixed_shape_backend_runs_batches_sample_by_sample(seeded_tiny, engine_cache):
    if not available_backends("cpu")["onnxruntime"][0]:
        pytest.skip("onnxruntime unavailable")
    ort = create_backend("onnxruntime", seeded_tiny)
    eager = create_backend("eager", seeded_tiny)
    assert ort.max_batch == 1 and not ort.prefers_batch
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        assert rel_l2(ort.encode_motion(imgs).numpy(), eager.encode_motion(imgs).numpy()) < 1e-4
        state = eager.encode_source(imgs)
        want = eager.synthesize(state.latent, state.feats)
        got = ort.synthesize(state.latent, state.feats)
    assert got.shape == (3, 3, 64, 64)
    assert rel_l2(got.numpy(), want.numpy()) < 1e-4
    # a second backend on the same weights reuses the exported files instead of exporting again
    files = sorted(engine_cache.glob("lia-*.onnx*"))
    before = {p.name: p.stat().st_mtime_ns for p in files}
    create_backend("onnxruntime", seeded_tiny)
    assert {p.name: p.stat().st_mtime_ns for p in sorted(engine_cache.glob("lia-*.onnx*"))} == before
    assert len([p for p in files if p.suffix == ".onnx"]) == 2 and len(files) == 4  # + sidecars
    assert not [p for p in engine_cache.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_validate_uses_the_models_direction_and_catches_a_wrong_engine(seeded_tiny):
    eager = create_backend("eager", seeded_tiny)
    assert all(c.ok for c in eager.validate())
    broken = create_backend("eager", seeded_tiny)
    broken.motion_fn = lambda img: torch.zeros(img.shape[0], seeded_tiny.config.motion_dim)
    checks = broken.validate()
    assert [c.ok for c in checks] == [False, True]  # synthesis is checked on the reference latent
    assert "rel L2" in checks[0].reason


def test_naive_path_matches_official_reference(ref_generator, ref):
    from lia_live.naive import NaivePath

    naive = NaivePath(ref_generator)
    src = torch.from_numpy(ref["source"])
    drv = torch.from_numpy(ref["driving"][:1])
    out = naive(src, drv)  # absolute motion, batch 1
    assert rel_l2(out.numpy(), ref["recon_absolute"][:1]) <= 1e-4


@pytest.mark.parametrize("relative", [False, True])
def test_naive_path_computes_the_fast_paths_image(tiny_generator, relative):
    """The benchmark's baseline and the fast path compute the same frame (an honest comparison)."""
    from lia_live.animator import Animator
    from lia_live.naive import NaivePath

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
