"""The server's model thread: every client's work goes through one queue and one Animator, in batches.

A step that arrives waits at most ``window`` seconds for steps of the other clients that are active (sent a
step in the last second); whatever has arrived then runs as ONE motion-encoder pass and ONE synthesis pass
over the stacked crops, latents and per-client source features. A lone client never waits (nobody else is
active). A connection has at most a few requests waiting (its handler reads ahead, up to
:data:`~lia_live.remote.server.READ_AHEAD`, so the next frame is decoded and queued while this one runs), so no
client can queue up work: the newest frame wins on the client's side.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from ..animator import Animator
from ..backends import SourceState
from ..log import log

FRAME = "frame"  # a plan's alpha/reference: this request's own crop's α
STORED = "stored"  # a plan's reference: the one the session stored
ACTIVE_SECONDS = 1.0


@dataclass
class Plan:
    """How to render one step: α (``FRAME`` or a vector; None: the portrait as it is), the reference
    (``FRAME``, ``STORED`` or None: absolute), power and offset."""

    alpha: str | np.ndarray | None
    ref: str | np.ndarray | None
    power: float
    offset: np.ndarray | None
    source: int = 0  # the session's source id at the time the request was read (requests may be read ahead)
    stored: torch.Tensor | None = None  # the session's stored reference then (for ``ref`` STORED)


@dataclass(eq=False)
class Session:
    """One client's state on the server, for the connection's life."""

    id: str
    peer: str
    sources: dict[int, SourceState] = field(default_factory=dict)  # filled by the model thread
    source: int | None = None  # the selected source id (the event loop's thread: as requests are read)
    ref: torch.Tensor | None = None  # (1, M) the stored reference (idem)
    next_source: int = 0  # ids are given as requests are read; the model thread encodes them in order
    last_step: float = 0.0
    codec: str = "jpeg"  # how this client's results are sent back
    quality: int = 90
    failed: str | None = None  # why the server dropped it (a model step that raised)
    last_done: float = 0.0  # when its last step was done (the model thread)


@dataclass
class Job:
    session: Session
    kind: str  # "source" | "step"
    image: torch.Tensor | None  # (1, 3, S, S) in [-1, 1] on the CPU (converted by the event loop's thread)
    plan: Plan | None = None
    source: int = 0  # a "source" job: the id it will have
    future: Future = field(default_factory=Future)
    t0: float = field(default_factory=time.perf_counter)


@dataclass
class StepResult:
    alpha: torch.Tensor | None  # (1, M) on the CPU
    image: torch.Tensor | None  # (1, 3, S, S) on the CPU, unclamped (to uint8 on the event loop's thread)
    server_s: float
    batch: int


class ModelWorker:
    """Runs jobs on the animator in one thread; :meth:`submit` is thread-safe and returns a Future."""

    def __init__(self, anim: Animator, window_s: float = 0.008, max_batch: int = 8):
        self.anim = anim
        self.window = max(0.0, float(window_s))
        self.max_batch = max(1, int(max_batch))
        self.batches: list[int] = []  # size of every step batch run (bounded: the last 10 000)
        self._q: queue.Queue[Job | None] = queue.Queue()
        self._carry: list[Job] = []
        self._sessions: set[Session] | None = None
        self._thread = threading.Thread(target=self._run, name="remote-model", daemon=True)
        self._thread.start()

    def watch(self, sessions) -> None:
        """The server's live sessions (a set), for counting the active clients."""
        self._sessions = sessions

    def submit(self, job: Job) -> Future:
        if job.kind == "step":
            job.session.last_step = time.perf_counter()
        self._q.put(job)
        return job.future

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5)

    def _active(self) -> int:
        now = time.perf_counter()
        return sum(1 for s in list(self._sessions or ()) if now - s.last_step < ACTIVE_SECONDS)

    def _next(self, timeout: float | None) -> Job | None:
        if self._carry:
            return self._carry.pop(0)
        return self._q.get(timeout=timeout) if timeout is not None else self._q.get()

    def _gather(self, first: Job) -> list[Job]:
        jobs = [first]
        deadline = first.t0 + self.window
        want = min(self.max_batch, self._active())
        while len(jobs) < want:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                job = self._q.get(timeout=left)
            except queue.Empty:
                break
            if job is None:  # closing: run what was gathered, then stop
                self._q.put(None)
                break
            if job.kind != "step":
                self._carry.append(job)
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        try:
            self.anim.warm_up()  # on the thread that makes every model call (compiled / CUDA-graph backends)
        except Exception as e:  # noqa: BLE001 - the first frames pay for it instead; the server still serves
            log(f"warning: warming the backend up failed ({type(e).__name__}: {e}); going on without")
        while True:
            job = self._next(None)
            if job is None:
                return
            jobs = self._gather(job) if job.kind == "step" and self.window > 0 else [job]
            try:
                with torch.inference_mode():
                    if job.kind == "source":
                        job.future.set_result(self._source(job))
                    else:
                        self._steps(jobs)
            except Exception as e:  # noqa: BLE001 - reported to each waiting client's handler, never lost
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)

    def _source(self, job: Job) -> tuple[int, SourceState]:
        assert job.image is not None
        state = self.anim.set_source_tensor(job.image)
        job.session.sources[job.source] = state
        return job.source, state

    def _steps(self, jobs: list[Job]) -> None:
        dev = self.anim.device
        moving = [j for j in jobs if j.image is not None]
        alphas: dict[int, torch.Tensor] = {}
        host: dict[int, torch.Tensor] = {}
        if moving:
            x = _stack([j.image for j in moving if j.image is not None]).to(dev)  # (B, 3, S, S)
            a = self.anim.motion(x)  # (B, M)
            a_host = a.float().cpu()  # one copy for the replies; the latents use the device's
            alphas = {id(j): a[i:i + 1] for i, j in enumerate(moving)}
            host = {id(j): a_host[i:i + 1] for i, j in enumerate(moving)}
        drawn = [j for j in jobs if j.plan is not None]
        images: dict[int, torch.Tensor] = {}
        if drawn:
            latents, feats = [], []
            for j in drawn:
                latent, src = self._latent(j, alphas.get(id(j)))
                latents.append(latent)
                feats.append(src.feats)
            # one client: its portrait's features as they are (stacking copies ~2 MB per step for the demo model)
            levels = feats[0] if len(feats) == 1 else [torch.cat([f[k] for f in feats]) for k in range(len(feats[0]))]
            out = self.anim.backend.synthesize(_stack(latents), levels).float().cpu()  # (B, 3, S, S): one copy
            images = {id(j): out[i:i + 1] for i, j in enumerate(drawn)}
        self.batches = self.batches[-9999:] + [len(jobs)]
        done = time.perf_counter()
        for j in jobs:  # a request read ahead waited for its client's previous one: that wait is the previous one's
            start, j.session.last_done = max(j.t0, j.session.last_done), done
            j.future.set_result(StepResult(host.get(id(j)), images.get(id(j)), done - start, len(jobs)))

    def _latent(self, job: Job, alpha: torch.Tensor | None) -> tuple[torch.Tensor, SourceState]:
        s, plan = job.session, job.plan
        assert plan is not None
        src = s.sources[plan.source]
        dev = self.anim.device
        frame = isinstance(plan.alpha, str)
        a: torch.Tensor | None = alpha
        if not frame:
            a = None if plan.alpha is None else torch.from_numpy(plan.alpha).to(dev)
        if frame and a is None:
            raise ValueError("a plan asks for the frame's motion but the step has no frame")
        ref: torch.Tensor | None
        if isinstance(plan.ref, np.ndarray):
            ref = torch.from_numpy(plan.ref)
        else:
            ref = a if plan.ref == FRAME else plan.stored if plan.ref == STORED else None
        if isinstance(plan.ref, str) and plan.ref == STORED and ref is None:
            raise ValueError("a plan asks for the stored reference but none was sent")
        if ref is not None:
            ref = ref.to(dev)
        off = None if plan.offset is None else torch.from_numpy(plan.offset).to(dev)
        self.anim.source = src
        return self.anim.latent(a, ref, plan.power, off), src  # (1, D)


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the batch (a single part as it is: no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
