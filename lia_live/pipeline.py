"""Stages that run concurrently, joined by bounded hand-offs, so throughput is the slowest stage, not the sum.

A :class:`Handoff` joins two stages. ``newest_only`` (live cameras): holding one item, a new ``put``
replaces a pending one that the next stage has not taken yet (counted in ``dropped``), so a slow stage
always works on the newest frame and latency stays bounded. Otherwise (files): items are delivered in
order and ``put`` waits while ``capacity`` items are pending, so every frame arrives exactly once.

:class:`StageThread` runs ``fn(item) -> item | None`` over its inbox into its outbox until the inbox
ends (``close``) or the shared stop event is set; an exception stops the whole pipeline and is re-raised
by :meth:`Pipeline.raise_errors` in the caller's thread.

A stage may have an ``on_start`` callable, run on the stage's own thread before it takes its first item
(warming a model up on the thread that will call it: torch.compile's CUDA-graph state is per thread).
:meth:`Pipeline.start` returns only once every stage's ``on_start`` has returned (or failed), and no stage
takes an item before that: nothing runs beside a CUDA-graph capture, and the first frame does not stall.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_END = object()


class Handoff:
    """A bounded single-producer/single-consumer hand-off (see the module docstring)."""

    def __init__(self, newest_only: bool, capacity: int = 2, name: str = "handoff"):
        self.newest_only = newest_only
        self.capacity = 1 if newest_only else max(1, capacity)
        self.name = name
        self.dropped = 0
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Hand ``item`` on; False when the pipeline is stopping (the item was not delivered)."""
        with self._cond:
            if self.newest_only:
                if self._items:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not stop.is_set():
                    self._cond.wait(0.05)
                if stop.is_set():
                    return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """No more items will come: the consumer sees the end once it has taken the pending ones."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, stop: threading.Event, timeout: float | None = None) -> Any:
        """The next item; ``None`` after ``timeout`` with nothing pending; :data:`END` at the end or on stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed or stop.is_set():
                    return _END
                wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if wait <= 0:
                    return None
                self._cond.wait(wait)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        return len(self._items)


END = _END


class StageThread(threading.Thread):
    """Runs ``fn`` over ``inbox`` (None: a source stage, ``fn(None)`` called until it returns END) into ``outbox``;
    ``on_start()`` first, on this thread, then it waits until every stage of the pipeline has started."""

    def __init__(self, name: str, fn: Callable[[Any], Any], inbox: Handoff | None, outbox: Handoff,
                 pipeline: Pipeline, on_start: Callable[[], Any] | None = None):
        super().__init__(name=f"lia-{name}", daemon=True)
        self.fn, self.inbox, self.outbox, self.pipeline = fn, inbox, outbox, pipeline
        self.on_start = on_start
        self.ready = threading.Event()  # set once on_start has returned or failed

    def run(self) -> None:
        stop = self.pipeline.stop
        try:
            try:
                if self.on_start is not None:
                    self.on_start()
            finally:
                self.ready.set()
            while not self.pipeline.go.wait(0.05):  # every stage's on_start has returned
                if stop.is_set():
                    return
            while not stop.is_set():
                item = None if self.inbox is None else self.inbox.get(stop, timeout=None)
                if item is END:
                    break
                out = self.fn(item)
                if out is END:
                    break
                if out is not None and not self.outbox.put(out, stop):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.pipeline.fail(e)
        finally:
            self.outbox.close()


class Pipeline:
    """A chain of :class:`StageThread` s ending in a hand-off that the caller's thread consumes."""

    def __init__(self, stop: threading.Event | None = None):
        self.stop = stop or threading.Event()
        self.go = threading.Event()  # set by start() once every stage's on_start has returned
        self.threads: list[StageThread] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def stage(self, name: str, fn: Callable[[Any], Any], inbox: Handoff | None, outbox: Handoff,
              on_start: Callable[[], Any] | None = None) -> Handoff:
        self.threads.append(StageThread(name, fn, inbox, outbox, self, on_start))
        return outbox

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)
        self.stop.set()

    def start(self, stop: threading.Event | None = None) -> None:
        """Start every stage; return once each has run its ``on_start`` (the stages then take items), or
        as soon as ``stop`` (the caller's: Ctrl-C, a window closed) is set — the pipeline then stops too."""
        for t in self.threads:
            t.start()
        for t in self.threads:
            while not t.ready.wait(0.1):
                if stop is not None and stop.is_set():
                    self.stop.set()
                    break
        self.go.set()

    def raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    def join(self, timeout: float = 10.0) -> None:
        """Stop and wait for every stage thread (each finishes the item it is working on)."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


class BackgroundSink:
    """Calls ``fn(item)`` for every :meth:`put` item, in order, in its own thread (e.g. video encoding off
    the model's or the UI's thread). A failure in ``fn`` is re-raised by the next :meth:`put` or by
    :meth:`finish`; ``put`` waits while ``capacity`` items are pending."""

    def __init__(self, fn: Callable[[Any], None], name: str, capacity: int = 8):
        self.fn = fn
        self.pipe = Pipeline()
        self.inbox = Handoff(newest_only=False, capacity=capacity, name=name)
        self.pipe.stage(name, self._call, self.inbox, Handoff(newest_only=False, name=f"{name}-done"))
        self.pipe.start()

    def _call(self, item: Any) -> None:
        self.fn(item)

    def put(self, item: Any) -> None:
        self.pipe.raise_errors()
        self.inbox.put(item, self.pipe.stop)
        self.pipe.raise_errors()

    def finish(self) -> None:
        """Wait until every item went through ``fn``; re-raise its failure."""
        self.inbox.close()
        for t in self.pipe.threads:
            while t.is_alive():
                t.join(0.1)
        self.pipe.raise_errors()

    def cancel(self) -> None:
        """Stop without waiting for pending items (after an error elsewhere)."""
        self.pipe.join()
