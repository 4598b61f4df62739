"""The offline job behind ``lia-animate``: source + driving video → animated video / PNG frames."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from .animator import Animator
from .errors import UserError
from .imaging import from_tensor
from .io import open_frames, open_writer, read_image
from .runtime import ModelConfig, make_animator
from .signals import Stopper


def _progress(it: Iterable, total: int | None, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total or None, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True)


def _crop_stream(frames: Iterator[np.ndarray], mode: str, size: int) -> Iterator[np.ndarray]:
    if mode == "none":
        yield from frames
        return
    from .tracking import FaceCropper

    cropper = FaceCropper(out_size=size)
    for f in frames:
        yield cropper.crop(f)


def crop_source(image: np.ndarray, mode: str, size: int, name: str = "source") -> np.ndarray:
    if mode == "none":
        return image
    from .tracking import crop_portrait

    return crop_portrait(image, size, name=name)


def run_manipulation(anim: Animator, direction: int, lo: float, hi: float, steps: int) -> Iterator[np.ndarray]:
    """The official linear manipulation: latent = w + α_src·Qᵀ + a·q_K for a in linspace(lo, hi, steps)."""
    m = anim.basis.shape[1]
    if not 0 <= direction < m:
        raise UserError(f"--manipulate must be a direction index in [0, {m - 1}], got {direction}")
    src = anim.source
    for a in np.linspace(lo, hi, steps):
        latent = src.latent + src.alpha @ anim.basis.t() + float(a) * anim.basis[:, direction]
        yield from_tensor(anim.render_latent(latent))[0]


@dataclass
class AnimateResult:
    """What ``run_animate`` wrote: ``frames`` frames to ``output``; ``signal_exit`` is 130/143 when a signal
    stopped the run early (the output then holds the frames rendered so far, finalised and playable)."""

    frames: int
    output: object
    signal_exit: int | None = None
    truncated_input: bool = False


def run_animate(cfg) -> AnimateResult:
    """Run ``lia-animate``.

    Inputs and the output path are checked before the model is loaded, so a typo fails at once. The output
    appears complete under its name or not at all: any error removes what was started (UserError). SIGTERM
    or a first Ctrl-C finish the current frame and finalise a playable, shorter output (``signal_exit``
    143/130); a second Ctrl-C stops at once and keeps nothing.
    """
    source = read_image(cfg.source, "source image")
    drive = None if cfg.manipulate is not None else open_frames(cfg.driving, cfg.fps)
    if drive is None:
        writer = open_writer(cfg.output, cfg.fps or 10.0, overwrite=cfg.overwrite)
    else:
        writer = open_writer(cfg.output, cfg.fps or drive.fps, audio_from=drive.path if drive.has_audio else None,
                             overwrite=cfg.overwrite)
    stopper = Stopper("finishing the current frame and writing what was rendered (Ctrl-C again: keep nothing)")
    try:
        with stopper:
            anim = make_animator(ModelConfig(cfg.checkpoint, cfg.device, cfg.backend, cfg.precision),
                                 cfg.motion_power)
            anim.set_source(crop_source(source, cfg.source_crop, anim.size, str(cfg.source)))
            if drive is None:
                frames = run_manipulation(anim, cfg.manipulate, cfg.range[0], cfg.range[1], cfg.steps)
                total = cfg.steps
            else:
                total = min(len(drive), cfg.max_frames) if cfg.max_frames else len(drive)
                frames = _animate_frames(anim, _crop_stream(iter(drive), cfg.crop, anim.size), cfg.mode,
                                         cfg.max_frames)
            with torch.inference_mode():
                for out in _progress(frames, total, cfg.progress, "lia-animate"):
                    writer.write(out)
                    if stopper.requested:
                        break
            if writer.frames == 0:
                writer.abort()
                if stopper.requested:
                    return AnimateResult(0, None, stopper.exit_code)
                raise UserError(f"no frames could be read from {cfg.driving}")
            path = writer.close()
    except BaseException:
        writer.abort()  # errors and a second Ctrl-C: nothing is kept, not even a hidden temp file
        raise
    return AnimateResult(writer.frames, path, stopper.exit_code, bool(drive is not None and drive.truncated))


def _animate_frames(anim: Animator, frames: Iterator[np.ndarray], mode: str,
                    max_frames: int | None) -> Iterator[np.ndarray]:
    for i, frame in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            break
        if i == 0:
            anim.set_reference(frame if mode == "relative" else None)
        yield anim.step(frame)
