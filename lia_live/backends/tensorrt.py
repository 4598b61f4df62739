"""``tensorrt``: both per-frame graphs compiled AOT by Torch-TensorRT (dynamo frontend), FP16 by default.

NOT RUN ON A GPU YET in this form: TensorRT is not installed on the machines this was written on or on
the lent H100/H200; the build/load calls follow the Torch-TensorRT 2.x documentation and everything
around them (keys, cache, checks, fallback) is tested on CPU with fakes (tests/test_backends_engines.py).

Flow on first use (also ``lia-live engines build``):
1. look in the engine cache (``cache.engine_dir()``: ``$LIA_ENGINE_DIR`` or ``~/.cache/lia-live/engines``)
   for ``lia-<graph>_<size>_<precision>_gpu…_capability…_tensorrt…_torchtensorrt…_<weights>_<digest>.ep``
   whose JSON sidecar matches the weights hash, resolution, precision, GPU name and compute capability,
   TensorRT / Torch-TensorRT / torch versions and the file's SHA-256 — anything else is rebuilt, never loaded;
2. otherwise ``torch.export.export`` the graph and ``torch_tensorrt.dynamo.compile`` it. Precision:
   - default (``precision="fp16"``): the graph itself is cast to fp16 with ToFlow (flow conv, sampling grid,
     ``grid_sample``) kept fp32 — TensorRT ≥ 10 builds strongly typed networks and Torch-TensorRT 2.13+
     removed ``enabled_precisions`` / ``use_explicit_typing``, so the precision is the graph's own;
   - option ``autocast=true``: the fp32 graph with Torch-TensorRT's rule-based autocast
     (``enable_autocast``, fp16, ``aten.grid_sampler_2d`` excluded);
   saved atomically with ``torch_tensorrt.save`` (ExportedProgram format);
3. batch 1 runs inside ``torch_tensorrt.runtime.enable_cudagraphs`` (option ``cudagraphs``, on by default):
   the engines are replayed from CUDA graphs;
4. on the first real source image, compare both graphs with the fp32 eager model (NaN / black frame /
   tolerance). A failing FP16 engine is replaced by an FP32 one, a failing FP32 engine by the next backend
   (``fallback.next_backend_for``: ``cudagraph`` on CUDA) — each with a warning on stderr.

TensorRT is an optional extra (``pip install .[tensorrt]``); nothing here imports it at module import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
from typing import Any

import torch

from ..errors import UserError
from ..model import Generator
from .base import BackendInfo, BackendOption, SourceState, register_backend
from .cache import EngineSpec, commit, engine_dir, lookup, weights_hash
from .checks import Check
from .export import MotionEncoderGraph, SynthesisGraph
from .fallback import next_backend_for, next_fallback
from .graph import GraphBackend, log, reduced_precision_copy

GRAPHS = ("motion", "synthesis")


def trt_environment(device: torch.device) -> dict:
    """GPU identity and library versions an engine depends on (imports torch_tensorrt / tensorrt)."""
    import tensorrt
    import torch_tensorrt

    idx = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    return {"gpu": torch.cuda.get_device_name(idx), "capability": f"{major}.{minor}",
            "tensorrt": tensorrt.__version__, "torch_tensorrt": torch_tensorrt.__version__,
            "torch": torch.__version__, "cuda": torch.version.cuda}


def engine_specs(generator: Generator, precision: str, env: dict, autocast: bool = False) -> dict[str, EngineSpec]:
    """Cache specs of both graphs for this weights hash, resolution, precision and environment."""
    w = weights_hash(generator)
    extra = {**env, "autocast": True} if autocast else dict(env)
    return {g: EngineSpec("tensorrt", g, w, generator.config.size, precision, dict(extra)) for g in GRAPHS}


def compile_kwargs(compile_fn, inputs: list[torch.Tensor], dtype: torch.dtype, device: torch.device,
                   autocast: bool = False) -> dict:
    """Arguments for ``torch_tensorrt.dynamo.compile`` that work across 2.x releases.

    Precision is the graph's own (inputs and weights already cast): 2.13+ has no ``enabled_precisions``
    and no ``use_explicit_typing`` (strongly typed always); releases that still have ``use_explicit_typing``
    get it set; the oldest ones (weakly typed) get ``enabled_precisions``. ``autocast=True`` asks for
    Torch-TensorRT's rule-based fp16 autocast of an fp32 graph with ``grid_sampler_2d`` kept fp32.
    """
    params = inspect.signature(compile_fn).parameters
    kw: dict = {"device": device, "min_block_size": 1, "require_full_compilation": False}
    kw["arg_inputs" if "arg_inputs" in params else "inputs"] = inputs
    if "use_explicit_typing" in params:
        kw["use_explicit_typing"] = True
    elif "enabled_precisions" in params and not autocast:
        kw["enabled_precisions"] = {dtype}
    if autocast:
        if "enable_autocast" not in params:
            raise UserError("tensorrt option autocast needs Torch-TensorRT with enable_autocast (2.10+)")
        kw["enable_autocast"] = True
        kw["autocast_low_precision_type"] = torch.float16
        kw["autocast_excluded_ops"] = {torch.ops.aten.grid_sampler_2d.default}
    if dtype == torch.float32 and not autocast:
        kw["disable_tf32"] = True  # the fp32 engine is the exact fallback: no TF32 matrix maths
    if "optimization_level" in params:
        kw["optimization_level"] = 5
    return {k: v for k, v in kw.items() if k in params}


def save_kwargs(save_fn, inputs: list[torch.Tensor]) -> dict:
    params = inspect.signature(save_fn).parameters
    kw: dict[str, Any] = {"arg_inputs" if "arg_inputs" in params else "inputs": inputs}
    if "output_format" in params:
        kw["output_format"] = "exported_program"
    return kw


def build_engine(graph: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path, spec: EngineSpec,
                 device: torch.device, autocast: bool = False):
    """Export → Torch-TensorRT compile → save (atomically, sidecar last). Returns the compiled module."""
    import torch_tensorrt

    with torch.no_grad():
        ep = torch.export.export(graph, inputs, strict=False)
        trt = torch_tensorrt.dynamo.compile(ep, **compile_kwargs(torch_tensorrt.dynamo.compile, list(inputs),
                                                                 inputs[0].dtype, device, autocast))
    commit(path, spec, lambda tmp: torch_tensorrt.save(trt, str(tmp), **save_kwargs(torch_tensorrt.save,
                                                                                     list(inputs))))
    return trt


def load_engine(path):
    import torch_tensorrt

    return torch_tensorrt.load(str(path)).module()


def cudagraph_module(module, stack: contextlib.ExitStack):
    """``module`` replayed from CUDA graphs for as long as ``stack`` is open (not run on a GPU yet)."""
    import torch_tensorrt

    return stack.enter_context(torch_tensorrt.runtime.enable_cudagraphs(module))


def _cloning(module):
    def run(*xs: torch.Tensor) -> torch.Tensor:
        return module(*xs).clone()
    return run


class TensorRTBackend(GraphBackend):
    name = "tensorrt"
    warmup_calls = 2  # the first call records the runtime's CUDA graphs

    def __init__(self, generator: Generator, device="cuda", precision="fp16",
                 engine_root: str | os.PathLike | None = None, validate_on_source: bool = True,
                 cudagraphs: bool = True, autocast: bool = False):
        ok, why = _available(torch.device(device))
        if not ok:
            raise UserError(f"tensorrt backend unavailable: {why}")
        super().__init__(generator, device, precision)
        self.root = engine_dir(engine_root)
        self.validate_on_source = validate_on_source
        self.cudagraphs, self.autocast = cudagraphs, autocast
        self._stack = contextlib.ExitStack()
        self.tried: list[str] = []
        self.fallback: Any = None  # the Backend used after a failed check
        self._load_or_build(self.precision)

    def _load_or_build(self, precision: str) -> None:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        autocast = self.autocast and precision != "fp32"
        env = trt_environment(self.device)
        specs = engine_specs(self.generator, precision, env, autocast)
        graph_dtype = torch.float32 if autocast else dtype
        gen = reduced_precision_copy(self.generator, graph_dtype)  # ToFlow (and grid_sample) stay fp32
        graphs: dict[str, Any] = {"motion": MotionEncoderGraph(gen).eval(), "synthesis": SynthesisGraph(gen).eval()}
        mods: dict[str, Any] = {}
        for g in GRAPHS:
            path, ok, why = lookup(self.root, specs[g], ".ep")
            if ok:
                mods[g] = load_engine(path)
                continue
            log(f"tensorrt: building the {precision} {g} engine for {env['gpu']} ({why}); "
                f"this takes a few minutes, once → {path}")
            # the image goes in at the graph's dtype; the latent and the source features stay fp32 (as in
            # eager: the modulation casts the latent, ToFlow reads the features in fp32)
            inputs = graphs[g].example_inputs(1, graph_dtype if g == "motion" else torch.float32, self.device)
            mods[g] = build_engine(graphs[g].to(self.device), inputs, path, specs[g], self.device, autocast)
        self._stack.close()  # engines of a previous precision leave their CUDA graphs
        self._stack = contextlib.ExitStack()
        if self.cudagraphs:  # clone: a replay may reuse its output buffer
            mods = {g: _cloning(cudagraph_module(m, self._stack)) for g, m in mods.items()}
        self.precision, self.dtype = precision, graph_dtype
        self.motion_fn, self.synth_fn = mods["motion"], mods["synthesis"]
        self.tried.append(precision)

    def encode_source(self, img: torch.Tensor) -> SourceState:
        state = super().encode_source(img)
        if self.validate_on_source and self.validated is None and self.fallback is None:
            self.check_and_fallback(img)
        return state

    @property
    def active(self):
        """The backend really doing the per-frame work (self, or the fallback after a failed check)."""
        return self.fallback or self

    def check_and_fallback(self, image: torch.Tensor | None = None) -> list[Check]:
        """Validate against fp32 eager; on failure walk fp16 → fp32 → the next backend, warning each step."""
        from .base import create_backend

        next_backend = next_backend_for(self.device.type)
        while True:
            checks = self.validate(image)
            if all(c.ok for c in checks):
                return checks
            step = next_fallback(self.precision, self.tried, next_backend)
            detail = "; ".join(str(c) for c in checks if not c.ok)
            if step == "fp32":
                log(f"WARNING: tensorrt {self.precision} engine failed its check against fp32 eager ({detail}); "
                    f"rebuilding in fp32")
                self._load_or_build("fp32")
                continue
            if step == next_backend:
                log(f"WARNING: tensorrt engines failed their check against fp32 eager ({detail}); "
                    f"falling back to the {next_backend} backend")
                self.tried.append(next_backend)
                self._stack.close()
                self.fallback = create_backend(next_backend, self.generator, self.device, "fp32")
                self.precision, self.dtype = "fp32", torch.float32
                self.motion_fn, self.synth_fn = self.fallback.motion_fn, self.fallback.synth_fn
                return checks
            raise RuntimeError(f"tensorrt: no working engine ({detail})")

    def describe(self) -> str:
        if self.fallback is not None:
            return f"tensorrt → fallback {self.fallback.describe()}"
        graphs = ", CUDA graphs" if self.cudagraphs else ""
        return f"tensorrt (Torch-TensorRT, {self.precision}{graphs}, {self.device})"


def _available(device: torch.device) -> tuple[bool, str]:
    if importlib.util.find_spec("torch_tensorrt") is None:
        return False, "torch_tensorrt not installed (pip install .[tensorrt], needs an NVIDIA GPU)"
    if device.type != "cuda":
        return False, "TensorRT needs a CUDA device"
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    try:
        import torch_tensorrt  # noqa: F401
    except (ImportError, OSError, RuntimeError) as e:
        return False, f"torch_tensorrt failed to import: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return True, "Torch-TensorRT"


register_backend(BackendInfo(
    "tensorrt", TensorRTBackend, _available, priority=100, precisions=("fp16", "fp32"), default_precision="fp16",
    options=(BackendOption("cudagraphs", "replay the batch-1 engines from CUDA graphs (default: on)", kind="bool"),
             BackendOption("autocast", "fp16 by Torch-TensorRT's autocast of the fp32 graph (grid_sample "
                                       "kept fp32) instead of casting the graph", kind="bool"))))
