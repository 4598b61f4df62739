"""Per-stage timing, fps and capture→send latency of the live loop (constant memory, thread-safe)."""

from __future__ import annotations

import threading
import time
from collections import deque

STAGES = ("capture", "track", "preprocess", "motion", "synthesis", "compose", "send")
REMOTE = ("rtt", "server")  # remote mode (lia_live.remote): each request's round trip and the server's share of it


class StageTimer:
    """Per-stage times: running totals for the whole run, and a bounded recent window.

    The first frame of each stage is kept apart (``first_frame_ms``): it holds one-off work such as
    compiling a backend's graphs, which would otherwise dominate the run's means. Stages run in several
    threads; every method takes the timer's lock.
    """

    def __init__(self, window: int = 120):
        self.total = {s: 0.0 for s in STAGES + REMOTE}
        self.count = {s: 0 for s in STAGES + REMOTE}
        self.first: dict[str, float] = {}
        self.recent: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES + REMOTE}
        self.latency: deque = deque(maxlen=window)
        self.latency_total = 0.0
        self.latency_first: float | None = None
        self.frames = 0
        self.sent = 0
        self.no_face = 0
        self.dropped = 0
        self.start = time.perf_counter()
        self.steady_start: float | None = None
        self._stamps: deque = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.recent[stage].append(seconds)
            if stage not in self.first:
                self.first[stage] = seconds
                return
            self.total[stage] += seconds
            self.count[stage] += 1

    def frame_done(self, t_capture: float, t_sent: float) -> None:
        with self._lock:
            self.frames += 1
            self.latency.append(t_sent - t_capture)
            if self.latency_first is None:
                self.latency_first = t_sent - t_capture
                self.steady_start = t_sent
            else:
                self.latency_total += t_sent - t_capture
            self._stamps.append(t_sent)

    def fps(self) -> float:
        with self._lock:
            if len(self._stamps) < 2:
                return 0.0
            return (len(self._stamps) - 1) / max(1e-9, self._stamps[-1] - self._stamps[0])

    def recent_ms(self) -> dict[str, float]:
        with self._lock:
            return {s: 1e3 * sum(v) / len(v) for s, v in self.recent.items() if v}

    def summary(self) -> dict:
        """Whole-run figures; means, latency and ``steady_fps`` exclude the first (warm-up) frame.

        ``stage_sum_ms`` adds up the stage means: what one frame would cost with the stages run one after
        another; ``steady_fps`` against ``1000 / stage_sum_ms`` shows what running them concurrently gains.
        """
        with self._lock:
            now = time.perf_counter()
            elapsed = now - self.start
            mean = {s: 1e3 * self.total[s] / self.count[s] for s in STAGES if self.count[s]}
            steady = self.frames - 1
            steady_s = (self._stamps[-1] - self.steady_start) if steady > 0 and self.steady_start else 0.0
            stage_sum = sum(mean.values())
            remote = {s: round(1e3 * self.total[s] / self.count[s], 3) for s in REMOTE if self.count[s]}
            return {"frames": self.frames, "frames_sent": self.sent, "frames_without_face": self.no_face,
                    "frames_dropped": self.dropped,
                    "elapsed_s": round(elapsed, 3), "fps": round(self.frames / elapsed, 3) if elapsed > 0 else 0.0,
                    "steady_fps": round(steady / steady_s, 3) if steady_s > 0 else None,
                    "stage_ms_mean": {k: round(v, 3) for k, v in mean.items()},
                    "stage_sum_ms": round(stage_sum, 3),
                    "first_frame_ms": {k: round(1e3 * v, 3) for k, v in self.first.items()},
                    "latency_ms_mean": round(1e3 * self.latency_total / steady, 3) if steady > 0 else None,
                    **({"remote_ms_mean": remote} if remote else {})}

    def snapshot(self) -> dict:
        """The latest numbers over the recent window: frames, fps, capture→send latency, per-stage ms,
        frames dropped and without a face (what a front end shows)."""
        ms = self.recent_ms()
        fps = self.fps()
        with self._lock:
            lat = 1e3 * sum(self.latency) / len(self.latency) if self.latency else 0.0
            return {"frames": self.frames, "fps": round(fps, 3), "latency_ms": round(lat, 3),
                    "stage_ms": {k: round(v, 3) for k, v in ms.items()}, "dropped": self.dropped,
                    "no_face": self.no_face}

    def line(self) -> str:
        return stats_line(self.snapshot())


def stats_line(snapshot: dict) -> str:
    """One line of a :meth:`StageTimer.snapshot`: fps, latency, the per-stage ms (and remote mode's)."""
    ms = snapshot["stage_ms"]
    stages = " ".join(f"{s} {ms[s]:.1f}" for s in STAGES if s in ms)
    remote = " ".join(f"{s} {ms[s]:.1f}" for s in REMOTE if s in ms)
    tail = f" | remote ms: {remote}" if remote else ""
    return f"{snapshot['fps']:.1f} fps | latency {snapshot['latency_ms']:.0f} ms | ms: {stages}{tail}"
