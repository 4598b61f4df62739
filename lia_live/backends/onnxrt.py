"""``onnxruntime``: the two per-frame graphs exported to ONNX (opset 18) and run by ONNX Runtime.

The ONNX files are built once per weights / resolution / exporter version and kept in the engine cache
(``cache.engine_dir()``: ``$LIA_ENGINE_DIR`` or ``~/.cache/lia-live/engines``; the same files ``trtexec``
takes). CPU execution provider everywhere; the CUDA
execution provider when the device is CUDA and ``onnxruntime-gpu`` is installed. fp32 only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..model import Generator
from .base import BackendInfo, BackendOption, register_backend
from .cache import EngineSpec, commit, engine_dir, lookup, weights_hash
from .export import DEFAULT_OPSET, export_onnx
from .graph import GraphBackend, log


def onnx_specs(generator: Generator, opset: int = DEFAULT_OPSET) -> dict[str, EngineSpec]:
    """Cache specs of the two ONNX graphs (fp32): weights, size, opset and the exporting torch version."""
    w = weights_hash(generator)
    extra = {"opset": opset, "torch": torch.__version__.split("+")[0]}
    return {g: EngineSpec("onnx", g, w, generator.config.size, "fp32", extra) for g in ("motion", "synthesis")}


def ensure_onnx(generator: Generator, root: str | os.PathLike | None = None,
                opset: int = DEFAULT_OPSET) -> dict[str, os.PathLike]:
    """Paths of up-to-date ONNX files for both graphs, exporting them first if missing or stale."""
    root = engine_dir(root)
    specs = onnx_specs(generator, opset)
    found = {g: lookup(root, s, ".onnx") for g, s in specs.items()}
    if all(ok for _, ok, _ in found.values()):
        return {g: p for g, (p, _, _) in found.items()}
    why = next(w for _, ok, w in found.values() if not ok)
    log(f"onnxruntime: exporting the motion and synthesis graphs to ONNX in {root}/ ({why})")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=root))  # private: parallel exports never collide
    try:
        paths = export_onnx(generator, tmp, opset=opset)
        for g, (dest, _, _) in found.items():
            def copy(t: Path, src: Path = paths[g]) -> None:
                shutil.copyfile(src, t)

            commit(dest, specs[g], copy)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {g: p for g, (p, _, _) in found.items()}


class OnnxRuntimeBackend(GraphBackend):
    name = "onnxruntime"

    def __init__(self, generator: Generator, device="cpu", precision="fp32",
                 engine_root: str | os.PathLike | None = None, threads: int | None = None,
                 spin: bool = False):
        super().__init__(generator, device, precision)
        import onnxruntime as ort

        paths = ensure_onnx(self.generator, engine_root)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        # Busy-waiting worker threads steal the CPU from capture / face tracking in the live loop.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError("onnxruntime on CUDA needs onnxruntime-gpu (CUDAExecutionProvider not found)")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        self.providers = providers
        self._motion = ort.InferenceSession(str(paths["motion"]), so, providers=providers)
        self._synth = ort.InferenceSession(str(paths["synthesis"]), so, providers=providers)
        self._synth_names = [i.name for i in self._synth.get_inputs()]
        self._motion_name = self._motion.get_inputs()[0].name

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).contiguous().numpy()

    def motion_fn(self, img: torch.Tensor) -> torch.Tensor:
        out = self._motion.run(None, {self._motion_name: self._np(img)})[0]  # (1, M)
        return torch.from_numpy(out).to(self.device)

    def synth_fn(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        feed = {n: self._np(t) for n, t in zip(self._synth_names, (latent, *feats))}
        return torch.from_numpy(self._synth.run(None, feed)[0]).to(self.device)  # (1, 3, S, S)

    def describe(self) -> str:
        prov = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        return f"onnxruntime ({prov}, {self.precision}, {self.device})"


def _available(device: torch.device) -> tuple[bool, str]:
    for mod in ("onnxruntime", "onnx", "onnxscript"):
        if importlib.util.find_spec(mod) is None:
            return False, f"{mod} not installed (pip install .[onnx])"
    if device.type == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    elif device.type != "cpu":
        return False, f"onnxruntime backend supports cpu and cuda, not {device.type}"
    return True, "ONNX Runtime"


# On CPU, auto prefers ONNX Runtime: as fast as inductor in fp32 here, steady under load from other
# processes (no OpenMP busy-waiting), and its exported files are cached on disk (fast restarts).
register_backend(BackendInfo(
    "onnxruntime", OnnxRuntimeBackend, _available, priority=10, precisions=("fp32",), cpu_priority=30,
    options=(BackendOption("threads", "intra-op threads (default: torch's thread count)", kind="int",
                           range=(1, 4 * (os.cpu_count() or 1))),
             BackendOption("spin", "let idle worker threads busy-wait (faster alone, steals CPU in the live loop)",
                           kind="bool"))))
