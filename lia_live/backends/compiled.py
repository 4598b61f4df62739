"""``compile``: the two per-frame graphs through ``torch.compile``, its compiled code cached across processes.

Modes (backend option ``mode``):
- CPU default ``freezing``: inductor with weights folded as constants (oneDNN weight prepacking, pointwise
  fusion); the motion encoder runs channels-last. fp32 is exact to eager (~1e-6); bf16 runs the motion
  encoder on oneDNN's bf16 kernels (avx512_bf16 / AMX) while the synthesis stays fp32.
- CUDA default ``reduce-overhead``: inductor fusion + CUDA graphs (cudagraph trees). Measured on an H200
  (torch 2.11, fp16, 256²): 3.6 ms per frame, 64.9 dB PSNR against fp32, 48 s cold set-up.
- ``max-autotune`` (only when asked: ``options={"mode": "max-autotune"}`` / ``--backend-option
  mode=max-autotune``): Triton autotuning on top; on that H200 it was still autotuning after 170 s.
- ``default``: inductor without CUDA graphs.

Cache (option ``cache``, on by default): after both graphs compiled, ``torch.compiler.save_cache_artifacts()``
is written into the engine cache (``cache.engine_dir()``), keyed like the engines (weights hash, size,
precision, mode, device name, torch version); the next process loads it with
``torch.compiler.load_cache_artifacts`` before compiling, so inductor's FX-graph and autotuning caches hit.
Target (not yet measured on a GPU): second launch to first frame ≤ 10 s, cold ≤ 60 s.

The CUDA paths here are NOT RUN ON A GPU YET in this form (the reduce-overhead numbers above came from
an earlier script on the H200); ``scripts/gpu_check.sh`` checks them.
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path

import torch

from ..errors import UserError
from ..model import Generator
from .base import BackendInfo, BackendOption, register_backend
from .cache import EngineSpec, commit, engine_dir, lookup, weights_hash
from .export import MotionEncoderGraph, SynthesisGraph
from .graph import GraphBackend, check_cpu_precision, log, reduced_precision_copy, synthesis_dtype
from .onethread import OneThread

MODES = ("freezing", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


def default_mode(device: torch.device) -> str:
    """``freezing`` on CPU, ``reduce-overhead`` on CUDA."""
    return "reduce-overhead" if device.type == "cuda" else "freezing"


def compile_kwargs(mode: str) -> dict:
    """Keyword arguments of ``torch.compile`` for one of :data:`MODES`."""
    if mode == "freezing":
        return {"options": {"freezing": True}}
    if mode == "default":
        return {}
    return {"mode": mode}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device.index if device.index is not None else torch.cuda.current_device())
    return "cpu"


def compile_cache_spec(generator: Generator, precision: str, mode: str, device: torch.device) -> EngineSpec:
    """Key of the compiled-code bundle: weights, size, precision, mode, device name, torch (and CUDA) version."""
    extra = {"mode": mode, "device": device_name(device), "torch": torch.__version__,
             "cuda": torch.version.cuda if device.type == "cuda" else None}
    return EngineSpec("inductor", "both", weights_hash(generator), generator.config.size, precision, extra)


class CompileBackend(GraphBackend):
    name = "compile"

    def __init__(self, generator: Generator, device="cpu", precision="fp32", mode: str | None = None,
                 channels_last: bool | None = None, cache: bool = True,
                 engine_root: str | os.PathLike | None = None, one_thread: bool | None = None):
        super().__init__(generator, device, precision)
        check_cpu_precision(precision, self.device, self.name)
        on_cpu = self.device.type == "cpu"
        self.mode = mode or default_mode(self.device)
        if self.mode not in MODES:
            raise UserError(f"compile: unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if on_cpu and self.mode in CUDAGRAPH_MODES:
            raise UserError(f"compile: mode {self.mode} uses CUDA graphs and needs a CUDA device")
        gen = reduced_precision_copy(self.generator, self.dtype, synthesis_dtype(self.dtype, self.device))
        self.channels_last = on_cpu if channels_last is None else channels_last
        motion, synth = MotionEncoderGraph(gen).eval(), SynthesisGraph(gen).eval()
        if self.channels_last:  # on a copy: the caller's model keeps its memory format
            motion = copy.deepcopy(motion).to(memory_format=torch.channels_last)
        self.cache_path: Path | None = None
        self.cache_loaded = False
        if cache and hasattr(torch.compiler, "save_cache_artifacts"):  # torch >= 2.7; older: inductor's own cache
            self._load_cache(engine_root)
        kw = compile_kwargs(self.mode)
        self._motion = torch.compile(motion, dynamic=False, fullgraph=True, **kw)
        self._synth = torch.compile(synth, dynamic=False, fullgraph=True, **kw)
        self._cudagraphs = self.mode in CUDAGRAPH_MODES
        # cudagraph trees: a warm-up call, a recording call, then replays
        self.warmup_calls = 3 if self._cudagraphs else 1
        self._done: set[str] = set()
        # CUDA-graph modes: every call on one thread of the backend's own, whoever calls (see onethread.py)
        use_thread = self._cudagraphs if one_thread is None else one_thread
        self.worker = OneThread(f"lia-compile-{self.mode}", self.device) if use_thread else None

    def _load_cache(self, engine_root) -> None:
        self._spec = compile_cache_spec(self.generator, self.precision, self.mode, self.device)
        path, ok, why = lookup(engine_dir(engine_root), self._spec, ".bin")
        self.cache_path = path
        if ok:
            torch.compiler.load_cache_artifacts(path.read_bytes())
            self.cache_loaded = True
            log(f"compile: loaded compiled code from {path}")

    def _save_cache(self) -> None:
        if self.cache_path is None or self.cache_loaded:
            return
        artifacts = torch.compiler.save_cache_artifacts()
        if not artifacts:
            return
        data = artifacts[0]
        try:
            def write(tmp: Path) -> None:
                tmp.write_bytes(data)

            commit(self.cache_path, self._spec, write)
        except OSError as e:  # a read-only cache is no reason to stop: the next launch compiles again
            log(f"compile: could not save the compiled code to {self.cache_path} ({e})")
            return
        self.cache_loaded = True
        log(f"compile: saved the compiled code to {self.cache_path} (next launch starts faster)")

    def _call(self, kind: str, fn, *xs: torch.Tensor) -> torch.Tensor:
        if self.worker is not None and threading.get_ident() != self.worker.thread.ident:
            return self.worker.call(self._call, kind, fn, *xs)
        first = kind not in self._done
        if first and not self._done:
            log(f"compile: compiling the per-frame graphs ({self.mode}, {self.precision}, {self.device}"
                f"{', cached code found' if self.cache_loaded else ''}); the first frame takes a while")
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            out = fn(*xs).clone()  # the next replay overwrites cudagraph-tree outputs
        else:
            out = fn(*xs)
        if first:
            self._done.add(kind)
            if len(self._done) == 2:
                self._save_cache()
        return out

    def motion_fn(self, img: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        return self._call("motion", self._motion, img)

    def synth_fn(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        return self._call("synthesis", self._synth, latent, *feats)

    def describe(self) -> str:
        return f"compile ({self.mode}, {self.precision}, {self.device})"


def _available(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available"
    if device.type not in ("cpu", "cuda"):
        return False, f"torch.compile backend supports cpu and cuda, not {device.type}"
    return True, "torch.compile (inductor)"


register_backend(BackendInfo(
    "compile", CompileBackend, _available, priority=20, cuda_precision="fp16",
    options=(BackendOption("mode", "torch.compile mode (default: freezing on CPU, reduce-overhead on CUDA)",
                           choices=MODES),
             BackendOption("cache", "keep compiled code in the engine cache across processes", kind="bool"),
             BackendOption("channels-last", "run the motion encoder channels-last (default: on CPU)",
                           kind="bool"))))
