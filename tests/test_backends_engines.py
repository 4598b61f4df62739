"""Engine cache keying, stale detection, output checks and the TensorRT fallback chain — on CPU.

TensorRT cannot be installed here, so the Torch-TensorRT build/load calls are replaced by fakes that
run the exported graphs eagerly; everything around them (keys, sidecars, rebuilds, validation, the
fp16 → fp32 → compile fallback) is the real code.
"""

import json

import pytest
import torch

from lia_live.backends import engines
from lia_live.backends.engines import EngineSpec, check_output, commit, is_stale, lookup, next_fallback


def _spec(**kw):
    base = dict(kind="tensorrt", graph="synthesis", weights="ab" * 32, size=256, precision="fp16",
                extra={"gpu": "NVIDIA H100 80GB HBM3", "capability": "9.0", "tensorrt": "11.1.0",
                       "torch_tensorrt": "2.14.0", "torch": "2.14.1"})
    base.update(kw)
    return EngineSpec(**base)


def test_engine_file_name_is_keyed_by_everything_it_depends_on():
    a = _spec()
    name = a.filename(".ep")
    for part in ("synthesis", "256", "fp16", "nvidia-h100-80gb-hbm3", "capability9.0", "tensorrt11.1.0",
                 "torchtensorrt2.14.0", "abababababab"):
        assert part in name, part
    variants = [_spec(weights="cd" * 32), _spec(size=512), _spec(precision="fp32"), _spec(graph="motion"),
                _spec(extra={**a.extra, "gpu": "NVIDIA A100"}), _spec(extra={**a.extra, "capability": "8.0"}),
                _spec(extra={**a.extra, "tensorrt": "11.2.0"}), _spec(extra={**a.extra, "torch_tensorrt": "2.15"}),
                _spec(extra={**a.extra, "torch": "2.15.0"})]
    names = {v.filename(".ep") for v in variants}
    assert name not in names and len(names) == len(variants)


def test_weights_hash_tracks_weight_values(tiny_generator):
    h = engines.weights_hash(tiny_generator)
    assert h == engines.weights_hash(tiny_generator)
    with torch.no_grad():
        tiny_generator.dec.to_rgbs[0].bias.add_(1e-3)
    assert engines.weights_hash(tiny_generator) != h


def test_stale_and_foreign_engines_are_detected(tmp_path):
    spec = _spec()
    path, ok, why = lookup(tmp_path, spec, ".ep")
    assert not ok and "no engine file" in why
    path.write_bytes(b"engine from somewhere else")
    assert is_stale(path, spec) == (True, "no metadata sidecar (foreign or interrupted build)")
    path.unlink()
    commit(path, spec, lambda tmp: tmp.write_bytes(b"a real engine"), built_by="test")
    assert lookup(tmp_path, spec, ".ep")[1:] == (True, "up to date")
    # same file name but the sidecar says another GPU (copied from another machine): rebuild
    meta = json.loads(engines.sidecar(path).read_text())
    meta["spec"]["extra"]["gpu"] = "NVIDIA A100"
    engines.sidecar(path).write_text(json.dumps(meta))
    stale, why = is_stale(path, spec)
    assert stale and "extra.gpu" in why
    # right sidecar, altered bytes (truncated copy): rebuild
    commit(path, spec, lambda tmp: tmp.write_bytes(b"a real engine"))
    path.write_bytes(b"a real eng")
    assert is_stale(path, spec) == (True, "engine file does not match its recorded checksum")
    assert not list(tmp_path.glob("*.tmp*"))


def test_output_check_rejects_nan_black_and_inaccurate_frames():
    g = torch.Generator().manual_seed(0)
    want = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    assert check_output("s", want + 1e-6, want, "fp32").ok
    assert not check_output("s", want + 1e-2, want, "fp32").ok
    assert check_output("s", want + 1e-3, want, "fp16").ok
    nan = want.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert check_output("s", nan, want, "fp16").reason == "non-finite values"
    assert check_output("s", torch.full_like(want, -1.0), want, "fp16").reason == "constant (black) frame"
    low = check_output("s", want + 0.05 * torch.randn(want.shape, generator=g), want, "fp16")
    assert not low.ok and "rel L2" in low.reason


def test_fallback_order_is_fp32_then_compile_then_nothing():
    assert next_fallback("fp16", ["fp16"]) == "fp32"
    assert next_fallback("fp32", ["fp16", "fp32"]) == "compile"
    assert next_fallback("fp32", ["fp32"]) == "compile"
    assert next_fallback("fp32", ["fp16", "fp32", "compile"]) is None


def test_compile_kwargs_follow_the_installed_api():
    from lia_live.backends.tensorrt import compile_kwargs, save_kwargs

    x = [torch.zeros(1)]

    def new_api(exported_program, arg_inputs=None, *, device=None, min_block_size=5,
                require_full_compilation=False, use_explicit_typing=False, enabled_precisions=None,
                optimization_level=None):
        pass

    def old_api(exported_program, inputs=None, *, device=None, enabled_precisions=None, min_block_size=5):
        pass

    kw = compile_kwargs(new_api, x, torch.float16, torch.device("cuda"))
    assert kw["use_explicit_typing"] is True and "enabled_precisions" not in kw and kw["arg_inputs"] is x
    kw = compile_kwargs(old_api, x, torch.float16, torch.device("cuda"))
    assert kw["enabled_precisions"] == {torch.float16} and kw["inputs"] is x and "use_explicit_typing" not in kw

    def save(module, file_path="", output_format="exported_program", inputs=None):
        pass

    assert save_kwargs(save, x) == {"inputs": x, "output_format": "exported_program"}


def test_tensorrt_unavailable_here_says_why():
    from lia_live.backends.tensorrt import _available

    try:
        import torch_tensorrt  # noqa: F401
    except (ImportError, OSError):
        ok, why = _available(torch.device("cuda"))
        assert not ok and why.startswith("torch_tensorrt not installed")
    else:
        pytest.skip("torch_tensorrt is installed")


class _FakeTRT:
    """Stands in for Torch-TensorRT: 'builds' by keeping the graph, optionally corrupting fp16 outputs."""

    def __init__(self, bad_precisions=()):
        self.bad = set(bad_precisions)
        self.built, self.loaded = [], []
        self.graphs = {}

    def build(self, graph, inputs, path, spec, device):
        self.built.append((spec.graph, spec.precision))
        commit(path, spec, lambda tmp: tmp.write_bytes(f"{spec.graph}-{spec.precision}".encode()))
        self.graphs[str(path)] = (graph, spec.precision)
        return self._wrap(graph, spec.precision)

    def load(self, path):
        self.loaded.append(path.name)
        graph, precision = self.graphs[str(path)]
        return self._wrap(graph, precision)

    def _wrap(self, graph, precision):
        from lia_live.export import MotionEncoderGraph

        def run(*xs):
            if precision not in self.bad:
                return graph(*xs)
            if isinstance(graph, MotionEncoderGraph):  # a broken engine: NaNs of the right shape
                return torch.full((xs[0].shape[0], graph.fc[-1].weight.shape[0]), float("nan"))
            return torch.full((xs[0].shape[0], 3, xs[-1].shape[-1], xs[-1].shape[-1]), float("nan"))
        return run


@pytest.fixture()
def fake_trt(monkeypatch, tmp_path):
    from lia_live.backends import tensorrt as trt_mod

    fake = _FakeTRT()
    env = {"gpu": "Fake GPU", "capability": "9.0", "tensorrt": "11.1.0", "torch_tensorrt": "2.14.0",
           "torch": torch.__version__, "cuda": None}
    monkeypatch.setattr(trt_mod, "_available", lambda device: (True, "fake"))
    monkeypatch.setattr(trt_mod, "trt_environment", lambda device: dict(env))
    monkeypatch.setattr(trt_mod, "build_engine", fake.build)
    monkeypatch.setattr(trt_mod, "load_engine", fake.load)
    fake.env = env
    return fake


def test_tensorrt_builds_once_then_loads_and_rebuilds_when_gpu_changes(fake_trt, tiny_generator, tmp_path):
    from lia_live.backends.tensorrt import TensorRTBackend

    TensorRTBackend(tiny_generator, device="cpu", precision="fp32", engine_root=tmp_path)
    assert fake_trt.built == [("motion", "fp32"), ("synthesis", "fp32")] and not fake_trt.loaded
    TensorRTBackend(tiny_generator, device="cpu", precision="fp32", engine_root=tmp_path)
    assert len(fake_trt.built) == 2 and len(fake_trt.loaded) == 2  # cached engines reused
    fake_trt.env["gpu"] = "Another GPU"
    TensorRTBackend(tiny_generator, device="cpu", precision="fp32", engine_root=tmp_path)
    assert len(fake_trt.built) == 4  # a foreign engine is rebuilt, never loaded


def test_tensorrt_bad_fp16_engine_falls_back_to_fp32(fake_trt, tiny_generator, tmp_path, capsys):
    from lia_live.backends.tensorrt import TensorRTBackend

    fake_trt.bad = {"fp16"}
    b = TensorRTBackend(tiny_generator, device="cpu", precision="fp16", engine_root=tmp_path)
    src = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    state = b.encode_source(src)  # the first real image triggers the check against fp32 eager
    assert b.precision == "fp32" and b.tried == ["fp16", "fp32"] and b.fallback is None
    assert "failed its check" in capsys.readouterr().err
    out = b.synthesize(state.latent, state.feats)
    assert torch.isfinite(out).all()
    with torch.no_grad():
        want = tiny_generator.dec.synthesize(state.latent, state.feats)
    torch.testing.assert_close(out, want)


def test_tensorrt_falls_back_to_compile_when_every_engine_fails(fake_trt, tiny_generator, tmp_path,
                                                               monkeypatch, capsys):
    from lia_live.backends import compiled
    from lia_live.backends.eager import EagerBackend
    from lia_live.backends.tensorrt import TensorRTBackend

    class FakeCompile(EagerBackend):  # the real one would spend ~40 s compiling on this CPU
        name = "compile"

    monkeypatch.setattr(compiled, "CompileBackend", FakeCompile)
    fake_trt.bad = {"fp16", "fp32"}
    b = TensorRTBackend(tiny_generator, device="cpu", precision="fp16", engine_root=tmp_path)
    state = b.encode_source(torch.zeros(1, 3, 64, 64))
    assert isinstance(b.fallback, FakeCompile) and b.tried == ["fp16", "fp32", "compile"]
    assert "falling back to the compile backend" in capsys.readouterr().err
    assert "fallback" in b.describe()
    assert torch.isfinite(b.synthesize(state.latent, state.feats)).all()
