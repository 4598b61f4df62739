"""``tensorrt``: both per-frame graphs compiled AOT by Torch-TensorRT (dynamo frontend), FP16 by default.

Flow on first use (also ``scripts/build_engines.py``):
1. look for ``engines/lia-<graph>_<size>_<precision>_gpu…_capability…_tensorrt…_torchtensorrt…_<weights>_<digest>.ep``
   whose JSON sidecar matches the weights hash, resolution, precision, GPU name and compute capability,
   TensorRT / Torch-TensorRT / torch versions and the file's SHA-256 — anything else is rebuilt, never loaded;
2. otherwise ``torch.export.export`` the graph (cast to the target dtype: TensorRT ≥ 10.x builds strongly
   typed networks, so the precision is the graph's own), ``torch_tensorrt.dynamo.compile`` it, and save it
   with ``torch_tensorrt.save`` (ExportedProgram format);
3. on the first real source image, compare both graphs with the fp32 eager model (NaN / black frame /
   tolerance). A failing FP16 engine is replaced by an FP32 one, a failing FP32 engine by the ``compile``
   backend — each with a warning on stderr.

TensorRT is an optional extra (``pip install .[tensorrt]``); nothing here imports it at module import.
"""

from __future__ import annotations

import importlib.util
import inspect
import os

import torch

from ..errors import UserError
from ..export import MotionEncoderGraph, SynthesisGraph
from ..model import Generator
from .base import BackendInfo, SourceState, register_backend
from .engines import Check, EngineSpec, commit, engine_dir, lookup, next_fallback, weights_hash
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


def engine_specs(generator: Generator, precision: str, env: dict) -> dict[str, EngineSpec]:
    """Cache specs of both graphs for this weights hash, resolution, precision and environment."""
    w = weights_hash(generator)
    return {g: EngineSpec("tensorrt", g, w, generator.config.size, precision, dict(env)) for g in GRAPHS}


def compile_kwargs(compile_fn, inputs: list[torch.Tensor], dtype: torch.dtype, device: torch.device) -> dict:
    """Arguments for ``torch_tensorrt.dynamo.compile`` that work across 2.x releases.

    Newer releases build strongly typed networks (``use_explicit_typing``; ``enabled_precisions`` is
    deprecated there and rejected together with it); older ones need ``enabled_precisions``.
    """
    params = inspect.signature(compile_fn).parameters
    kw: dict = {"device": device, "min_block_size": 1, "require_full_compilation": False}
    kw["arg_inputs" if "arg_inputs" in params else "inputs"] = inputs
    if "use_explicit_typing" in params:
        kw["use_explicit_typing"] = True
    else:
        kw["enabled_precisions"] = {dtype}
    if "optimization_level" in params:
        kw["optimization_level"] = 5
    return {k: v for k, v in kw.items() if k in params}


def save_kwargs(save_fn, inputs: list[torch.Tensor]) -> dict:
    params = inspect.signature(save_fn).parameters
    kw = {"arg_inputs" if "arg_inputs" in params else "inputs": inputs}
    if "output_format" in params:
        kw["output_format"] = "exported_program"
    return kw


def build_engine(graph: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path, spec: EngineSpec,
                 device: torch.device):
    """Export → Torch-TensorRT compile → save (atomically, sidecar last). Returns the compiled module."""
    import torch_tensorrt

    with torch.no_grad():
        ep = torch.export.export(graph, inputs, strict=False)
        trt = torch_tensorrt.dynamo.compile(ep, **compile_kwargs(torch_tensorrt.dynamo.compile, list(inputs),
                                                                 inputs[0].dtype, device))
    commit(path, spec, lambda tmp: torch_tensorrt.save(trt, str(tmp), **save_kwargs(torch_tensorrt.save,
                                                                                     list(inputs))))
    return trt


def load_engine(path):
    import torch_tensorrt

    return torch_tensorrt.load(str(path)).module()


class TensorRTBackend(GraphBackend):
    name = "tensorrt"

    def __init__(self, generator: Generator, device="cuda", precision="fp16",
                 engine_root: str | os.PathLike | None = None, validate_on_source: bool = True):
        ok, why = _available(torch.device(device))
        if not ok:
            raise UserError(f"tensorrt backend unavailable: {why}")
        super().__init__(generator, device, precision)
        self.root = engine_dir(engine_root)
        self.validate_on_source = validate_on_source
        self.tried: list[str] = []
        self.fallback = None
        self._load_or_build(self.precision)

    def _load_or_build(self, precision: str) -> None:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        env = trt_environment(self.device)
        specs = engine_specs(self.generator, precision, env)
        gen = reduced_precision_copy(self.generator, dtype)
        graphs = {"motion": MotionEncoderGraph(gen).eval(), "synthesis": SynthesisGraph(gen).eval()}
        mods = {}
        for g in GRAPHS:
            path, ok, why = lookup(self.root, specs[g], ".ep")
            if ok:
                mods[g] = load_engine(path)
                continue
            log(f"tensorrt: building the {precision} {g} engine for {env['gpu']} ({why}); "
                f"this takes a few minutes, once → {path}")
            inputs = graphs[g].example_inputs(1, dtype, self.device)
            mods[g] = build_engine(graphs[g].to(self.device), inputs, path, specs[g], self.device)
        self.precision, self.dtype = precision, dtype
        self.motion_fn, self.synth_fn = mods["motion"], mods["synthesis"]
        self.tried.append(precision)

    def encode_source(self, img: torch.Tensor) -> SourceState:
        state = super().encode_source(img)
        if self.validate_on_source and self.validated is None and self.fallback is None:
            self.check_and_fallback(img)
            state.feats = [f.to(self.active.dtype) for f in state.feats]
        return state

    @property
    def active(self):
        """The backend really doing the per-frame work (self, or the fallback after a failed check)."""
        return self.fallback or self

    def check_and_fallback(self, image: torch.Tensor | None = None) -> list[Check]:
        """Validate against fp32 eager; on failure walk fp16 → fp32 → ``compile``, warning each step."""
        while True:
            checks = self.validate(image)
            if all(c.ok for c in checks):
                return checks
            step = next_fallback(self.precision, self.tried)
            detail = "; ".join(str(c) for c in checks if not c.ok)
            if step == "fp32":
                log(f"WARNING: tensorrt {self.precision} engine failed its check against fp32 eager ({detail}); "
                    f"rebuilding in fp32")
                self._load_or_build("fp32")
                continue
            if step == "compile":
                from .compiled import CompileBackend

                log(f"WARNING: tensorrt engines failed their check against fp32 eager ({detail}); "
                    f"falling back to the compile backend")
                self.tried.append("compile")
                self.fallback = CompileBackend(self.generator, self.device, "fp32")
                self.precision, self.dtype = "fp32", torch.float32
                self.motion_fn, self.synth_fn = self.fallback.motion_fn, self.fallback.synth_fn
                return checks
            raise RuntimeError(f"tensorrt: no working engine ({detail})")

    def describe(self) -> str:
        if self.fallback is not None:
            return f"tensorrt → fallback {self.fallback.describe()}"
        return f"tensorrt (Torch-TensorRT, {self.precision}, {self.device})"


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


register_backend(BackendInfo("tensorrt", TensorRTBackend, _available, priority=100, precisions=("fp16", "fp32"),
                              default_precision="fp16"))
