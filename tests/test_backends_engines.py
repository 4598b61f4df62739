"""Engine cache (location, keying, stale detection, atomic commit), output checks, the fallback chain, the
CUDA-graph capture logic and the compile cache — on CPU.

TensorRT cannot be installed here and there is no GPU, so the Torch-TensorRT build/load calls, the CUDA
graph capture and torch.compile are replaced by stand-ins that run the graphs eagerly; everything around
them (keys, sidecars, rebuilds, validation, the fp16 → fp32 → next-backend fallback, static buffers, one
graph per batch size, cache save/load) is the real code.
"""

import json
from pathlib import Path

import pytest
import torch
from livedata import ReplayGraph

from lia_live.backends import cache as engines
from lia_live.backends.cache import EngineSpec, commit, engine_dir, is_stale, lookup
from lia_live.backends.checks import check_output
from lia_live.backends.fallback import next_backend_for, next_fallback


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


def test_fallback_order_is_fp32_then_next_backend_then_nothing():
    assert next_fallback("fp16", ["fp16"]) == "fp32"
    assert next_fallback("fp32", ["fp16", "fp32"]) == "cudagraph"
    assert next_fallback("fp32", ["fp32"], "eager") == "eager"
    assert next_fallback("fp32", ["fp16", "fp32", "cudagraph"]) is None
    assert next_backend_for("cuda") == "cudagraph" and next_backend_for("cpu") == "eager"


def test_engine_dir_is_a_per_user_cache_never_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LIA_ENGINE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_dir() == tmp_path / "xdg" / "lia-live" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_dir() == tmp_path / "home" / ".cache" / "lia-live" / "engines"
    monkeypatch.setenv("LIA_ENGINE_DIR", str(tmp_path / "env"))
    assert engine_dir() == tmp_path / "env"
    assert engine_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.chdir(tmp_path)
    assert not engine_dir().is_relative_to(Path.cwd() / "engines")


def test_commit_never_leaves_a_partial_engine(tmp_path):
    spec = _spec()
    path = tmp_path / spec.filename(".ep")

    def broken(tmp):
        tmp.write_bytes(b"half an engi")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        commit(path, spec, broken)
    assert list(tmp_path.iterdir()) == []
    commit(path, spec, lambda tmp: tmp.write_bytes(b"whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".json"]
    meta = json.loads(engines.sidecar(path).read_text())
    from lia_live.fsutil import sha256_file

    assert meta["sha256"] == sha256_file(path) and meta["spec"]["precision"] == "fp16"


def _api(*names):
    """A stand-in for ``torch_tensorrt.dynamo.compile`` of a release that takes keyword ``names``."""
    ns = {}
    params = ", ".join(f"{n}=None" for n in names)
    exec(f"def compile(exported_program, *, {params}): pass", ns)
    return ns["compile"]


def test_tensorrt_compile_kwargs_follow_the_installed_api():
    from lia_live.backends.tensorrt import compile_kwargs, save_kwargs

    x = [torch.zeros(1)]
    common = ("arg_inputs", "device", "min_block_size", "require_full_compilation", "optimization_level",
              "disable_tf32")
    # 2.13+: strongly typed only, no precision arguments at all — the graph's own dtype decides
    current = _api(*common, "enable_autocast", "autocast_low_precision_type", "autocast_excluded_ops")
    kw = compile_kwargs(current, x, torch.float16, torch.device("cuda"))
    assert kw["arg_inputs"] is x and kw["min_block_size"] == 1 and kw["optimization_level"] == 5
    assert not {"enabled_precisions", "use_explicit_typing", "enable_autocast", "disable_tf32"} & set(kw)
    assert compile_kwargs(current, x, torch.float32, torch.device("cuda"))["disable_tf32"] is True
    kw = compile_kwargs(current, x, torch.float32, torch.device("cuda"), autocast=True)
    assert kw["enable_autocast"] is True and kw["autocast_low_precision_type"] == torch.float16
    assert kw["autocast_excluded_ops"] == {torch.ops.aten.grid_sampler_2d.default} and "disable_tf32" not in kw
    # 2.5–2.12: explicit typing is an option
    middle = _api(*common, "use_explicit_typing", "enabled_precisions")
    kw = compile_kwargs(middle, x, torch.float16, torch.device("cuda"))
    assert kw["use_explicit_typing"] is True and "enabled_precisions" not in kw
    with pytest.raises(Exception, match="needs Torch-TensorRT with enable_autocast"):
        compile_kwargs(middle, x, torch.float32, torch.device("cuda"), autocast=True)
    # oldest: weakly typed, precisions as a set; positional ``inputs``
    old = _api("inputs", "device", "enabled_precisions", "min_block_size")
    kw = compile_kwargs(old, x, torch.float16, torch.device("cuda"))
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
        self.wrapped, self.unwrapped = 0, []

    def build(self, graph, inputs, path, spec, device, autocast=False):
        self.autocast = autocast
        self.built.append((spec.graph, spec.precision))
        commit(path, spec, lambda tmp: tmp.write_bytes(f"{spec.graph}-{spec.precision}".encode()))
        self.graphs[str(path)] = (graph, spec.precision)
        return self._wrap(graph, spec.precision)

    def load(self, path):
        self.loaded.append(path.name)
        graph, precision = self.graphs[str(path)]
        return self._wrap(graph, precision)

    def cudagraphs(self, module, stack):
        self.wrapped += 1
        stack.callback(self.unwrapped.append, module)
        return module

    def _wrap(self, graph, precision):
        from lia_live.backends.export import MotionEncoderGraph

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
    monkeypatch.setattr(trt_mod, "cudagraph_module", fake.cudagraphs)
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


def test_tensorrt_falls_back_to_the_next_backend_when_every_engine_fails(fake_trt, tiny_generator, tmp_path, capsys):
    from lia_live.backends.eager import EagerBackend
    from lia_live.backends.tensorrt import TensorRTBackend

    fake_trt.bad = {"fp16", "fp32"}
    b = TensorRTBackend(tiny_generator, device="cpu", precision="fp16", engine_root=tmp_path)
    assert fake_trt.wrapped == 2  # both fp16 engines replayed from CUDA graphs
    state = b.encode_source(torch.zeros(1, 3, 64, 64))
    assert isinstance(b.fallback, EagerBackend) and b.tried == ["fp16", "fp32", "eager"]  # on cpu: eager
    assert fake_trt.wrapped == 4 and len(fake_trt.unwrapped) == 4  # every CUDA-graph wrapper was closed
    assert "falling back to the eager backend" in capsys.readouterr().err
    assert "fallback" in b.describe()
    out = b.synthesize(state.latent, state.feats)
    with torch.no_grad():
        torch.testing.assert_close(out, tiny_generator.dec.synthesize(state.latent, state.feats))


def test_tensorrt_options_reach_the_backend(fake_trt, tiny_generator, tmp_path, monkeypatch):
    from lia_live.backends import base, create_backend

    monkeypatch.setattr(base._REGISTRY["tensorrt"], "available", lambda device: (True, "fake"))
    b = create_backend("tensorrt", tiny_generator, device="cpu", engine_root=tmp_path,
                       options={"cudagraphs": "off"})
    assert b.precision == "fp16" and fake_trt.wrapped == 0 and not b.cudagraphs
    assert "CUDA graphs" not in b.describe()


# ---- cudagraph: the capture logic with a stand-in for the CUDA graph ---------------------------------

def _fake_capture(log):
    def capture(fn, inputs, pool, warmup):
        log.append((tuple(inputs[0].shape), pool, warmup))
        with torch.no_grad():
            out = fn(*inputs)
        return ReplayGraph(fn, inputs, out), out
    return capture


def test_cudagraph_replays_the_right_frame_per_batch_size(seeded_tiny_gen):
    from lia_live.backends.cudagraph import CudaGraphBackend

    captured = []
    b = CudaGraphBackend(seeded_tiny_gen, device="cpu", precision="fp32", capture=_fake_capture(captured))
    eager = __import__("lia_live.backends", fromlist=["create_backend"]).create_backend("eager", seeded_tiny_gen)
    g = torch.Generator().manual_seed(5)
    a, c = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        state = eager.encode_source(a)
        alpha_a, alpha_c = b.encode_motion(a), b.encode_motion(c)
        assert not torch.equal(alpha_a, alpha_c)  # new input → the static buffer really was refilled
        torch.testing.assert_close(alpha_a, eager.encode_motion(a), rtol=0, atol=0)
        torch.testing.assert_close(alpha_c, eager.encode_motion(c), rtol=0, atol=0)
        lat_a = state.latent + seeded_tiny_gen.dec.direction(alpha_a)
        lat_c = state.latent + seeded_tiny_gen.dec.direction(alpha_c)
        img_a = b.synthesize(lat_a, state.feats)
        img_c = b.synthesize(lat_c, state.feats)
        torch.testing.assert_close(img_a, eager.synthesize(lat_a, state.feats), rtol=0, atol=0)  # not overwritten
        torch.testing.assert_close(img_c, eager.synthesize(lat_c, state.feats), rtol=0, atol=0)
        # a batch of 3 captures its own graphs; source features broadcast from batch 1
        lat3 = torch.cat([lat_a, lat_c, lat_a])
        feats3 = [f.expand(3, -1, -1, -1) for f in state.feats]
        img3 = b.synthesize(lat3, feats3)
        torch.testing.assert_close(img3, torch.cat([img_a, img_c, img_a]), rtol=1e-5, atol=1e-5)
        assert b.encode_motion(torch.cat([a, c])).shape == (2, seeded_tiny_gen.config.motion_dim)
    assert sorted(b.graphs) == [("motion", 1), ("motion", 2), ("synthesis", 1), ("synthesis", 3)]
    assert [w for _, _, w in captured] == [3] * 4
    assert b.graphs[("motion", 1)].replays == 2 and b.graphs[("synthesis", 1)].replays == 2  # one capture each
    assert b.prefers_batch and b.max_batch is None


@pytest.mark.parametrize("share", [True, False])
def test_cudagraph_graphs_share_one_pool_unless_asked_not_to(seeded_tiny_gen, monkeypatch, share):
    from lia_live.backends import cudagraph

    handles, pools = [], []

    def handle():
        handles.append(object())
        return handles[-1]

    def capture(fn, inputs, pool, warmup):  # stands in for capture_cuda_graph (identity checked below)
        pools.append(pool)
        return _fake_capture([])(fn, inputs, pool, warmup)

    monkeypatch.setattr(cudagraph.torch.cuda, "graph_pool_handle", handle)
    monkeypatch.setattr(cudagraph, "capture_cuda_graph", capture)
    b = cudagraph.CudaGraphBackend(seeded_tiny_gen, device="cpu", precision="fp32", share_pool=share,
                                   capture=capture)
    img = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        state = b.encode_source(img)
        b.encode_motion(img)
        b.encode_motion(torch.cat([img, img]))
        b.synthesize(state.latent, state.feats)
    assert len(pools) == 3
    if share:
        assert len(handles) == 1 and all(p is handles[0] for p in pools)
    else:
        assert handles == [] and pools == [None, None, None]


def test_cudagraph_static_graph_rejects_other_shapes(seeded_tiny_gen):
    from lia_live.backends.cudagraph import StaticGraph

    graph = StaticGraph(lambda x: x * 2, [torch.ones(2, 3)], None, capture=_fake_capture([]))
    torch.testing.assert_close(graph(torch.full((2, 3), 3.0)), torch.full((2, 3), 6.0))
    with pytest.raises(ValueError, match="static graph input of shape"):
        graph(torch.ones(3, 3))


def test_cudagraph_needs_cuda_and_a_positive_warmup(seeded_tiny_gen):
    from lia_live.backends.cudagraph import CudaGraphBackend
    from lia_live.errors import UserError

    with pytest.raises(UserError, match="needs a CUDA device"):
        CudaGraphBackend(seeded_tiny_gen, device="cpu")
    with pytest.raises(UserError, match="warmup must be >= 1"):
        CudaGraphBackend(seeded_tiny_gen, device="cpu", capture=_fake_capture([]), warmup=0)


# ---- compile: compiled code cached across processes (torch.compile replaced by eager) ------------------

@pytest.fixture()
def fake_compile(monkeypatch):
    from lia_live.backends import compiled

    calls = {"saved": 0, "loaded": []}

    def save():
        calls["saved"] += 1
        return (b"inductor artifacts", {"inductor": ["key"]})

    def compile(module, dynamic=None, fullgraph=None, **kw):
        assert dynamic is False and fullgraph is True  # static shapes, one graph each
        calls["kw"] = kw
        return module

    monkeypatch.setattr(compiled.torch, "compile", compile)
    monkeypatch.setattr(compiled.torch.compiler, "save_cache_artifacts", save)
    monkeypatch.setattr(compiled.torch.compiler, "load_cache_artifacts", lambda data: calls["loaded"].append(data))
    return calls


def test_compile_cache_is_saved_once_then_loaded_and_keyed_by_weights(fake_compile, seeded_tiny_gen, tmp_path,
                                                                       capsys):
    from lia_live.backends.compiled import CompileBackend

    b = CompileBackend(seeded_tiny_gen, device="cpu", engine_root=tmp_path)
    assert b.mode == "freezing" and fake_compile["kw"] == {"options": {"freezing": True}}
    assert not b.cache_loaded and fake_compile["saved"] == 0
    b.warmup(1)  # both graphs ran once → the compiled code is committed to the cache
    assert fake_compile["saved"] == 1 and b.cache_path.read_bytes() == b"inductor artifacts"
    assert b.cache_path.parent == tmp_path and "_modefreezing_" in b.cache_path.name
    b.warmup(1)
    assert fake_compile["saved"] == 1  # saved once
    b2 = CompileBackend(seeded_tiny_gen, device="cpu", engine_root=tmp_path)
    assert b2.cache_loaded and fake_compile["loaded"] == [b"inductor artifacts"]
    b2.warmup(1)
    assert fake_compile["saved"] == 1  # loaded code is not saved again
    assert "loaded compiled code" in capsys.readouterr().err
    with torch.no_grad():
        seeded_tiny_gen.dec.to_rgbs[0].bias.add_(1e-3)
    b3 = CompileBackend(seeded_tiny_gen, device="cpu", engine_root=tmp_path)
    assert not b3.cache_loaded  # other weights: another key
    b4 = CompileBackend(seeded_tiny_gen, device="cpu", engine_root=tmp_path, mode="default")
    assert not b4.cache_loaded and fake_compile["kw"] == {}  # another mode: another key
    assert CompileBackend(seeded_tiny_gen, device="cpu", engine_root=tmp_path, cache=False).cache_path is None


def test_compile_modes_on_cpu(seeded_tiny_gen, fake_compile, tmp_path):
    from lia_live.backends.compiled import CompileBackend, compile_kwargs
    from lia_live.errors import UserError

    assert compile_kwargs("reduce-overhead") == {"mode": "reduce-overhead"} and compile_kwargs("default") == {}
    with pytest.raises(UserError, match="needs a CUDA device"):
        CompileBackend(seeded_tiny_gen, device="cpu", mode="max-autotune", engine_root=tmp_path)
    with pytest.raises(UserError, match="unknown mode"):
        CompileBackend(seeded_tiny_gen, device="cpu", mode="fast", engine_root=tmp_path)


@pytest.fixture()
def seeded_tiny_gen(tiny_config):
    from lia_live.bench import seeded_generator

    return seeded_generator(tiny_config, seed=7)
