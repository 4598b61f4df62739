"""The offline job behind ``lia-animate``: source + driving video (or a motion template) → video / PNG frames.

    decode + crop (thread) ─► [motion encoder, batch of N] ─► [synthesis, batch of N] ─► encode (thread)

Decoding and encoding run off the model's thread; the model works on ``batch_size`` frames per step (on a
GPU batches amortise the per-call cost: 1.26 ms/frame at batch 32 against 9.7 ms at batch 1, measured on
an H200). The reference pose of relative motion is the first driving frame (``first``, the official
demo), the frame whose motion is nearest the portrait's own (``auto``), or the frame whose face-mesh
landmarks (head pose, mouth and eye openness) are nearest the portrait's (``landmarks``, see
:mod:`lia_live.reference`; one face-mesh run per driving frame in the decode thread, about 20 ms per frame
on one CPU core). Every frame's motion can be recorded as a template (:mod:`lia_live.templates`) and
replayed onto any portrait without the video.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .animator import Animator
from .backends import default_batch_size
from .errors import UserError
from .imaging import from_tensor, to_tensor
from .io import open_frames, open_writer, read_image
from .log import log, plural, progress_bar
from .motion import MotionArgs, MotionController
from .paths import check_animate_places
from .pipeline import END, BackgroundSink, Handoff, Pipeline
from .reference import LandmarkReader, ReferenceChoice, landmark_features
from .runtime import make_animator
from .settings import AnimateConfig
from .signals import Stopper
from .templates import MotionRecorder, load_template
from .tracking import FaceCropper, crop_portrait


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an image (a view; the image itself when square): what ``none`` means for
    «crop» and «source_crop» in every tool."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def _crop_stream(frames: Iterator[np.ndarray], mode: str, size: int, faces: dict | None = None
                 ) -> Iterator[np.ndarray]:
    """Driving frames cropped around the tracked face (``mode`` auto); ``faces`` counts "frames" and "found"."""
    if mode == "none":
        yield from (center_square(f) for f in frames)
        return
    cropper = FaceCropper(out_size=size)
    faces = faces if faces is not None else {}
    try:
        for f in frames:
            crop = cropper.crop(f)
            faces["frames"] = faces.get("frames", 0) + 1
            faces["found"] = faces.get("found", 0) + int(bool(cropper.last and cropper.last.found))
            yield crop
    finally:
        cropper.close()


def crop_source(image: np.ndarray, mode: str, size: int, name: str = "source") -> np.ndarray:
    if mode == "none":
        return center_square(image)
    return crop_portrait(image, size, name=name)


def run_manipulation(anim: Animator, direction: int, lo: float, hi: float, steps: int) -> Iterator[np.ndarray]:
    """The official linear manipulation: latent = w + α_src·Qᵀ + a·q_K for a in linspace(lo, hi, steps)."""
    m = anim.basis.shape[1]
    if not 0 <= direction < m:
        raise UserError(f"«manipulate» must be a direction index in [0, {m - 1}], got {direction}")
    for a in np.linspace(lo, hi, steps):
        yield from_tensor(anim.render_direction(direction, float(a)))[0]


# ---- batched driving ---------------------------------------------------------------------------------
def _batches(frames: Iterable[np.ndarray], size: int, batch: int, limit: int | None) -> Iterator[torch.Tensor]:
    """Model-ready batches (B, 3, S, S) of the driving frames (resized to the model size)."""
    buf: list[torch.Tensor] = []
    for i, f in enumerate(frames):
        if limit is not None and i >= limit:
            break
        buf.append(to_tensor(f, size))  # (1, 3, S, S)
        if len(buf) == batch:
            yield torch.cat(buf)
            buf = []
    if buf:
        yield torch.cat(buf)


def render_args(anim: Animator, args: list[MotionArgs]) -> torch.Tensor:
    """Images (B, 3, S, S) for a batch of per-frame motion arguments.

    The latent of each frame is computed on its own (1, M) row, in the same way whether the arguments come
    from a video or a motion template, so a replay reproduces the direct run bit for bit.
    """
    latents = [anim.latent(a.alpha, a.alpha_ref, a.power, a.offset) for a in args]  # B × (1, D)
    return anim.render_latent(torch.cat(latents))  # (B, 3, S, S)


@dataclass
class DrivePlan:
    """How driving motion becomes frames: the mode, the reference choice, the power."""

    mode: str = "relative"
    reference: str = "first"
    power: float = 1.0


class VideoDriver:
    """Motion of a driving video → per-frame :class:`MotionArgs`: a :class:`MotionController` (the live
    loop's) whose reference window is the whole clip, so both tools choose the reference the same way."""

    def __init__(self, anim: Animator, plan: DrivePlan, fps: float = 25.0):
        self.anim, self.plan, self.fps = anim, plan, fps
        reference = plan.reference if plan.mode == "relative" else "first"  # absolute motion has no reference
        self.motion = MotionController(anim.basis.shape[1], mode=plan.mode, power=plan.power, ease_seconds=0.0,
                                       reference=reference, window_seconds=math.inf)
        self.motion.set_source_alpha(anim.require_source().alpha)
        self.frames = 0

    @property
    def choice(self) -> ReferenceChoice | None:
        return self.motion.choice

    @property
    def whole_clip(self) -> bool:
        """The reference is chosen over every frame (``auto``/``landmarks`` in relative mode)."""
        return self.plan.mode == "relative" and self.motion.collecting

    def choose(self, all_alphas: torch.Tensor, features: list | None = None) -> None:
        """Offer every frame's α (N, M) (and landmark features) as candidates and choose the reference."""
        for i, a in enumerate(all_alphas):
            self.motion.offer(a[None], i / self.fps, features[i] if features is not None and i < len(features)
                              else None)
        message = self.motion.finish_reference()
        if message:
            log(message)

    def args(self, alphas: torch.Tensor) -> list[MotionArgs]:
        """Arguments for a batch of α (B, M) in the plan's mode."""
        out = []
        for a in alphas:
            args, message = self.motion.update(a[None], self.frames / self.fps)
            self.frames += 1
            if message and self.plan.reference != "first":
                log(message)
            out.append(args)
        return out


def _with_landmarks(frames: Iterable[np.ndarray], out: list) -> Iterator[np.ndarray]:
    """Pass ``frames`` through, appending each one's landmark features (None: no face) to ``out``."""
    with LandmarkReader() as reader:
        for f in frames:
            out.append(reader.features(f))
            yield f


def _background(items: Iterable, pipe: Pipeline, name: str, capacity: int = 2) -> Handoff:
    """Iterate ``items`` in a thread of ``pipe``; returns the hand-off that delivers them in order."""
    out = Handoff(newest_only=False, capacity=capacity, name=name)
    it = iter(items)

    def pull(_item):
        try:
            return next(it)
        except StopIteration:
            return END

    pipe.stage(name, pull, None, out)
    return out


def _drain(handoff: Handoff, pipe: Pipeline) -> Iterator[Any]:
    while True:
        item = handoff.get(pipe.stop)
        if item is END:
            pipe.raise_errors()
            return
        if item is not None:
            yield item


def animate_video(anim: Animator, frames: Iterable[np.ndarray], plan: DrivePlan, batch: int,
                  limit: int | None = None, recorder=None, portrait: np.ndarray | None = None
                  ) -> Iterator[np.ndarray]:
    """Animate ``anim``'s source with driving frames (already cropped), ``batch`` frames per model step.

    Decoding (and face tracking) of ``frames`` runs in a background thread. ``portrait`` (the cropped source
    image, RGB uint8) is needed by ``plan.reference == "landmarks"``.
    """
    driver = VideoDriver(anim, plan)
    by_landmarks = plan.mode == "relative" and plan.reference == "landmarks"
    features: list = []  # per driving frame, filled by the decode thread (reference "landmarks")
    if by_landmarks:
        if portrait is None:
            raise ValueError("reference 'landmarks' needs the portrait image")
        source_features = landmark_features(portrait)
        if source_features is None:
            raise UserError("«reference» landmarks: the face mesh finds no face in the source portrait (too small, "
                            "e.g. a full-body image, or turned away); use --reference first or auto")
        driver.motion.set_source_features(source_features)
        frames = _with_landmarks(frames, features)
    pipe = Pipeline()
    decoded = _background(_batches(frames, anim.size, batch, limit), pipe, "decode")
    pipe.start()
    try:
        with torch.inference_mode():
            if driver.whole_clip:
                alphas = [anim.motion(x) for x in _drain(decoded, pipe)]  # every frame's α first
                if not alphas:
                    return
                all_alphas = torch.cat(alphas)  # (N, M)
                driver.choose(all_alphas, features if by_landmarks else None)
                batches: Iterable[torch.Tensor] = all_alphas.split(batch)
            else:
                batches = (anim.motion(x) for x in _drain(decoded, pipe))
            for alpha in batches:
                args = driver.args(alpha)
                if recorder is not None:
                    for a in args:
                        recorder.add(float(recorder.frames) / recorder.fps, a.alpha, a)
                yield from from_tensor(render_args(anim, args))
    finally:
        pipe.join()
    pipe.raise_errors()


def replay_template(anim: Animator, template, batch: int, limit: int | None = None) -> Iterator[np.ndarray]:
    """Animate ``anim``'s source from a motion template, ``batch`` frames per step."""
    template.check_model(anim)
    args = list(itertools.islice(template.args(anim.device), limit))  # only the frames asked for
    with torch.inference_mode():
        for i in range(0, len(args), batch):
            yield from from_tensor(render_args(anim, args[i:i + batch]))


@dataclass
class AnimateResult:
    """What ``run_animate`` wrote: ``frames`` frames to ``output``; ``signal_exit`` is 130/143 when a signal
    stopped the run early (the output then holds the frames rendered so far, finalised and playable)."""

    frames: int
    output: object
    signal_exit: int | None = None
    truncated_input: bool = False


def _open_output(cfg: AnimateConfig, drive, template):
    """The writer of ``cfg.output``: at the driving video's fps (with its audio), the template's, or 10."""
    if drive is None:
        fps = cfg.fps or (template.fps if template is not None else 10.0)
        return open_writer(cfg.output, fps, overwrite=cfg.overwrite)
    return open_writer(cfg.output, cfg.fps or drive.fps, audio_from=drive.path if drive.has_audio else None,
                       overwrite=cfg.overwrite)


def _frames_for(cfg: AnimateConfig, anim: Animator, portrait: np.ndarray, template, drive, batch: int, recorder,
                faces: dict) -> tuple[Iterator[np.ndarray], int]:
    """The output frames of the chosen mode (manipulation, template replay, driving video) and their count."""
    if cfg.manipulate is not None:
        return run_manipulation(anim, cfg.manipulate, cfg.range[0], cfg.range[1], cfg.steps), cfg.steps
    if template is not None:
        return replay_template(anim, template, batch, cfg.max_frames), min(len(template),
                                                                          cfg.max_frames or len(template))
    total = min(len(drive), cfg.max_frames) if cfg.max_frames else len(drive)
    plan = DrivePlan(cfg.motion.mode, cfg.motion.reference, cfg.motion.motion_power)
    return animate_video(anim, _crop_stream(iter(drive), cfg.motion.crop, anim.size, faces), plan, batch,
                         cfg.max_frames, recorder, portrait), total


def _no_face_error(cfg: AnimateConfig, faces: dict) -> UserError | None:
    if faces.get("frames") and not faces.get("found"):
        return UserError(f"no face found in any of the {plural(faces['frames'], 'frame')} of {cfg.driving} "
                         "(«crop» auto), so there is no motion to follow; nothing was written")
    return None


def run_animate(cfg: AnimateConfig) -> AnimateResult:
    """Run ``lia-animate``.

    Inputs and the output path are checked before the model is loaded, so a typo fails at once. The output
    appears complete under its name or not at all: any error removes what was started (UserError). SIGTERM
    or a first Ctrl-C finish the current frame and finalise a playable, shorter output (``signal_exit``
    143/130), and a motion recording of exactly the frames written; further SIGTERMs while finalising are
    taken as the same request; a second Ctrl-C stops at once and keeps nothing.
    """
    check_animate_places(cfg)  # outputs against outputs and inputs (Python callers too), before any work
    source = read_image(cfg.source, "source image")
    template = load_template(cfg.template, cfg.max_frames) if cfg.template is not None else None
    drive = None
    if cfg.manipulate is None and template is None and cfg.driving is not None:
        drive = open_frames(cfg.driving, cfg.fps)
    writer = _open_output(cfg, drive, template)
    encoder: BackgroundSink | None = None
    recorder = None
    faces: dict[str, int] = {}
    stopper = Stopper("finishing the current frame and writing what was rendered (Ctrl-C again: keep nothing)")
    try:
        with stopper:  # held until every file is in place: a signal while finalising cannot cut a write
            anim = make_animator(cfg.model, cfg.motion.motion_power)
            batch = cfg.batch_size or default_batch_size(anim.device, anim.backend.name)
            portrait = crop_source(source, cfg.motion.source_crop, anim.size, str(cfg.source))
            anim.set_source(portrait)
            if cfg.record_motion is not None and drive is not None:
                recorder = MotionRecorder(anim, fps=cfg.fps or drive.fps)
            frames, total = _frames_for(cfg, anim, portrait, template, drive, batch, recorder, faces)
            encoder = BackgroundSink(writer.write, "encode")  # encoding off the model's thread
            with progress_bar(total, "lia-animate", enabled=cfg.progress) as bar:
                for out in frames:
                    encoder.put(out)
                    bar.update(1)
                    if stopper.requested:
                        break
            getattr(frames, "close", lambda: None)()  # stops the decode thread of an unfinished video
            encoder.finish()
            if writer.frames == 0:
                writer.abort()
                if stopper.requested:
                    return AnimateResult(0, None, stopper.exit_code)
                raise UserError(f"no frames could be read from {cfg.driving}")
            no_face = None if stopper.requested else _no_face_error(cfg, faces)
            if no_face is not None:
                raise no_face
            path = writer.close()
            if recorder is not None and recorder.frames and cfg.record_motion is not None:
                recorder.truncate(writer.frames)  # motion is recorded a batch ahead: keep the frames written
                recorder.save(cfg.record_motion)
                log(f"motion recorded: {cfg.record_motion} ({plural(recorder.frames, 'frame')})")
    except BaseException:
        if encoder is not None:
            encoder.cancel()
        writer.abort()  # errors and a second Ctrl-C: nothing is kept, not even a hidden temp file
        raise
    return AnimateResult(writer.frames, path, stopper.exit_code, bool(drive is not None and drive.truncated))


__all__ = ["DrivePlan", "VideoDriver", "animate_video", "center_square", "crop_source", "render_args",
           "replay_template", "run_animate", "run_manipulation"]
