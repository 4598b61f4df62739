"""The loops that drive the stages: pipelined (track, model and compose/send each in a thread of its own)
or serial (the same stage functions one after another, ``--serial``).

The caller's thread is the sink: it composes, sends to the outputs, publishes the newest frames to the
controller and refreshes the preview window (whose keys are the hotkeys).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..capture.base import Capture, Frame
from ..log import log
from ..pipeline import END, Handoff, Pipeline
from ..settings import LiveConfig
from .controller import LiveController, PreviewFrame
from .preview import preview_picture
from .stages import LiveStages, Work, end_marker


class Sink:
    """The last stage, in the caller's thread: send to the outputs, publish the preview, print stats."""

    def __init__(self, cfg: LiveConfig, stages: LiveStages, outputs: list, window):
        self.cfg, self.stages, self.outputs, self.window = cfg, stages, outputs, window
        self.controller: LiveController = stages.controller
        self.timer = stages.timer
        self.last_out: np.ndarray | None = None
        self.next_print = time.perf_counter() + cfg.run.stats_every

    def deliver(self, works: list[Work]) -> None:
        for work in works:
            self._deliver(work)

    def _deliver(self, work: Work) -> None:
        if work.keepalive:
            if self.last_out is not None:
                self._send(self.last_out)  # keep the virtual camera alive while the camera is away
            self.poll()
            return
        out = self.stages.finish(work)
        t0 = time.perf_counter()
        self._send(out)
        t1 = time.perf_counter()
        self.timer.add("send", t1 - t0)
        self.stages.record(work)
        self.timer.frame_done(work.frame.captured, t1)
        self.last_out = out
        f = work.frame
        self.controller.publish(PreviewFrame(f.image, work.box, work.face_found, work.face, out, self.timer.sent - 1,
                                             f.captured, time.perf_counter()))
        self.poll()
        if self.cfg.run.stats_every > 0 and time.perf_counter() >= self.next_print:
            log(self.timer.line())
            self.next_print = time.perf_counter() + self.cfg.run.stats_every

    def _send(self, out: np.ndarray) -> None:
        for o in self.outputs:
            o.send(out)
        self.timer.sent += 1

    def poll(self) -> None:
        """Show the preview (if any) and apply the key pressed."""
        if self.window is None:
            return
        self.controller.handle_key(self.window.show(preview_picture(self.controller)))
        if not self.window.open:
            self.controller.end()

    def done(self) -> bool:
        m = self.cfg.run.max_frames
        return not self.controller.running or (m is not None and self.timer.frames >= m)


def reader(cap: Capture, stages: LiveStages, max_frames: int | None, idle_wait: float) -> Callable[[Any], Any]:
    """The first stage: read a frame, track, crop. At the end of the input (or after ``max_frames``) it
    returns the end marker once, then END."""
    count, ended = [0], [False]

    def end() -> Any:
        if ended[0]:
            return END
        ended[0] = True
        return end_marker()

    def read(_item) -> Any:
        if max_frames is not None and count[0] >= max_frames:
            return end()
        t0 = time.perf_counter()
        frame = cap.read(timeout=idle_wait)
        if frame is None:
            if cap.finished:
                return end()
            if cap.lost:
                return Work(Frame(np.zeros((2, 2, 3), np.uint8), time.perf_counter(), -1, 0.0), 0, keepalive=True)
            return None
        stages.timer.add("capture", time.perf_counter() - t0)
        count[0] += 1
        return stages.prepare(frame)

    return read


def serial_loop(cfg: LiveConfig, stages: LiveStages, cap: Capture, outputs: list, window,
                stop: threading.Event) -> None:
    sink = Sink(cfg, stages, outputs, window)
    read = reader(cap, stages, cfg.run.max_frames, 1.0 / (cfg.output.fps or 30.0))
    stages.warm_up()  # GPU first-run fixes: graphs captured before the first frame
    while not stop.is_set() and not sink.done():
        work = read(None)
        if work is END:
            break
        if work is None:
            sink.poll()
            continue
        sink.deliver(stages.infer(work))


def pipelined_loop(cfg: LiveConfig, stages: LiveStages, cap: Capture, outputs: list, window,
                   stop: threading.Event) -> None:
    """Track, model and compose/send run concurrently; this thread is the sink (outputs and preview)."""
    sink = Sink(cfg, stages, outputs, window)
    pipe = Pipeline(threading.Event())
    newest = cap.live
    tracked = Handoff(newest_only=newest, capacity=1, name="tracked")  # one frame waits per stage: latency
    rendered = Handoff(newest_only=newest, capacity=1, name="rendered")  # stays ~3 stage times
    limit = None if cap.live else cfg.run.max_frames  # live: frames may be dropped; the sink counts
    pipe.stage("track", reader(cap, stages, limit, 1.0 / (cfg.output.fps or 30.0)), None, tracked)
    pipe.stage("model", lambda work: stages.infer(work) or None, tracked, rendered,
               on_start=stages.warm_up)  # GPU first-run fixes: warm-up on the model stage's own thread
    pipe.start(stop)  # returns once the model stage has warmed up, or on stop
    try:
        while not stop.is_set() and not sink.done():
            works = rendered.get(stop, timeout=0.05)
            stages.timer.dropped = tracked.dropped + rendered.dropped
            if works is END:
                break
            if works is None:
                sink.poll()
                continue
            sink.deliver(works)
        pipe.raise_errors()
    finally:
        pipe.join()
        stages.timer.dropped = tracked.dropped + rendered.dropped
    pipe.raise_errors()
