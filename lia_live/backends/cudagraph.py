"""``cudagraph``: the eager per-frame graphs captured as CUDA graphs — fast, and ready in about a second.

NOT RUN ON A GPU YET: this module was written from the PyTorch "CUDA Graphs" documentation without a
machine to run it (see docs/engines.md); ``scripts/gpu_check.sh`` and ``tests/test_gpu.py`` are the checks
a GPU session runs first. The capture logic around the CUDA calls is tested on CPU with a stand-in graph.

Why: on CUDA the eager model is launch-bound (about 67 convolutions plus pointwise ops per frame, each a
Python dispatch: 9.7 ms fp32 / 11.1 ms fp16 per frame on an H200). Replaying a captured graph issues the
same kernels with one launch; ``torch.compile(mode="reduce-overhead")`` does this plus fusion (3.6 ms fp16
measured) but needs ~48 s of compilation, where a capture takes well under a second.

How (per graph — motion encoder, synthesis — and per batch size, captured on first use; ``warmup()`` captures
batch 1 before the live loop's stages start, on the model stage's thread):
- static input buffers are allocated once; each call copies its inputs into them;
- the model (an fp16 cast copy with ToFlow kept fp32, see ``graph.reduced_precision_copy``) runs a few
  warm-up iterations on a side stream, then ``torch.cuda.graph(g, pool=..., capture_error_mode="thread_local")``
  captures one iteration, inside ``torch.cuda.device`` of the inputs (see :func:`capture_cuda_graph`);
  all graphs of the backend share one memory pool (option ``share-pool``, on by default), which is safe
  because replays never overlap: a lock serialises them and each is issued on the caller's current stream
  — callers that replay this backend's graphs from threads on *different* streams should turn the
  option off (each graph then gets its own pool: more memory);
- the six source feature maps are copied into the synthesis graph only when the source changes;
- each call replays the graph and returns a *clone* of the static output: the next replay of this graph,
  or of another graph in the shared pool, overwrites the static output in place.
Shapes are static inside a graph: a new batch size captures a new graph (well under a second each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import UserError
from ..model import Generator
from .base import BackendInfo, BackendOption, register_backend
from .export import MotionEncoderGraph, SynthesisGraph
from .graph import CHECK_HELP, GraphBackend, reduced_precision_copy

Capture = Callable[[Callable[..., torch.Tensor], list[torch.Tensor], object, int],
                   tuple[object, torch.Tensor]]


def capture_cuda_graph(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], pool,
                       warmup: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm ``fn(*inputs)`` up on a side stream, then capture one call into a CUDA graph (not run on a GPU yet).

    Returns (graph, static output). ``inputs`` must be the static buffers later calls copy into.
    - ``torch.cuda.device(device)``: streams, the pool and the capture belong to the inputs' GPU, not to the
      current device (``--device cuda:1``);
    - ``capture_error_mode="thread_local"``: ``torch.cuda.graph`` empties the allocator's cache before it
      captures, so another thread's next allocation (the track stage, a frame upload) is a ``cudaMalloc``,
      which the default "global" mode forbids during any capture (error 900, capture invalidated:
      pytorch/pytorch#107407, the reason Inductor captures thread-locally). Only this thread's calls are
      checked; other threads' work goes on their own streams and allocations outside the graph's pool.
    """
    device = inputs[0].device
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(warmup):
                fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            out = fn(*inputs)
    return graph, out


def _identity(x: torch.Tensor) -> tuple:
    """What makes two calls' tensors the same data: memory, layout and (for ordinary tensors) the version
    counter, which in-place writes bump (inference tensors have none; nothing writes source features)."""
    version = None if x.is_inference() else x._version
    return (x.untyped_storage().data_ptr(), x.storage_offset(), tuple(x.shape), x.stride(), x.dtype, version)


class StaticGraph:
    """``fn`` captured over static input buffers shaped like ``example``; calls copy in, replay, clone out.

    Inputs listed in ``static`` (the six source feature maps of the synthesis: ~31 MB at batch 1, ~1 GB at
    batch 32) are copied only when a call passes other data than the last copy (another source, another
    view): the last copied tensor is held, so its memory cannot be reused by a new tensor that would look
    the same. ``copies[i]`` counts the copies into input ``i``.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], example: Sequence[torch.Tensor], pool, warmup: int = 3,
                 capture: Capture = capture_cuda_graph, static: Sequence[int] = ()):
        self.graph: Any = None  # torch.cuda.CUDAGraph (or a stand-in in tests)
        self.static = frozenset(static)
        with torch.inference_mode(False):  # ordinary tensors: calls copy into them in and out of inference mode
            self.inputs = [torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in example]  # static
        self.copies = [0] * len(self.inputs)
        self._held: list[tuple[torch.Tensor, tuple] | None] = [None] * len(self.inputs)
        self._fill(example)
        self.graph, self.output = capture(fn, self.inputs, pool, warmup)
        self.replays = 0

    def _fill(self, xs: Sequence[torch.Tensor]) -> None:
        if len(xs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(xs)}")
        for buf, x in zip(self.inputs, xs):
            if x.shape != buf.shape:
                raise ValueError(f"static graph input of shape {tuple(buf.shape)} got {tuple(x.shape)}")
        for i, (buf, x) in enumerate(zip(self.inputs, xs)):
            if i in self.static:
                key = _identity(x)
                held = self._held[i]
                if held is not None and held[1] == key:
                    continue  # the same source features as last time: already in the buffer
                self._held[i] = (x, key)
            buf.copy_(x)  # converts dtype; broadcast views (expanded source features) copy fine
            self.copies[i] += 1

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        self._fill(xs)
        self.graph.replay()
        self.replays += 1
        return self.output.clone()  # the next replay (of any graph in the pool) overwrites self.output


class CudaGraphBackend(GraphBackend):
    """Per-frame graphs replayed from CUDA graphs; one graph per (graph, batch size), captured lazily."""

    name = "cudagraph"
    max_batch = None
    prefers_batch = True

    warmup_calls = 1  # one call per graph captures it (the capture runs its own warm-up iterations)

    def __init__(self, generator: Generator, device="cuda", precision="fp16", warmup: int = 3,
                 share_pool: bool = True, capture: Capture | None = None, check: bool = True):
        super().__init__(generator, device, precision)
        if capture is None:
            if self.device.type != "cuda":
                raise UserError(f"cudagraph backend needs a CUDA device, not {self.device}")
            capture = capture_cuda_graph
        if warmup < 1:
            raise UserError(f"cudagraph option warmup must be >= 1, got {warmup}")
        self._capture, self.warmup_iters, self.share_pool = capture, warmup, share_pool
        self._lock = threading.Lock()
        self.check_on_source = check  # reduced precision: checked against fp32 on the first source
        self._build()

    def _build(self) -> None:
        """The graphs' model at the current precision (ToFlow stays fp32); captured graphs are dropped."""
        model = reduced_precision_copy(self.generator, self.dtype)
        self._motion = MotionEncoderGraph(model).eval()
        self._synth = SynthesisGraph(model).eval()
        with self._lock:
            self._pool: Any = None
            self.graphs: dict[tuple[str, int], StaticGraph] = {}

    def use_fp32(self) -> None:
        self.precision, self.dtype = "fp32", torch.float32
        self._build()

    def _pool_handle(self):
        if not self.share_pool or self._capture is not capture_cuda_graph:
            return None  # None: the capture makes a private pool for this graph
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        return self._pool

    def _run(self, kind: str, fn: Callable[..., torch.Tensor], *xs: torch.Tensor,
             static: Sequence[int] = ()) -> torch.Tensor:
        key = (kind, xs[0].shape[0])
        with self._lock:  # captures and replays never overlap (shared pool, static buffers)
            if key not in self.graphs:
                self.graphs[key] = StaticGraph(fn, xs, self._pool_handle(), self.warmup_iters, self._capture,
                                               static=static)
            return self.graphs[key](*xs)

    def motion_fn(self, img: torch.Tensor) -> torch.Tensor:
        return self._run("motion", self._motion, img)  # (B, M)

    def synth_fn(self, latent: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        # the source features change only with the source: copied into the graph only then
        return self._run("synthesis", self._synth, latent, *feats, static=range(1, 1 + len(feats)))  # (B, 3, S, S)

    def describe(self) -> str:
        return f"cudagraph (CUDA graphs of eager, {self.precision}, {self.device})"


def _available(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda":
        return False, "CUDA graphs need a CUDA device"
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    return True, "PyTorch CUDA graphs (captures in about a second)"


# On CUDA without TensorRT, auto picks this: ready in about a second (torch.compile needs ~48 s cold), and
# it removes the launch overhead that dominates eager there. See docs/engines.md for what was measured.
register_backend(BackendInfo(
    "cudagraph", CudaGraphBackend, _available, priority=50, precisions=("fp16", "fp32", "bf16"),
    default_precision="fp16", batch_friendly=True,
    options=(BackendOption("warmup", "warm-up runs on a side stream before each capture", kind="int",
                           range=(0, 100)),
             BackendOption("share-pool", "one memory pool for all graphs (off: callers replay from several streams)",
                           kind="bool"),
             BackendOption("check", CHECK_HELP, kind="bool"))))
