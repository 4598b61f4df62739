"""The live pipeline behind ``lia-live``: the one place that wires the stages together.

    capture ─► [track + preprocess] ─► [motion + synthesis] ─► [compose + send + preview]
                 thread "track"          thread "model"          the caller's thread (UI)

The three stages run concurrently (:mod:`lia_live.pipeline`), joined by bounded hand-offs: newest-only for
live cameras (a slow stage always works on the newest frame; stale ones are dropped and counted), in order
for files (every frame exactly once). ``--serial`` runs the same stage functions one after another.

Who owns what:
- :class:`LiveStages` — the per-frame work of each stage (no devices, so tests drive it directly);
- :class:`~lia_live.motion.MotionController` — reference pose, mode, power, easing, direction offsets;
- :class:`LiveControls` — the hotkeys: they change the controller, the source and pass-through;
- :class:`~lia_live.stats.StageTimer` — per-stage timing and capture→send latency;
- :func:`run_live` — opens the devices, runs the pipeline, always cleans up.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .animator import Animator
from .capture.base import Capture, Frame
from .errors import UserError
from .log import log
from .motion import MotionArgs, MotionController
from .pipeline import END, BackgroundSink, Handoff, Pipeline
from .runtime import make_animator
from .settings import LiveConfig
from .signals import Stopper
from .stats import STAGES, StageTimer
from .tracking import center_box

__all__ = ["STAGES", "HOTKEY_HELP", "KEYMAP", "LiveConfig", "LiveControls", "LiveStages", "SourceEntry",
           "load_sources", "run_live"]

# ---- hotkeys: key → action name, kept apart from the window so it is testable without a display ----
KEYMAP: dict[int, str] = {
    ord("r"): "reset_reference", ord(" "): "reset_reference",
    ord("m"): "toggle_mode",
    ord("+"): "power_up", ord("="): "power_up", ord("]"): "power_up",
    ord("-"): "power_down", ord("_"): "power_down", ord("["): "power_down",
    ord("p"): "toggle_passthrough", ord("0"): "toggle_passthrough",
    ord("n"): "next_source", ord("\t"): "next_source",
    ord("d"): "next_direction", ord("k"): "offset_up", ord("j"): "offset_down", ord("o"): "reset_offsets",
    ord("q"): "quit", 27: "quit",
}
HOTKEY_HELP = ("hotkeys (preview window): r/space reset reference · m relative/absolute · +/- motion power · "
               "p pass-through · n next source · d next motion direction, j/k nudge it, o reset offsets · "
               "q/Esc quit")
POWER_STEP = 0.1
OFFSET_STEP = 0.1


@dataclass
class SourceEntry:
    """One source portrait: the full image, the crop fed to the model, its box in the image (or None)."""

    path: Path
    image: np.ndarray
    crop: np.ndarray
    box: Any | None
    state: Any | None = None  # the animator's SourceState, encoded once


@dataclass
class Work:
    """One frame on its way through the stages."""

    frame: Frame
    source_index: int
    passthrough: bool = False
    face_found: bool = False
    box: Any | None = None
    model_input: torch.Tensor | None = None  # (1, 3, S, S) in [-1, 1]
    face: torch.Tensor | None = None  # (1, 3, S, S) model output
    keepalive: bool = False  # no new frame (camera lost): re-send the last output


class LiveControls:
    """The user's controls (hotkeys): motion controller, source choice, pass-through, quit.

    Called from the UI thread; the stages read the values at frame boundaries.
    """

    def __init__(self, controller: MotionController, n_sources: int, say: Callable[[str], None] = log):
        self.motion = controller
        self.n_sources = n_sources
        self.source_index = 0
        self.passthrough = False
        self.running = True
        self.say = say

    def handle_key(self, key: int | None) -> str | None:
        """Apply the action bound to ``key`` (see KEYMAP); returns the action name or None."""
        if key is None or key < 0:
            return None
        action = KEYMAP.get(key & 0xFF if key < 0x10000 else key)
        if action is not None:
            getattr(self, action)()
        return action

    def reset_reference(self) -> None:
        self.motion.reset_reference()
        if self.motion.relative:
            self.say("reference pose: taken again from the next frame(s) with a face")

    def toggle_mode(self) -> None:
        self.say(f"mode: {self.motion.toggle_mode()}")

    def power_up(self) -> None:
        self.say(f"motion power {self.motion.set_power(self.motion.power + POWER_STEP):.1f}")

    def power_down(self) -> None:
        self.say(f"motion power {self.motion.set_power(self.motion.power - POWER_STEP):.1f}")

    def toggle_passthrough(self) -> None:
        self.passthrough = not self.passthrough
        self.say("pass-through on (showing the camera)" if self.passthrough else "pass-through off")

    def next_source(self) -> None:
        if self.n_sources > 1:
            self.source_index = (self.source_index + 1) % self.n_sources
            self.say(f"source {self.source_index + 1}/{self.n_sources}")

    def next_direction(self) -> None:
        d = self.motion.select_direction(1)
        self.say(f"motion direction {d} selected (offset {float(self.motion.offsets[d]):+.2f})")

    def offset_up(self) -> None:
        self.say(f"direction {self.motion.selected} offset {self.motion.nudge(OFFSET_STEP):+.2f}")

    def offset_down(self) -> None:
        self.say(f"direction {self.motion.selected} offset {self.motion.nudge(-OFFSET_STEP):+.2f}")

    def reset_offsets(self) -> None:
        self.motion.reset_offsets()
        self.say("direction offsets reset")

    def quit(self) -> None:
        self.running = False

    def state(self) -> dict:
        return {**self.motion.state(), "source_index": self.source_index, "passthrough": self.passthrough}


class HostFrames:
    """The frame path on the host: OpenCV crop and compose around the model (the faster choice on a CPU)."""

    name = "host"

    def __init__(self, device: torch.device):
        self.device = device

    def model_input(self, image: np.ndarray, box, size: int) -> torch.Tensor:
        from .imaging import to_tensor
        from .tracking import crop_square

        return to_tensor(crop_square(image, box, size)).to(self.device)  # (1, 3, S, S)

    def prepare_compositor(self, comp, portrait: np.ndarray, box, size: int) -> None:
        comp.set_source(portrait, box, size)

    def compose(self, comp, face: torch.Tensor) -> np.ndarray:
        from .imaging import from_tensor

        return comp.compose(from_tensor(face)[0])


class DeviceFrames(HostFrames):
    """The frame path on the model's device: the camera frame is uploaded once as uint8 (pinned, reused buffer),
    cropped/normalised there, composed there, and downloaded once (see :mod:`lia_live.frames`).

    The default on CUDA (not run on a GPU yet: written from the measured stage costs and the PyTorch
    docs; CPU tests run the same code on CPU tensors).
    """

    name = "device"

    def __init__(self, device: torch.device):
        from .frames import FrameDownloader, FrameUploader

        super().__init__(device)
        self.uploader = FrameUploader(device)
        self.downloader = FrameDownloader()

    def model_input(self, image: np.ndarray, box, size: int) -> torch.Tensor:
        from .frames import crop_to_model

        return crop_to_model(self.uploader.upload(image), box, size)  # (1, 3, S, S)

    def prepare_compositor(self, comp, portrait: np.ndarray, box, size: int) -> None:
        comp.set_source_tensor(portrait, box, size, self.device)

    def compose(self, comp, face: torch.Tensor) -> np.ndarray:
        return self.downloader.download(comp.compose_tensor(face), copy=True)


def frame_path(choice: str, device: torch.device) -> HostFrames:
    """``auto``: on the device for CUDA, on the host for CPU (measured: OpenCV's crop-mode compose is 15×
    faster than torch's on a CPU)."""
    if choice == "device" or (choice == "auto" and device.type == "cuda"):
        return DeviceFrames(device)
    return HostFrames(device)


class LiveStages:
    """The per-frame work, one method per pipeline stage; no cameras, windows or files.

    ``prepare(frame)`` (track + crop to the model's input), ``infer(work)`` (motion, the controller,
    synthesis), ``finish(work)`` (compose the output frame). ``process(image, t)`` runs all three.
    """

    def __init__(self, animator: Animator, sources: list[SourceEntry], compositor_factory: Callable[[], Any],
                 controls: LiveControls, tracker=None, timer: StageTimer | None = None,
                 recorder=None, say: Callable[[str], None] = log, frames: HostFrames | None = None):
        self.anim = animator
        self.frames = frames or frame_path("auto", animator.device)
        self.sources = sources
        self.controls = controls
        self.motion = controls.motion
        self.tracker = tracker
        self.timer = timer or StageTimer()
        self.recorder = recorder
        self.say = say
        self._compositor_factory = compositor_factory
        self._compositors: dict[int, Any] = {}
        self._model_source = -1
        self._sync = animator.device.type == "cuda"
        # one CUDA stream per stage (each stage thread works on its own; a stage synchronises its stream before
        # handing tensors on, so the next stage may read them; not run on a GPU yet)
        self._streams = {n: torch.cuda.Stream(animator.device) for n in ("prepare", "infer", "finish")} \
            if self._sync else {}
        self.face_found = False
        self.last_box = None
        self.last_args: MotionArgs | None = None
        self._select_source(0)

    # ---- sources (model thread / compose thread) ----------------------------------------------------------
    def _select_source(self, i: int) -> None:
        entry = self.sources[i]
        if entry.state is None:
            entry.state = self.anim.set_source(entry.crop)
        self.anim.source = entry.state
        self.motion.set_source_alpha(entry.state.alpha)
        self._model_source = i

    def compositor(self, i: int):
        """The compositor for source ``i`` (its paste-back precomputed once)."""
        comp = self._compositors.get(i)
        if comp is None:
            comp = self._compositor_factory()
            entry = self.sources[i]
            self.frames.prepare_compositor(comp, entry.image, entry.box, self.anim.size)
            self._compositors[i] = comp
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
    def infer(self, work: Work) -> Work:
        """Motion encoder, the motion controller, synthesis (stage 2)."""
        with self._stream("infer"):
            return self._infer(work)

    @torch.inference_mode()
    def finish(self, work: Work) -> np.ndarray:
        """Compose the output frame (stage 3)."""
        with self._stream("finish"):
            return self._finish(work)

    def _prepare(self, frame: Frame) -> Work:
        work = Work(frame, self.controls.source_index, passthrough=self.controls.passthrough)
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
        self._timed("preprocess", t0)
        return work

    def _infer(self, work: Work) -> Work:
        if work.passthrough or work.keepalive:
            return work
        if work.source_index != self._model_source:
            self._select_source(work.source_index)
            self.say(f"source {work.source_index + 1}/{len(self.sources)}: {self.sources[work.source_index].path}")
        t0 = time.perf_counter()
        alpha = None
        if work.model_input is not None:
            alpha = self.anim.motion(work.model_input)  # (1, M)
            t0 = self._timed("motion", t0)
        else:
            self.timer.no_face += 1
        args, message = self.motion.update(alpha, work.frame.media_time)
        if message:
            self.say(message)
        if self.recorder is not None:
            self.recorder.add(work.frame, alpha, args)
        self.last_args = args
        work.face = self.anim.render(args.alpha, args.alpha_ref, args.power, args.offset)  # (1, 3, S, S)
        self._timed("synthesis", t0)
        return work

    def _finish(self, work: Work) -> np.ndarray:
        self.face_found, self.last_box = work.face_found, work.box
        t0 = time.perf_counter()
        comp = self.compositor(work.source_index)
        if work.passthrough or work.face is None:
            out = comp.passthrough(work.frame.image)
        else:
            out = self.frames.compose(comp, work.face)
        self._timed("compose", t0)
        return out

    def process(self, image: np.ndarray, t: float) -> np.ndarray:
        """All three stages for one frame (RGB uint8, any size) at media time ``t``."""
        frame = Frame(image, time.perf_counter(), 0, t)
        return self.finish(self.infer(self.prepare(frame)))

    def overlay_lines(self) -> list[str]:
        m = self.motion
        lines = [self.timer.line(),
                 f"mode {m.mode} | power {m.power:.1f} | source {self.controls.source_index + 1}/"
                 f"{len(self.sources)}" + (" | PASS-THROUGH" if self.controls.passthrough else "")]
        if m.choice is not None and m.relative:
            c = m.choice
            lines.append(f"reference: distance to portrait {c.distance:.2f} (first frame {c.first_distance:.2f})")
        if bool(m.offsets.any()) or m.selected:
            lines.append(f"direction {m.selected}: offset {float(m.offsets[m.selected]):+.2f}")
        if not self.face_found:
            lines.append("NO FACE: holding the last motion")
        return lines


# ---- set-up ---------------------------------------------------------------------------------------------
def load_sources(paths, size: int, crop_mode: str) -> list[SourceEntry]:
    """Read and crop every source portrait (UserError naming the file when no face is found)."""
    from .io import read_image
    from .tracking import center_box, crop_portrait_with_box, crop_square

    out = []
    for p in paths:
        image = read_image(p, "source image")
        if crop_mode == "auto":
            crop, box = crop_portrait_with_box(image, size, name=str(p))
        else:
            box = center_box(image)  # the largest centred square (the whole image when square)
            crop = crop_square(image, box, size)
        out.append(SourceEntry(Path(p), image, crop, box))
    return out


def _make_animator(cfg: LiveConfig) -> Animator:
    anim = make_animator(cfg.model, cfg.motion.motion_power)
    if anim.device.type == "cpu":
        log("running on the CPU: expect a few frames per second")
    return anim


class EncodingOutput:
    """A file output whose encoding runs in its own thread, so it is a pipeline stage of its own."""

    def __init__(self, output):
        self.output = output
        self.sink = BackgroundSink(output.send, "encode", capacity=4)

    def send(self, rgb: np.ndarray) -> None:
        self.sink.put(rgb)  # output frames are fresh arrays, never written to after they are sent

    def close(self) -> None:
        try:
            self.sink.finish()
        except BaseException:
            self.output.abort()  # a failed write: nothing is kept under the name
            raise
        self.output.close()

    def abort(self) -> None:
        self.sink.cancel()
        self.output.abort()


def open_outputs(cfg: LiveConfig, out_fps: float) -> list:
    """The outputs asked for; a missing virtual camera is fatal only when it is the only output."""
    from .output import FileOutput, VirtualCamera

    o = cfg.output
    outputs: list = []
    if o.output is not None:
        outputs.append(EncodingOutput(FileOutput(o.output, out_fps, overwrite=o.overwrite)))
    if o.vcam:
        fps = o.fps or 30.0
        try:
            cam = VirtualCamera(o.width, o.height, fps, device=o.vcam_device, backend=o.vcam_backend)
            log(f"virtual camera: {cam.device} ({o.width}×{o.height} @ {fps:g} fps)")
            outputs.append(cam)
        except UserError as e:
            if o.output is None and not o.preview:
                _close_all(outputs)
                raise
            log(f"warning: {e}; going on without it")
    return outputs


def check_outputs(cfg: LiveConfig) -> None:
    """Refuse, before anything is opened, outputs that cannot be written or would replace a user's file
    without «overwrite» (the recording, the stats file, the motion recording)."""
    from .fsutil import check_output_path
    from .io import check_writer_path

    o, r = cfg.output, cfg.run
    if o.output is not None:
        check_writer_path(o.output, o.overwrite)
    if r.stats_json is not None:
        check_output_path(r.stats_json, o.overwrite, "stats file")
    if r.record_motion is not None:
        check_output_path(r.record_motion, o.overwrite, "motion recording")


def run_live(cfg: LiveConfig, capture: Capture | None = None, animator: Animator | None = None, tracker=None,
             window=None, extra_outputs: list | None = None) -> dict:
    """Run the live loop until the input ends, 'q', a window close, Ctrl-C or SIGTERM; returns the stats
    (and the session's final state under ``"state"``).

    ``capture``/``animator``/``tracker``/``window`` may be injected (tests); otherwise they are built from
    ``cfg``. A window needs ``show(rgb) -> key``, ``open`` and ``close()``; ``extra_outputs`` (objects with
    ``send(rgb)`` and ``close()``) receive every output frame too. Devices are always released and a file
    output is always finalised.
    """
    from .capture import CameraSettings, open_capture

    check_outputs(cfg)
    anim = animator or _make_animator(cfg)
    if animator is not None:
        anim.motion_power = cfg.motion.motion_power
    sources = load_sources(cfg.sources, anim.size, cfg.motion.source_crop)
    c = cfg.capture
    settings = CameraSettings(width=c.size[0], height=c.size[1], fps=c.fps or cfg.output.fps or 30.0,
                              fps_forced=c.fps is not None, mjpg=c.mjpg)
    resources: list = []
    aborted = False
    stopper = Stopper()
    stages: LiveStages | None = None
    recorder = None
    try:
        if tracker is None and cfg.motion.crop == "auto":
            from .tracking import FaceTracker

            tracker = FaceTracker(detect_every=cfg.motion.detect_every)
            resources.append(tracker)
        cap = capture or open_capture(c.driving, settings)
        resources.append(cap)
        log(f"input: {cap.name} ({'live: newest frame only' if cap.live else 'file: every frame'})")
        out_fps = (cfg.output.fps or 30.0) if (cap.live or cfg.output.fps) else cap.fps
        outputs = open_outputs(cfg, out_fps) + list(extra_outputs or [])
        resources.extend(outputs)
        if window is None:
            window = _open_preview(cfg, resources)
        else:
            resources.append(window)
        if not outputs and window is None:
            raise UserError("no output left: give an «output» file, a «preview» window, or set up a virtual camera")
        stages = build_stages(cfg, anim, sources, tracker, out_fps)
        recorder = stages.recorder
        log(f"frame path: {stages.frames.name} ({'pipelined' if cfg.run.pipeline else 'serial'} stages)")
        if window is not None:
            log(HOTKEY_HELP)
        elif cap.live:
            log("hotkeys need a preview window: add «preview»")
        with stopper, torch.inference_mode():
            loop = _pipelined_loop if cfg.run.pipeline else _serial_loop
            loop(cfg, stages, cap, outputs, window, stopper.stop)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep no half-written recording
        log("interrupted; shutting down without finalising the recording")
        aborted = True
        _close_all(resources, abort=True)
        raise
    finally:
        if not aborted:
            _close_all(resources)
    if stages is None:
        return {}
    stats = _finish_run(cfg, stages, recorder)
    stats["exit_code"] = stopper.exit_code or 0
    return stats


def build_stages(cfg: LiveConfig, anim: Animator, sources: list[SourceEntry], tracker, out_fps: float) -> LiveStages:
    """The session's stages with their motion controller (offsets loaded), controls and motion recorder."""
    from .output import Compositor

    m = cfg.motion
    controller = MotionController(anim.basis.shape[1], mode=m.mode, power=m.motion_power, ease_seconds=m.ease,
                                  reference=m.reference, window_seconds=m.reference_window)
    if m.offsets is not None and Path(m.offsets).exists():
        from .templates import load_offsets

        controller.set_offsets(load_offsets(m.offsets, anim))
    recorder = None
    if cfg.run.record_motion is not None:
        from .templates import MotionRecorder

        recorder = MotionRecorder(anim, fps=out_fps)
    ow, oh = cfg.output.size
    return LiveStages(anim, sources, lambda: Compositor(ow, oh, cfg.output.compose),
                      LiveControls(controller, len(sources)), tracker, StageTimer(), recorder,
                      frames=frame_path(cfg.run.frame_path, anim.device))


def _finish_run(cfg: LiveConfig, stages: LiveStages, recorder) -> dict:
    from .fsutil import write_atomic

    stats = stages.timer.summary()
    stats["state"] = stages.controls.state()
    log(f"done: {stats['frames']} frames | {stages.timer.line()}")
    if recorder is not None and cfg.run.record_motion is not None:
        path = recorder.save(cfg.run.record_motion)
        log(f"motion recorded: {path} ({recorder.frames} frames)")
    if cfg.motion.offsets is not None:
        from .templates import save_offsets

        save_offsets(cfg.motion.offsets, stages.motion.offsets, stages.anim)
    if cfg.run.stats_json is not None:
        stats["config"] = cfg.to_dict()
        write_atomic(cfg.run.stats_json, json.dumps(stats, indent=2))
    return stats


def _open_preview(cfg: LiveConfig, resources: list):
    if not cfg.output.preview:
        return None
    from .output import PreviewWindow

    window = PreviewWindow("lia-live")
    resources.append(window)
    return window


def _close_all(resources: list, abort: bool = False) -> None:
    """Release in reverse order of opening; one failing release never blocks the others. A recording that
    cannot be finalised (a full disk...) is reported as the run's error once everything is released; with
    ``abort`` (a second Ctrl-C) recordings are dropped instead of finalised."""
    failed: UserError | None = None
    for r in reversed(resources):
        try:
            if abort and hasattr(r, "abort"):
                r.abort()
            else:
                r.close()
        except UserError as e:
            failed = failed or e
        except Exception as e:  # noqa: BLE001 - a broken device must not stop the others' release
            log(f"warning: closing {type(r).__name__} failed: {e}")
    if failed is not None:
        raise failed


# ---- the loops ------------------------------------------------------------------------------------------
class _Sink:
    """The last stage, in the caller's thread: send to the outputs, refresh the preview, print stats."""

    def __init__(self, cfg: LiveConfig, stages: LiveStages, outputs: list, window):
        self.cfg, self.stages, self.outputs, self.window = cfg, stages, outputs, window
        self.timer = stages.timer
        self.last_out: np.ndarray | None = None
        self.next_print = time.perf_counter() + cfg.run.stats_every

    def deliver(self, work: Work) -> None:
        if work.keepalive:
            if self.last_out is not None:
                self._send(self.last_out)  # keep the virtual camera alive while the camera is away
            self.poll(None)
            return
        out = self.stages.finish(work)
        t0 = time.perf_counter()
        self._send(out)
        t1 = time.perf_counter()
        self.timer.add("send", t1 - t0)
        self.timer.frame_done(work.frame.captured, t1)
        self.last_out = out
        self.poll(work.frame.image)
        if self.cfg.run.stats_every > 0 and time.perf_counter() >= self.next_print:
            log(self.timer.line())
            self.next_print = time.perf_counter() + self.cfg.run.stats_every

    def _send(self, out: np.ndarray) -> None:
        for o in self.outputs:
            o.send(out)
        self.timer.sent += 1

    def poll(self, camera: np.ndarray | None) -> None:
        """Show the preview (if any) and apply the key pressed."""
        if self.window is None:
            return
        self.stages.controls.handle_key(self.window.show(_preview_picture(self.stages, camera, self.last_out)))
        if not self.window.open:
            self.stages.controls.quit()

    def done(self) -> bool:
        m = self.cfg.run.max_frames
        return not self.stages.controls.running or (m is not None and self.timer.frames >= m)


def _reader(cap: Capture, stages: LiveStages, max_frames: int | None, stop: threading.Event,
            idle_wait: float) -> Callable[[Any], Any]:
    """The first stage: read a frame, track, crop. Returns END at the end of the input."""
    count = [0]

    def read(_item) -> Any:
        if max_frames is not None and count[0] >= max_frames:
            return END
        t0 = time.perf_counter()
        frame = cap.read(timeout=idle_wait)
        if frame is None:
            if cap.finished:
                return END
            if cap.lost:
                return Work(Frame(np.zeros((2, 2, 3), np.uint8), time.perf_counter(), -1, 0.0), 0, keepalive=True)
            return None
        stages.timer.add("capture", time.perf_counter() - t0)
        count[0] += 1
        return stages.prepare(frame)

    return read


def _serial_loop(cfg: LiveConfig, stages: LiveStages, cap: Capture, outputs: list, window,
                 stop: threading.Event) -> None:
    sink = _Sink(cfg, stages, outputs, window)
    read = _reader(cap, stages, cfg.run.max_frames, stop, 1.0 / (cfg.output.fps or 30.0))
    stages.warm_up()  # GPU first-run fixes: graphs captured before the first frame
    while not stop.is_set() and not sink.done():
        work = read(None)
        if work is END:
            break
        if work is None:
            sink.poll(None)
            continue
        sink.deliver(stages.infer(work))


def _pipelined_loop(cfg: LiveConfig, stages: LiveStages, cap: Capture, outputs: list, window,
                    stop: threading.Event) -> None:
    """Track, model and compose/send run concurrently; this thread is the sink (outputs and preview)."""
    sink = _Sink(cfg, stages, outputs, window)
    pipe = Pipeline(threading.Event())
    newest = cap.live
    tracked = Handoff(newest_only=newest, capacity=1, name="tracked")  # one frame waits per stage: latency
    rendered = Handoff(newest_only=newest, capacity=1, name="rendered")  # stays ~3 stage times
    limit = None if cap.live else cfg.run.max_frames  # live: frames may be dropped; the sink counts
    pipe.stage("track", _reader(cap, stages, limit, pipe.stop, 1.0 / (cfg.output.fps or 30.0)), None, tracked)
    pipe.stage("model", stages.infer, tracked, rendered, on_start=stages.warm_up)  # warm-up on the model's thread
    pipe.start()
    try:
        while not stop.is_set() and not sink.done():
            work = rendered.get(stop, timeout=0.05)
            if work is END:
                break
            if work is None:
                sink.poll(None)
                continue
            sink.deliver(work)
        pipe.raise_errors()
    finally:
        pipe.join()
        stages.timer.dropped = tracked.dropped + rendered.dropped
    pipe.raise_errors()


def _preview_picture(stages: LiveStages, camera: np.ndarray | None, out: np.ndarray | None) -> np.ndarray:
    from .output.overlay import draw_lines, side_by_side

    if out is None:
        out = np.zeros((360, 640, 3), np.uint8)
    if camera is None:
        camera = np.zeros_like(out)
    pic = side_by_side(camera, out, box=stages.last_box, face_found=stages.face_found)
    return draw_lines(pic, stages.overlay_lines())
