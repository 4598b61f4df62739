"""One live session from start to end: check and open everything, run a loop, always clean up, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..animator import Animator
from ..capture import CameraSettings, open_capture
from ..capture.base import Capture
from ..errors import UserError
from ..frames import frame_path
from ..fsutil import write_atomic
from ..log import plural
from ..motion import MotionController
from ..output import Compositor
from ..runtime import make_animator
from ..settings import LiveConfig
from ..signals import Stopper
from ..stats import StageTimer
from ..templates import MotionRecorder, load_offsets, save_offsets
from ..tracking import FaceTracker
from .controller import HOTKEY_HELP, LiveController
from .loop import pipelined_loop, serial_loop
from .outputs import check_outputs, close_all, open_outputs, open_preview
from .sources import SourceEntry, load_sources
from .stages import LiveStages


def run_live(cfg: LiveConfig, capture: Capture | None = None, animator: Animator | None = None, tracker=None,
             window=None, extra_outputs: list | None = None, controller: LiveController | None = None,
             portraits: list[np.ndarray] | None = None) -> dict:
    """Run the live loop until the input ends, 'q', a window close, Ctrl-C or SIGTERM; returns the stats
    (and the session's final state under ``"state"``).

    ``capture``/``animator``/``tracker``/``window`` may be injected (tests); otherwise they are built from
    ``cfg``. A window needs ``show(rgb) -> key``, ``open`` and ``close()``; ``extra_outputs`` (objects with
    ``send(rgb)`` and ``close()``) receive every output frame too. ``controller``: the front ends' handle on
    the session (one is made when not given); ``portraits``: the source images already read (else they are
    read from ``cfg.sources``). Devices are always released and a file output is always finalised; an error
    is kept in the controller's messages before it is raised.
    """
    ctrl = controller or LiveController()
    try:
        return _run(cfg, ctrl, capture, animator, tracker, window, extra_outputs, portraits,
                    terminal=controller is None)
    except KeyboardInterrupt:
        ctrl.note("interrupted")
        raise
    except BaseException as e:
        ctrl.note("error: " + (e.render(lambda n: f"«{n}»") if isinstance(e, UserError) else str(e)))
        raise
    finally:
        ctrl.end()


def _run(cfg: LiveConfig, ctrl: LiveController, capture, animator, tracker, window, extra_outputs,
         portraits, terminal: bool = True) -> dict:
    check_outputs(cfg)
    if animator is None:
        anim = make_animator(cfg.model, cfg.motion.motion_power, say=ctrl.say)
        if anim.device.type == "cpu":
            ctrl.say("running on the CPU: expect a few frames per second")
    else:
        anim, anim.motion_power = animator, cfg.motion.motion_power
    sources = load_sources(cfg.sources, anim.size, cfg.motion.source_crop, portraits)
    resources: list = []
    stopper = Stopper(say=ctrl.say)
    with stopper:  # held until every file is in place: a second SIGTERM while finalising changes nothing
        stages = _open_and_loop(cfg, ctrl, anim, sources, capture, tracker, window, extra_outputs, resources,
                                stopper, terminal)
        ctrl.end()
        if stages is None:
            return {}
        stats = finish_run(cfg, stages)
    stats["exit_code"] = stopper.exit_code or 0
    return stats


def _open_and_loop(cfg: LiveConfig, ctrl: LiveController, anim: Animator, sources: list[SourceEntry], capture,
                   tracker, window, extra_outputs, resources: list, stopper: Stopper,
                   terminal: bool) -> LiveStages | None:
    """Open the input, the outputs and the stages, run the loop, close everything (finalising recordings,
    or dropping them after a second Ctrl-C or a clip without any face)."""
    aborted = False
    stages: LiveStages | None = None
    try:
        if tracker is None and cfg.motion.crop == "auto":
            tracker = FaceTracker(detect_every=cfg.motion.detect_every)
            resources.append(tracker)
        cap = capture or open_capture(cfg.capture.driving, _camera_settings(cfg), log=ctrl.say)
        resources.append(cap)
        ctrl.say(f"input: {cap.name} ({'live: newest frame only' if cap.live else 'file: every frame'})")
        out_fps = (cfg.output.fps or 30.0) if (cap.live or cfg.output.fps) else cap.fps
        outputs = open_outputs(cfg, out_fps, ctrl.say) + list(extra_outputs or [])
        resources.extend(outputs)
        if window is None:
            window = open_preview(cfg, resources)
        else:
            resources.append(window)
        if not outputs and window is None:
            raise UserError("no output left: give an «output» file, a «preview» window, or set up a virtual camera")
        stages = build_stages(cfg, anim, sources, tracker, out_fps, ctrl, hold=not cap.live)
        resources.append(stages)
        _say_start(cfg, ctrl, stages, window is not None, cap.live and terminal)
        with torch.inference_mode():
            loop = pipelined_loop if cfg.run.pipeline else serial_loop
            loop(cfg, stages, cap, outputs, window, stopper.stop)
        faceless = None if (cap.live or stopper.requested or tracker is None) else faceless_clip(cfg, stages)
        if faceless is not None:
            aborted = True
            close_all(resources, abort=True, say=ctrl.say)
            raise UserError(faceless)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep no half-written recording
        ctrl.say("interrupted; shutting down without finalising the recording")
        aborted = True
        close_all(resources, abort=True, say=ctrl.say)
        raise
    finally:
        if not aborted:
            close_all(resources, say=ctrl.say)
    return stages


def faceless_clip(cfg: LiveConfig, stages: LiveStages) -> str | None:
    """The error for a video or frame folder in which no frame had a face (the output would be the still
    portrait throughout), else None."""
    t = stages.timer
    if t.frames == 0 or t.no_face < t.frames:
        return None
    return (f"no face found in any of the {plural(t.frames, 'frame')} of {cfg.capture.driving}, so there is no "
            "motion to follow; nothing was written (use a clip with a visible face, or «crop» none)")


def _camera_settings(cfg: LiveConfig) -> CameraSettings:
    c = cfg.capture
    return CameraSettings(width=c.size[0], height=c.size[1], fps=c.fps or cfg.output.fps or 30.0,
                          fps_forced=c.fps is not None, mjpg=c.mjpg)


def _say_start(cfg: LiveConfig, ctrl: LiveController, stages: LiveStages, window: bool, hint: bool) -> None:
    """The session's first lines; ``hint``: a terminal session on a camera without a window is told how to
    get hotkeys (a front end that brought its own controller, the control panel, has its own controls)."""
    ctrl.say(f"frame path: {stages.frames.name} ({'pipelined' if cfg.run.pipeline else 'serial'} stages)")
    if window:
        ctrl.say(HOTKEY_HELP)
    elif hint:
        ctrl.say("hotkeys need a preview window: add «preview»")


def build_stages(cfg: LiveConfig, anim: Animator, sources: list[SourceEntry], tracker, out_fps: float,
                 controller: LiveController | None = None, hold: bool = False) -> LiveStages:
    """The session's stages with their motion controller (offsets loaded) and motion recorder; starts
    ``controller`` (a new one when None) on this session. ``hold``: the input is a file (see LiveStages)."""
    m = cfg.motion
    motion = MotionController(anim.basis.shape[1], mode=m.mode, power=m.motion_power, ease_seconds=m.ease,
                              reference=m.reference, window_seconds=m.reference_window)
    if m.offsets is not None and Path(m.offsets).exists():
        motion.set_offsets(load_offsets(m.offsets, anim))
    recorder = MotionRecorder(anim, fps=out_fps) if cfg.run.record_motion is not None else None
    ow, oh = cfg.output.size
    timer = StageTimer()
    controller = controller or LiveController()
    controller.start(motion, [e.name for e in sources], compose=cfg.output.compose, info=animator_info(anim),
                     timer=timer)
    return LiveStages(anim, sources, lambda mode: Compositor(ow, oh, mode), controller, tracker, timer, recorder,
                      frames=frame_path(cfg.run.frame_path, anim.device), hold=hold, source_crop=m.source_crop)


def animator_info(anim) -> dict[str, str]:
    """Backend, device, precision and model of an Animator, or of a stand-in with the Animator's interface
    (remote mode's RemoteAnimator has no backend here: it reports the server's ``info``)."""
    backend = getattr(anim, "backend", None)
    if backend is not None:
        return {"backend": backend.name, "device": str(anim.device), "precision": backend.precision,
                "model": str(anim.checkpoint) if anim.checkpoint is not None else "(in memory)"}
    remote = getattr(anim, "info", None) or {}
    info = {k: str(remote.get(k, "")) for k in ("backend", "device", "precision", "model")}
    if getattr(anim, "uri", None):
        info["device"] = f"{info['device']} on {anim.uri}"  # where the model runs: the panel shows it
    return info


def finish_run(cfg: LiveConfig, stages: LiveStages) -> dict:
    """The run's stats (with the final state), the motion recording, the offsets and the stats file."""
    stats = stages.timer.summary()
    stats["state"] = stages.controller.state()
    stages.say(f"done: {plural(stats['frames'], 'frame')} | {stages.timer.line()}")
    recorder = stages.recorder
    if recorder is not None and cfg.run.record_motion is not None:
        path = recorder.save(cfg.run.record_motion)
        stages.say(f"motion recorded: {path} ({plural(recorder.frames, 'frame')})")
    if cfg.motion.offsets is not None:
        save_offsets(cfg.motion.offsets, stages.motion.offsets, stages.anim)
    if cfg.run.stats_json is not None:
        stats["config"] = cfg.to_dict()
        write_atomic(cfg.run.stats_json, json.dumps(stats, indent=2))
    return stats
