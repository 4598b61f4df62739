"""Run every call of a backend on one long-lived thread, whichever thread calls.

Why: in torch 2.11 the state of ``torch.compile``'s CUDA graphs (cudagraph trees) is per thread
(pytorch/pytorch#123177, fixed in a later release): a warm-up on one thread followed by calls from another
fails with an assertion inside inductor. Callers change threads — the live loop's model stage is a new thread
per session, and the control panel starts sessions again with the same animator — so the compiled backend
hands each call to its own thread instead. The call runs in the caller's autograd mode (grad / no-grad /
inference mode are per thread too), on the caller's CUDA stream and device, and its exception is re-raised in
the caller. The hand-off costs a few tens of microseconds against milliseconds of model work.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import torch


class OneThread:
    """``call(fn, *args)`` runs ``fn(*args)`` on this object's thread (a daemon) and returns its result."""

    def __init__(self, name: str, device: torch.device):
        self.device = device
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self._jobs.get()()

    def _enter(self, stack: contextlib.ExitStack, inference: bool, grad: bool, stream: Any) -> None:
        """Enter, on this thread, the caller's autograd mode and CUDA stream (read on the caller's thread:
        context managers such as ``set_grad_enabled`` act when made, so they are made here)."""
        if inference:
            stack.enter_context(torch.inference_mode())
        else:
            stack.enter_context(torch.set_grad_enabled(grad))
        if stream is not None:
            stack.enter_context(torch.cuda.device(self.device))
            stack.enter_context(torch.cuda.stream(stream))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if threading.get_ident() == self.thread.ident:
            return fn(*args)
        state = (torch.is_inference_mode_enabled(), torch.is_grad_enabled(),
                 torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None)
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                with contextlib.ExitStack() as stack:
                    self._enter(stack, *state)
                    box["out"] = fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                box["error"] = e
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["out"]
