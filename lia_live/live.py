"""The live pipeline behind ``lia-live``: the one place that wires the stages together.

capture (newest frame) → track (smoothed VoxCeleb square) → preprocess (crop, tensor) → motion (α) →
synthesis (latent → image) → compose (crop / paste) → send (virtual camera, preview, file).

:class:`LiveSession` holds the state and the per-frame work with no device I/O, so tests drive it
directly; :func:`run_live` opens the devices, loops, times every stage and always cleans up.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .animator import Animator
from .errors import UserError
from .log import log
from .runtime import ModelConfig, make_animator
from .signals import Stopper

STAGES = ("capture", "track", "preprocess", "motion", "synthesis", "compose", "send")


@dataclass(frozen=True)
class LiveConfig:
    """Everything ``lia-live`` needs, already validated by the CLI."""

    sources: tuple[Path, ...]
    driving: str = "0"
    checkpoint: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    precision: str | None = None
    mode: str = "relative"
    motion_power: float = 1.0
    source_crop: str = "auto"
    crop: str = "auto"
    detect_every: int = 1
    compose: str = "crop"
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    fps_given: bool = False
    camera_width: int | None = 1280
    camera_height: int | None = 720
    camera_fps: float | None = None
    mjpg: bool = True
    vcam: bool = True
    vcam_device: str | None = None
    vcam_backend: str | None = None
    preview: bool = False
    output: Path | None = None
    overwrite: bool = False
    stats_json: Path | None = None
    stats_every: float = 5.0
    max_frames: int | None = None
    ease_seconds: float = 1.0


# ---- hotkeys: key → action name, kept apart from the window so it is testable without a display ----
KEYMAP: dict[int, str] = {
    ord("r"): "reset_reference", ord(" "): "reset_reference",
    ord("m"): "toggle_mode",
    ord("+"): "power_up", ord("="): "power_up", ord("]"): "power_up",
    ord("-"): "power_down", ord("_"): "power_down", ord("["): "power_down",
    ord("p"): "toggle_passthrough", ord("0"): "toggle_passthrough",
    ord("n"): "next_source", ord("\t"): "next_source",
    ord("q"): "quit", 27: "quit",
}
HOTKEY_HELP = ("hotkeys (preview window): r/space reset reference · m relative/absolute · +/- motion power · "
               "p pass-through · n next source · q/Esc quit")
POWER_STEP = 0.1


@dataclass
class SourceEntry:
    """One source portrait: the full image, the crop fed to the model, its box in the image (or None)."""

    path: Path
    image: np.ndarray
    crop: np.ndarray
    box: object | None
    state: object | None = None  # the animator's SourceState, encoded once


class StageTimer:
    """Per-stage times: running totals for the whole run, and a bounded recent window (constant memory).

    The first frame of each stage is kept apart (``first_frame_ms``): it holds one-off work such as
    compiling a backend's graphs, which would otherwise dominate the run's means.
    """

    def __init__(self, window: int = 120):
        self.total = {s: 0.0 for s in STAGES}
        self.count = {s: 0 for s in STAGES}
        self.first: dict[str, float] = {}
        self.recent = {s: deque(maxlen=window) for s in STAGES}
        self.latency = deque(maxlen=window)
        self.latency_total = 0.0
        self.latency_first: float | None = None
        self.frames = 0
        self.sent = 0
        self.no_face = 0
        self.start = time.perf_counter()
        self.steady_start: float | None = None
        self._stamps: deque = deque(maxlen=window)

    def add(self, stage: str, seconds: float) -> None:
        self.recent[stage].append(seconds)
        if stage not in self.first:
            self.first[stage] = seconds
            return
        self.total[stage] += seconds
        self.count[stage] += 1

    def frame_done(self, t_capture: float, t_sent: float) -> None:
        self.frames += 1
        self.latency.append(t_sent - t_capture)
        if self.latency_first is None:
            self.latency_first = t_sent - t_capture
            self.steady_start = t_sent
        else:
            self.latency_total += t_sent - t_capture
        self._stamps.append(t_sent)

    def fps(self) -> float:
        if len(self._stamps) < 2:
            return 0.0
        return (len(self._stamps) - 1) / max(1e-9, self._stamps[-1] - self._stamps[0])

    def recent_ms(self) -> dict[str, float]:
        return {s: 1e3 * sum(v) / len(v) for s, v in self.recent.items() if v}

    def summary(self) -> dict:
        """Whole-run figures; means, latency and ``steady_fps`` exclude the first (warm-up) frame."""
        now = time.perf_counter()
        elapsed = now - self.start
        mean = {s: 1e3 * self.total[s] / self.count[s] for s in STAGES if self.count[s]}
        steady = self.frames - 1
        steady_s = (self._stamps[-1] - self.steady_start) if steady > 0 and self.steady_start else 0.0
        return {"frames": self.frames, "frames_sent": self.sent, "frames_without_face": self.no_face,
                "elapsed_s": round(elapsed, 3), "fps": round(self.frames / elapsed, 3) if elapsed > 0 else 0.0,
                "steady_fps": round(steady / steady_s, 3) if steady_s > 0 else None,
                "stage_ms_mean": {k: round(v, 3) for k, v in mean.items()},
                "first_frame_ms": {k: round(1e3 * v, 3) for k, v in self.first.items()},
                "latency_ms_mean": round(1e3 * self.latency_total / steady, 3) if steady > 0 else None}

    def line(self) -> str:
        ms = self.recent_ms()
        stages = " ".join(f"{s} {ms[s]:.1f}" for s in STAGES if s in ms)
        lat = 1e3 * sum(self.latency) / len(self.latency) if self.latency else 0.0
        return f"{self.fps():.1f} fps | latency {lat:.0f} ms | ms: {stages}"


class LiveSession:
    """The per-frame work and the session state; no cameras, windows or files.

    ``process(image, t)`` returns the output frame; ``handle_key(key)`` applies a hotkey.
    """

    def __init__(self, animator: Animator, sources: list[SourceEntry], compositor, tracker=None,
                 mode: str = "relative", motion_power: float = 1.0, ease_seconds: float = 1.0,
                 timer: StageTimer | None = None, say: Callable[[str], None] = log):
        if mode not in ("relative", "absolute"):
            raise UserError(f"unknown --mode {mode!r}; choose relative or absolute")
        self.anim = animator
        self.sources = sources
        self.compositor = compositor
        self.tracker = tracker
        self.relative = mode == "relative"
        self.anim.motion_power = float(motion_power)
        self.ease_seconds = ease_seconds
        self.timer = timer or StageTimer()
        self.say = say
        self.source_index = 0
        self.passthrough = False
        self.running = True
        self.want_reference = True
        self.alpha_ref: torch.Tensor | None = None
        self.alpha: torch.Tensor | None = None  # the motion shown last (eased while the face is lost)
        self.last_box = None
        self.face_found = False
        self._t_last: float | None = None
        self._sync = animator.device.type == "cuda"
        self._select_source(0)

    # ---- hotkey actions -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "relative" if self.relative else "absolute"

    @property
    def motion_power(self) -> float:
        return self.anim.motion_power

    def handle_key(self, key: int) -> str | None:
        """Apply the action bound to ``key`` (see KEYMAP); returns the action name or None."""
        if key is None or key < 0:
            return None
        action = KEYMAP.get(key & 0xFF if key < 0x10000 else key)
        if action is not None:
            getattr(self, action)()
        return action

    def reset_reference(self) -> None:
        """Take the next frame with a face as the neutral reference pose."""
        self.want_reference = True
        self.say("reference will be taken from the next frame with a face")

    def toggle_mode(self) -> None:
        self.relative = not self.relative
        self._apply_reference()
        self.say(f"mode: {self.mode}")

    def set_power(self, value: float) -> None:
        self.anim.motion_power = round(min(2.0, max(0.0, value)), 3)

    def power_up(self) -> None:
        self.set_power(self.anim.motion_power + POWER_STEP)
        self.say(f"motion power {self.anim.motion_power:.1f}")

    def power_down(self) -> None:
        self.set_power(self.anim.motion_power - POWER_STEP)
        self.say(f"motion power {self.anim.motion_power:.1f}")

    def toggle_passthrough(self) -> None:
        self.passthrough = not self.passthrough
        self.say("pass-through on (showing the camera)" if self.passthrough else "pass-through off")

    def next_source(self) -> None:
        if len(self.sources) > 1:
            self._select_source((self.source_index + 1) % len(self.sources))
            self.say(f"source {self.source_index + 1}/{len(self.sources)}: {self.sources[self.source_index].path}")

    def quit(self) -> None:
        self.running = False

    # ---- state ------------------------------------------------------------------------------------------
    def _select_source(self, i: int) -> None:
        entry = self.sources[i]
        if entry.state is None:
            self.anim.set_source(entry.crop)
            entry.state = self.anim.source
        self.anim.source = entry.state
        self.compositor.set_source(entry.image, entry.box, self.anim.size)
        self.source_index = i

    def _apply_reference(self) -> None:
        self.anim.alpha_ref = self.alpha_ref if self.relative else None

    def _neutral(self) -> torch.Tensor:
        """The motion that shows the source as it is: the reference (relative) or α_src (absolute)."""
        if self.relative and self.alpha_ref is not None:
            return self.alpha_ref
        return self.anim.source.alpha

    # ---- per frame --------------------------------------------------------------------------------------
    def _timed(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.timer.add(stage, t1 - t0)
        return t1

    def process(self, image: np.ndarray, t: float) -> np.ndarray:
        """One driving frame (RGB uint8, any size) captured at ``t`` → the output frame."""
        from .imaging import from_tensor, to_tensor
        from .tracking import center_box, crop_square

        t0 = time.perf_counter()
        if self.tracker is not None:
            res = self.tracker.update(image, t)
            self.face_found, self.last_box = res.found, res.box
        else:
            self.face_found, self.last_box = True, center_box(image)
        t0 = self._timed("track", t0)
        if self.passthrough:
            out = self.compositor.passthrough(image)
            self._timed("compose", t0)
            return out
        alpha = None
        if self.face_found and self.last_box is not None:
            crop = crop_square(image, self.last_box, self.anim.size)  # (S, S, 3)
            x = to_tensor(crop)  # (1, 3, S, S)
            t0 = self._timed("preprocess", t0)
            alpha = self.anim.motion(x)  # (1, M)
            if self._sync:
                torch.cuda.synchronize(self.anim.device)
            t0 = self._timed("motion", t0)
        else:
            self.timer.no_face += 1
        alpha = self._update_motion(alpha, t)
        if alpha is None:
            src = self.anim.source
            img = self.anim.render_latent(src.latent + src.alpha @ self.anim.basis.t())  # (1, 3, S, S)
        else:
            img = self.anim.render(alpha)  # (1, 3, S, S)
        face = from_tensor(img)[0]  # (S, S, 3) uint8
        t0 = self._timed("synthesis", t0)
        out = self.compositor.compose(face)
        self._timed("compose", t0)
        return out

    def _update_motion(self, alpha: torch.Tensor | None, t: float) -> torch.Tensor | None:
        """Keep the reference and the shown motion up to date; ease back to neutral while no face."""
        dt = 0.0 if self._t_last is None else max(0.0, t - self._t_last)
        self._t_last = t
        if alpha is not None:
            if self.want_reference:
                self.alpha_ref = alpha
                self.want_reference = False
                self._apply_reference()
                self.say("reference pose captured")
            self.alpha = alpha
            return alpha
        if self.alpha is None:
            return None
        keep = math.exp(-dt / self.ease_seconds) if self.ease_seconds > 0 else 0.0
        target = self._neutral()
        self.alpha = target + (self.alpha - target) * keep  # (1, M)
        return self.alpha

    def overlay_lines(self) -> list[str]:
        lines = [self.timer.line(),
                 f"mode {self.mode} | power {self.motion_power:.1f} | source {self.source_index + 1}/"
                 f"{len(self.sources)}" + (" | PASS-THROUGH" if self.passthrough else "")]
        if not self.face_found:
            lines.append("NO FACE: holding the last motion")
        return lines


# ---- set-up ---------------------------------------------------------------------------------------------
def load_sources(paths, size: int, crop_mode: str) -> list[SourceEntry]:
    """Read and crop every source portrait (UserError naming the file when no face is found)."""
    from .io import read_image
    from .tracking import crop_portrait_with_box

    from .tracking import center_box, crop_square

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
    anim = make_animator(ModelConfig(cfg.checkpoint, cfg.device, cfg.backend, cfg.precision), cfg.motion_power)
    if anim.device.type == "cpu":
        log("running on the CPU: expect a few frames per second")
    return anim


def open_outputs(cfg: LiveConfig, out_fps: float) -> list:
    """The outputs asked for; a missing virtual camera is fatal only when it is the only output."""
    from .output import FileOutput, VirtualCamera

    outputs = []
    if cfg.output is not None:
        outputs.append(FileOutput(cfg.output, out_fps, overwrite=cfg.overwrite))
    if cfg.vcam:
        try:
            cam = VirtualCamera(cfg.width, cfg.height, cfg.fps, device=cfg.vcam_device, backend=cfg.vcam_backend)
            log(f"virtual camera: {cam.device} ({cfg.width}×{cfg.height} @ {cfg.fps:g} fps)")
            outputs.append(cam)
        except UserError as e:
            if cfg.output is None and not cfg.preview:
                for o in outputs:
                    o.close()
                raise
            log(f"warning: {e}; going on without it")
    return outputs


def run_live(cfg: LiveConfig, capture=None, animator: Animator | None = None, tracker=None,
             window=None) -> dict:
    """Run the live loop until the input ends, 'q', a window close, Ctrl-C or SIGTERM; returns the stats
    (and the session's final state under ``"state"``).

    ``capture``/``animator``/``tracker``/``window`` may be injected (tests); otherwise they are built from
    ``cfg``. A window needs ``show(rgb) -> key``, ``open`` and ``close()``.
    Devices are always released and a file output is always finalised.
    """
    from .capture import CameraSettings, open_capture
    from .output import Compositor

    if cfg.output is not None and Path(cfg.output).exists() and not cfg.overwrite:
        raise UserError(f"output already exists: {cfg.output} (choose another name or pass --overwrite)")
    if cfg.stats_json is not None and not Path(cfg.stats_json).parent.is_dir():
        raise UserError(f"--stats-json: folder does not exist: {Path(cfg.stats_json).parent}")
    anim = animator or _make_animator(cfg)
    sources = load_sources(cfg.sources, anim.size, cfg.source_crop)
    settings = CameraSettings(width=cfg.camera_width, height=cfg.camera_height,
                              fps=cfg.camera_fps or cfg.fps, fps_forced=cfg.camera_fps is not None, mjpg=cfg.mjpg)
    resources: list = []
    session = None
    try:
        if tracker is None and cfg.crop == "auto":
            from .tracking import FaceTracker

            tracker = FaceTracker(detect_every=cfg.detect_every)
            resources.append(tracker)
        cap = capture or open_capture(cfg.driving, settings)
        resources.append(cap)
        log(f"input: {cap.name} ({'live: newest frame only' if cap.live else 'file: every frame'})")
        out_fps = cfg.fps if (cap.live or cfg.fps_given) else cap.fps
        outputs = open_outputs(cfg, out_fps)
        resources.extend(outputs)
        if window is None:
            window = _open_preview(cfg, resources)
        else:
            resources.append(window)
        if not outputs and window is None:
            raise UserError("no output left: give --output FILE.mp4, --preview, or set up a virtual camera")
        timer = StageTimer()
        session = LiveSession(anim, sources, Compositor(cfg.width, cfg.height, cfg.compose), tracker,
                              mode=cfg.mode, motion_power=cfg.motion_power, ease_seconds=cfg.ease_seconds,
                              timer=timer)
        log(HOTKEY_HELP if window is not None else "hotkeys need --preview (the window receives the keys)")
        with Stopper() as stopper, torch.inference_mode():
            _loop(cfg, session, cap, outputs, window, stopper.stop)
    except KeyboardInterrupt:
        log("interrupted; shutting down")
    finally:
        _close_all(resources)
    stats = session.timer.summary() if session is not None else {}
    if session is not None:
        stats["state"] = {"mode": session.mode, "motion_power": session.motion_power,
                          "source_index": session.source_index, "passthrough": session.passthrough,
                          "reference_set": session.alpha_ref is not None}
        log(f"done: {stats['frames']} frames | {session.timer.line()}")
        if cfg.stats_json is not None:
            stats["config"] = {k: str(v) for k, v in asdict(cfg).items()}
            Path(cfg.stats_json).write_text(json.dumps(stats, indent=2))
    return stats


def _open_preview(cfg: LiveConfig, resources: list):
    if not cfg.preview:
        return None
    from .output import PreviewWindow

    window = PreviewWindow("lia-live")
    resources.append(window)
    return window


def _close_all(resources: list) -> None:
    """Release in reverse order of opening; one failing release never blocks the others."""
    for r in reversed(resources):
        try:
            r.close()
        except Exception as e:  # report and keep releasing the rest
            log(f"warning: closing {type(r).__name__} failed: {e}")


def _loop(cfg: LiveConfig, session: LiveSession, cap, outputs: list, window, stop: threading.Event) -> None:
    timer = session.timer
    last_out: np.ndarray | None = None
    next_print = time.perf_counter() + cfg.stats_every
    idle_wait = 1.0 / cfg.fps
    while session.running and not stop.is_set():
        if cfg.max_frames is not None and timer.frames >= cfg.max_frames:
            break
        t0 = time.perf_counter()
        frame = cap.read(timeout=idle_wait)
        if frame is None:
            if cap.finished:
                break
            if cap.lost and last_out is not None:
                _send(outputs, last_out, timer)  # keep the virtual camera alive while reopening
            if window is not None:
                session.handle_key(window.show(_preview_picture(session, None, last_out)))
            continue
        timer.add("capture", time.perf_counter() - t0)
        out = session.process(frame.image, frame.time)
        t0 = time.perf_counter()
        _send(outputs, out, timer)
        timer.add("send", time.perf_counter() - t0)
        timer.frame_done(frame.t, time.perf_counter())
        last_out = out
        if window is not None:
            session.handle_key(window.show(_preview_picture(session, frame.image, out)))
            if not window.open:
                session.quit()
        if cfg.stats_every > 0 and time.perf_counter() >= next_print:
            log(timer.line())
            next_print = time.perf_counter() + cfg.stats_every


def _send(outputs: list, out: np.ndarray, timer: StageTimer) -> None:
    for o in outputs:
        o.send(out)
    timer.sent += 1


def _preview_picture(session: LiveSession, camera: np.ndarray | None, out: np.ndarray | None) -> np.ndarray:
    from .output.overlay import draw_lines, side_by_side

    if out is None:
        out = np.zeros((360, 640, 3), np.uint8)
    if camera is None:
        camera = np.zeros_like(out)
    pic = side_by_side(camera, out, box=session.last_box, face_found=session.face_found)
    return draw_lines(pic, session.overlay_lines())
