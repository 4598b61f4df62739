"""The per-frame work of the live loop, one method per pipeline stage; no cameras, windows or files.

    prepare (thread "track")  ─►  infer (thread "model")  ─►  finish (the caller's thread)
    track the face, cut the        new sources, motion encoder,     compose the output frame
    model's input                  the motion controller, synthesis

Each frame reads the :class:`~lia_live.live.controller.LiveController` once (source, pass-through, compose
mode), so a change lands at a frame boundary. ``infer`` returns a list of frames: with ``hold`` (file input,
where nothing is late) the frames of a reference window (``reference`` auto / landmarks) wait in the model
stage until the reference is chosen, or the input ends, and are then all rendered against it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..animator import Animator
from ..capture.base import Frame
from ..errors import UserError
from ..frames import HostFrames, frame_path
from ..log import plural
from ..motion import MotionArgs
from ..reference import LandmarkReader
from ..stats import StageTimer
from ..templates import MotionRecorder
from ..tracking import center_box, crop_square
from .controller import LiveController
from .sources import SourceEntry, make_source


@dataclass
class Work:
    """One frame on its way through the stages (``end``: no frame, the input ended)."""

    frame: Frame
    source_index: int
    passthrough: bool = False
    compose: str = "crop"
    face_found: bool = False
    box: Any | None = None
    model_input: torch.Tensor | None = None  # (1, 3, S, S) in [-1, 1]
    face: torch.Tensor | None = None  # (1, 3, S, S) model output
    keepalive: bool = False  # no new frame (camera lost): re-send the last output
    end: bool = False
    landmarks: bool = False  # features below were computed (reference "landmarks" wants them)
    features: Any | None = None  # the frame's landmark features (None: no face mesh)
    source_features: Any | None = None  # the portrait's
    args: MotionArgs | None = None  # what the animator rendered (recorded when the frame is sent)


def end_marker() -> Work:
    """The work item that tells the model stage the input ended (it chooses a pending reference then)."""
    return Work(Frame(np.zeros((2, 2, 3), np.uint8), time.perf_counter(), -1, 0.0), 0, end=True)


class LiveStages:
    """The per-frame work, one method per pipeline stage (see the module docstring).

    ``process(image, t)`` runs all three on one frame. ``compositor_factory(mode)`` makes a compositor for
    the compose mode; ``landmarks`` makes the face-mesh reader used while ``reference`` landmarks collects.
    """

    def __init__(self, animator: Animator, sources: list[SourceEntry], compositor_factory: Callable[[str], Any],
                 controller: LiveController, tracker=None, timer: StageTimer | None = None, recorder=None,
                 frames: HostFrames | None = None, hold: bool = False, source_crop: str = "auto",
                 landmarks: Callable[[], Any] = LandmarkReader):
        if controller.motion is None:
            raise ValueError("LiveStages needs a started LiveController (controller.start(motion, ...))")
        self.anim = animator
        self.frames = frames or frame_path("auto", animator.device)
        self.sources = sources
        self.controller = controller
        self.motion = controller.motion
        self.tracker = tracker
        self.timer = timer or StageTimer()
        if hasattr(animator, "attach_timer"):  # remote mode: round-trip and server times join the stats
            animator.attach_timer(self.timer)
        # remote mode: each crop is sent to the server as soon as it is cut (a file: up to 4 ahead; a live camera:
        # 1, so the frames its newest-frame hand-offs drop cost the server little)
        self._prefetch = getattr(animator, "prefetch", None)
        self.recorder = recorder
        self._motion_rec: tuple[str, Any] | None = None  # a recording a front end asked for: (path, recorder)
        self.hold = hold
        self.source_crop = source_crop
        self._landmarks_factory = landmarks
        self._reader: Any | None = None
        self._held: list[tuple[Work, torch.Tensor | None]] = []
        self._compositor_factory = compositor_factory
        self._compositors: dict[tuple[int, str], Any] = {}
        self._model_source = -1
        self._sync = animator.device.type == "cuda"
        # one CUDA stream per stage (each stage thread works on its own; a stage synchronises its stream before
        # handing tensors on, so the next stage may read them; not run on a GPU yet)
        self._streams = {n: torch.cuda.Stream(animator.device) for n in ("prepare", "infer", "finish")} \
            if self._sync else {}
        self.last_args: MotionArgs | None = None
        self._select_source(0)

    def say(self, line: str | None) -> None:
        self.controller.say(line)

    def close(self) -> None:
        """Save a motion recording a front end started; release the face-mesh reader (if one was made)."""
        self._save_motion()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- sources (model thread / compose thread) ----------------------------------------------------------
    def _select_source(self, i: int) -> None:
        if i == self._model_source:
            return
        entry = self.sources[i]
        if entry.state is None:
            entry.state = self.anim.set_source(entry.crop)
        self.anim.source = entry.state
        self.motion.set_source_alpha(entry.state.alpha)
        self._model_source = i

    def _add_new_sources(self) -> None:
        """Crop and encode the portraits a front end added (model thread, at a frame boundary)."""
        for new in self.controller.take_new_sources():
            try:
                entry = make_source(new.name, new.image, self.anim.size, self.source_crop)
                entry.state = self.anim.set_source(entry.crop)
            except UserError as e:
                self.say(f"warning: source {new.name} not added: {e}")
                continue
            finally:
                self._model_source = -1  # set_source replaced the animator's source: select again
            self.sources.append(entry)
            self.controller.source_added(entry.name)

    def compositor(self, i: int, mode: str | None = None):
        """The compositor for source ``i`` in compose ``mode`` (its paste-back precomputed once)."""
        mode = mode or self.controller.compose
        comp = self._compositors.get((i, mode))
        if comp is None:
            comp = self._compositor_factory(mode)
            entry = self.sources[i]
            self.frames.prepare_compositor(comp, entry.image, entry.box, self.anim.size)
            self._compositors[(i, mode)] = comp
        return comp

    # ---- warm-up: before any stage takes a frame (GPU first-run fixes, docs/engines.md) -------------------------
    @torch.inference_mode()
    def warm_up(self) -> None:
        """Capture / compile the model's graphs on the model stage's thread and stream, then wait for the
        device; the pipelined loop runs this as the model stage's ``on_start``, the serial loop first."""
        with self._stream("infer"):
            self.anim.warm_up()

    # ---- stages ------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _stream(self, name: str) -> Iterator[None]:
        """Run a stage on its own CUDA stream and wait for it at the end (no-op on CPU)."""
        stream = self._streams.get(name)
        if stream is None:
            yield
            return
        with torch.cuda.stream(stream):
            yield
        stream.synchronize()

    def _timed(self, stage: str, t0: float) -> float:
        if self._sync:
            torch.cuda.current_stream(self.anim.device).synchronize()  # honest stage times on a GPU
        t1 = time.perf_counter()
        self.timer.add(stage, t1 - t0)
        return t1

    @torch.inference_mode()
    def prepare(self, frame: Frame) -> Work:
        """Track the face and cut the model's input (stage 1). Autograd mode (and the CUDA stream) is per
        thread: each stage enters inference mode itself."""
        with self._stream("prepare"):
            return self._prepare(frame)

    @torch.inference_mode()
    def infer(self, work: Work) -> list[Work]:
        """New sources, motion encoder, the motion controller, synthesis (stage 2); the frames ready to
        compose (none while a reference window is held, several when it is released)."""
        with self._stream("infer"):
            return self._infer(work)

    @torch.inference_mode()
    def finish(self, work: Work) -> np.ndarray:
        """Compose the output frame (stage 3)."""
        with self._stream("finish"):
            return self._finish(work)

    def _prepare(self, frame: Frame) -> Work:
        index, passthrough, compose = self.controller.frame_controls()
        work = Work(frame, index, passthrough=passthrough, compose=compose)
        t0 = time.perf_counter()
        if self.tracker is not None:
            res = self.tracker.update(frame.image, frame.media_time)
            work.face_found, work.box = res.found, res.box
        else:
            work.face_found, work.box = True, center_box(frame.image)
        t0 = self._timed("track", t0)
        if work.passthrough or not work.face_found or work.box is None:
            return work
        work.model_input = self.frames.model_input(frame.image, work.box, self.anim.size)  # (1, 3, S, S)
        if self._prefetch is not None:
            self._prefetch(work.model_input, 4 if self.hold else 1)
        self._timed("preprocess", t0)
        if self.motion.needs_landmarks:
            self._add_landmarks(work)
        return work

    def _add_landmarks(self, work: Work) -> None:
        """The face-mesh features of the frame's crop and of its portrait (track thread; only while a
        ``landmarks`` reference window is open: about 20 ms per frame)."""
        if self._reader is None:
            self._reader = self._landmarks_factory()
        entry = self.sources[work.source_index]
        assert work.box is not None
        if not entry.features_done:
            entry.features, entry.features_done = self._reader.features(entry.crop), True
        work.features = self._reader.features(crop_square(work.frame.image, work.box, self.anim.size))
        work.source_features, work.landmarks = entry.features, True

    def _infer(self, work: Work) -> list[Work]:
        self._add_new_sources()
        if work.end:
            self.say(self.motion.finish_reference())
            return self._release()
        if work.keepalive:
            return [work]
        alpha = None
        if not work.passthrough:
            self._select_source(work.source_index)
            if work.landmarks:
                self._set_landmark_target(work)
            t0 = time.perf_counter()
            if work.model_input is not None:
                alpha = self.anim.motion(work.model_input)  # (1, M)
                self._timed("motion", t0)
            else:
                self.timer.no_face += 1
        if self.hold and (self._held or self.motion.collecting):
            return self._hold(work, alpha)
        return [self._render(work, alpha)]

    def _set_landmark_target(self, work: Work) -> None:
        known = self.motion.source_features_known and self.motion.source_features is work.source_features
        if not known:
            self.motion.set_source_features(work.source_features)
            if work.source_features is None:
                self.say(f"warning: «reference» landmarks: the face mesh finds no face in the portrait "
                         f"{self.sources[work.source_index].name}; the first frame becomes the reference")

    def _hold(self, work: Work, alpha: torch.Tensor | None) -> list[Work]:
        """Keep the frame until the reference window closes; then release every held frame."""
        if not work.passthrough:
            self.say(self.motion.offer(alpha, work.frame.media_time, work.features))
        self._held.append((work, alpha))
        if self.motion.collecting:
            return []
        return self._release()

    def _release(self) -> list[Work]:
        held, self._held = self._held, []
        return [self._render(w, a) for w, a in held]

    def _render(self, work: Work, alpha: torch.Tensor | None) -> Work:
        if work.passthrough:
            return work
        self._select_source(work.source_index)
        t0 = time.perf_counter()
        args, message = self.motion.update(alpha, work.frame.media_time, work.features)
        self.say(message)
        work.args = self.last_args = args  # recorded when the frame is sent (record())
        work.face = self.anim.render(args.alpha, args.alpha_ref, args.power, args.offset)  # (1, 3, S, S)
        self._timed("synthesis", t0)
        return work

    def record(self, work: Work) -> None:
        """Add a sent frame's motion to the recording: called when the frame reaches the outputs, so the
        recording and the video hold the same frames however the run stops (frames in flight, or dropped
        by a live camera's newest-only hand-offs, are in neither)."""
        if self.controller.motion_target() != (self._motion_rec[0] if self._motion_rec else None):
            self._switch_motion_recording()  # the caller's thread, like close(): no other thread touches it
        if work.args is None:
            return
        if self.recorder is not None:
            self.recorder.add(work.frame, None, work.args)
        if self._motion_rec is not None:
            self._motion_rec[1].add(work.frame, None, work.args)

    def _switch_motion_recording(self) -> None:
        """Start or stop the recording a front end asked for (the sink's thread, at a frame boundary)."""
        self._save_motion()
        target = self.controller.motion_target()
        if target is not None:
            self._motion_rec = (target, MotionRecorder(self.anim, fps=self.recorder.fps if self.recorder else 30.0))

    def _save_motion(self) -> None:
        rec, self._motion_rec = self._motion_rec, None
        if rec is None:
            return
        path, recorder = rec
        try:
            recorder.save(path)
        except (OSError, UserError) as e:
            self.say(f"warning: motion recording {path} not saved: {e}")
            self.controller.motion_saved(path, saved=False)
        else:
            self.say(f"motion recorded: {path} ({plural(recorder.frames, 'frame')})")
            self.controller.motion_saved(path)

    def _finish(self, work: Work) -> np.ndarray:
        t0 = time.perf_counter()
        comp = self.compositor(work.source_index, work.compose)
        if work.passthrough or work.face is None:
            out = comp.passthrough(work.frame.image)
        else:
            out = self.frames.compose(comp, work.face)
        self._timed("compose", t0)
        return out

    def process(self, image: np.ndarray, t: float) -> np.ndarray | None:
        """All three stages for one frame (RGB uint8, any size) at media time ``t``; the output frame (None
        while a held reference window waits; the last of several when one is released)."""
        frame = Frame(image, time.perf_counter(), 0, t)
        outs = []
        for w in self.infer(self.prepare(frame)):
            outs.append(self.finish(w))
            self.record(w)
        return outs[-1] if outs else None
