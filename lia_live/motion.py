"""The per-session motion policy: reference pose, relative/absolute mode, power, easing, direction offsets.

The :class:`~lia_live.animator.Animator` owns the latent arithmetic (``w + (α_src + p·(α − α_ref) + o)·Qᵀ``);
a :class:`MotionController` decides, frame by frame, which α, reference, power and offset go into it:

- the reference pose is taken from the first frame with a face (``reference="first"``) or chosen among the
  frames of a start-up window (``auto``: α nearest the portrait's own α_src; ``landmarks``: face-mesh head
  pose and mouth/eye openness nearest the portrait's) by :func:`lia_live.reference.choose_reference`, the
  one implementation ``lia-animate`` uses too; ``reset_reference()`` takes it again. While a window is being
  collected :meth:`update` shows the neutral pose (the portrait as it is); a caller that can wait (a file)
  :meth:`offer` s the window's frames instead and renders them once the choice is made, or at the end of the
  input (:meth:`finish_reference`);
- while no face is seen, the shown motion eases back to the neutral pose (the portrait as it is) with
  time constant ``ease_seconds``, measured in media time so a file gives the same result at any speed;
- ``offsets`` (one value per motion direction) are added to α: LIA's linear manipulation, live.

Thread safety: the live loop mutates the controller from the UI thread (hotkeys) while the model thread
calls :meth:`update`; every method takes the controller's lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from .errors import UserError
from .reference import REFERENCES, LandmarkFeatures, ReferenceChoice, choose_reference

MODES = ("relative", "absolute")
POWER_RANGE = (0.0, 2.0)
EASE_RANGE = (0.0, 60.0)


@dataclass(frozen=True)
class MotionArgs:
    """What the animator needs for one frame: the α to show (None → the neutral pose) and how to apply it."""

    alpha: torch.Tensor | None  # (1, M)
    alpha_ref: torch.Tensor | None  # (1, M); None → absolute motion
    power: float
    offset: torch.Tensor | None  # (1, M)


class MotionController:
    """Reference, mode, power, easing and offsets for one live session (see the module docstring)."""

    def __init__(self, motion_dim: int, mode: str = "relative", power: float = 1.0, ease_seconds: float = 1.0,
                 reference: str = "first", window_seconds: float = 2.0):
        if mode not in MODES:
            raise UserError(f"unknown motion mode {mode!r}; choose relative or absolute")
        _check_reference(reference)
        self._lock = threading.RLock()
        self.motion_dim = motion_dim
        self.relative = mode == "relative"
        self.power = 1.0
        self.set_power(power)
        self.ease_seconds = 1.0
        self.set_ease(ease_seconds)
        self.reference = reference
        self.window_seconds = float(window_seconds)
        self.alpha_ref: torch.Tensor | None = None
        self.alpha_source: torch.Tensor | None = None  # (1, M) the portrait's own α, for reference="auto"
        self.source_features: LandmarkFeatures | None = None  # the portrait's, for reference="landmarks"
        self.source_features_known = False
        self.alpha: torch.Tensor | None = None  # the motion shown last (eased while the face is lost)
        self.offsets = torch.zeros(motion_dim)  # (M,)
        self.selected = 0  # the direction the offset keys act on
        self.choice: ReferenceChoice | None = None
        self._want_reference = True
        self._window: list[torch.Tensor] = []
        self._features: list[LandmarkFeatures | None] = []
        self._window_start: float | None = None
        self._t_last: float | None = None

    # ---- controls (any thread) --------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "relative" if self.relative else "absolute"

    def reset_reference(self) -> None:
        """Take the reference again from the next frame(s) with a face."""
        with self._lock:
            self._want_reference = True
            self._window, self._features, self._window_start = [], [], None

    def set_reference(self, reference: str) -> None:
        """Change how the reference is chosen, and take it again that way."""
        _check_reference(reference)
        with self._lock:
            self.reference = reference
            self.reset_reference()

    def toggle_mode(self) -> str:
        with self._lock:
            self.relative = not self.relative
            return self.mode

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise UserError(f"unknown motion mode {mode!r}; choose relative or absolute")
        with self._lock:
            self.relative = mode == "relative"
            return self.mode

    def set_power(self, value: float) -> float:
        """Set the motion power, clamped to POWER_RANGE (the hotkeys step past the ends)."""
        if not math.isfinite(value):
            raise UserError(f"motion power must be a finite number, got {value}")
        with self._lock:
            self.power = round(min(POWER_RANGE[1], max(POWER_RANGE[0], float(value))), 3)
            return self.power

    def set_ease(self, seconds: float) -> float:
        if not (math.isfinite(seconds) and EASE_RANGE[0] <= seconds <= EASE_RANGE[1]):
            raise UserError(f"ease must be a number of seconds in [{EASE_RANGE[0]:g}, {EASE_RANGE[1]:g}], "
                            f"got {seconds}")
        with self._lock:
            self.ease_seconds = float(seconds)
            return self.ease_seconds

    def set_source_alpha(self, alpha: torch.Tensor) -> None:
        """The portrait's α_src (1, M): the target of ``reference="auto"``."""
        with self._lock:
            self.alpha_source = alpha.detach().float().reshape(1, -1)

    def set_source_features(self, features: LandmarkFeatures | None) -> None:
        """The portrait's landmark features (None: the mesh found no face): the target of ``landmarks``."""
        with self._lock:
            self.source_features, self.source_features_known = features, True

    def select_direction(self, step: int = 1) -> int:
        with self._lock:
            self.selected = (self.selected + step) % self.motion_dim
            return self.selected

    def nudge(self, amount: float) -> float:
        """Add ``amount`` to the selected direction's offset; returns its new value."""
        with self._lock:
            self.offsets[self.selected] = round(float(self.offsets[self.selected]) + amount, 4)
            return float(self.offsets[self.selected])

    def set_offset(self, index: int, value: float) -> float:
        """Set direction ``index``'s offset (and select that direction); returns the value set."""
        if not 0 <= index < self.motion_dim or not math.isfinite(value):
            raise UserError(f"offset: direction must be in [0, {self.motion_dim - 1}] and the value finite, "
                            f"got direction {index}, value {value}")
        with self._lock:
            self.selected = index
            self.offsets[index] = round(float(value), 4)
            return float(self.offsets[index])

    def reset_offsets(self) -> None:
        with self._lock:
            self.offsets.zero_()

    def set_offsets(self, values) -> None:
        t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if t.numel() != self.motion_dim or not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise UserError(f"offsets must be {self.motion_dim} finite numbers (one per motion direction), "
                            f"got {t.numel()} values" + (f", {bad} of them not finite" if bad else ""))
        with self._lock:
            self.offsets = t.clone()

    @property
    def want_reference(self) -> bool:
        return self._want_reference

    @property
    def collecting(self) -> bool:
        """A reference is wanted and is chosen over a window of frames (``auto``/``landmarks``)."""
        return self._want_reference and self.reference != "first"

    @property
    def needs_landmarks(self) -> bool:
        """The window being collected is compared by landmarks: the caller should pass frame features."""
        return self._want_reference and self.reference == "landmarks"

    # ---- per frame (model thread) -------------------------------------------------------------------------
    def update(self, alpha: torch.Tensor | None, t: float, features: LandmarkFeatures | None = None
               ) -> tuple[MotionArgs, str | None]:
        """Feed the driving frame's α (None: no face) at media time ``t`` (and its landmark features while
        ``needs_landmarks``).

        Returns the animator's arguments for this frame and a message to show the user (or None), e.g. when
        the reference pose was just taken. While a window is collected the neutral pose is shown.
        """
        with self._lock:
            dt = 0.0 if self._t_last is None else max(0.0, t - self._t_last)
            self._t_last = t
            message = None
            if alpha is not None:
                if self._want_reference:
                    message = self._collect(alpha, t, features, "the portrait keeps its own pose until then")
                self.alpha = alpha
            elif self.alpha is not None:
                keep = math.exp(-dt / self.ease_seconds) if self.ease_seconds > 0 else 0.0
                target = self._neutral()
                self.alpha = target + (self.alpha - target) * keep  # (1, M)
            return self._args(), message

    def offer(self, alpha: torch.Tensor | None, t: float, features: LandmarkFeatures | None = None) -> str | None:
        """Add a frame to the reference window without showing anything (a caller that renders the window's
        frames once :attr:`collecting` turns False). Returns a message to show, or None."""
        with self._lock:
            if alpha is None or not self.collecting:
                return None
            return self._collect(alpha, t, features, "its frames are rendered once it is chosen")

    def finish_reference(self) -> str | None:
        """Choose the reference now from the frames collected so far (the input ended before the window
        did); None when no window is open."""
        with self._lock:
            if not self.collecting or not self._window:
                return None
            return self._choose()

    def _args(self) -> MotionArgs:
        ref = self.alpha_ref if self.relative else None
        if self.relative and ref is None and self.alpha is not None:
            ref = self.alpha  # reference still being chosen: show the neutral pose meanwhile
        offset = self.offsets.reshape(1, -1) if bool(self.offsets.any()) else None
        return MotionArgs(self.alpha, ref, self.power, offset)

    def _neutral(self) -> torch.Tensor:
        """The motion that shows the portrait as it is: the reference (relative) or α_src (absolute)."""
        if self.relative and self.alpha_ref is not None:
            return self.alpha_ref
        if self.alpha_source is not None:
            return self.alpha_source.to(self.alpha.device if self.alpha is not None else "cpu")
        assert self.alpha is not None
        return self.alpha

    def _collect(self, alpha: torch.Tensor, t: float, features: LandmarkFeatures | None, meanwhile: str
                 ) -> str | None:
        """One more frame for the reference; the choice's message once made (or the window's opening one)."""
        if self.reference == "first":
            self._window, self._features = [alpha.detach()], [features]
            return self._choose()
        opening = self._window_start is None
        start = t if self._window_start is None else self._window_start
        self._window_start = start
        self._window.append(alpha.detach())
        self._features.append(features)
        if t - start >= self.window_seconds:
            return self._choose()
        if opening:
            return (f"reference {self.reference}: choosing the reference pose among the frames of the next "
                    f"{self.window_seconds:g} s ({meanwhile})")
        return None

    def _choose(self) -> str | None:
        c = choose_reference(self.reference, torch.cat(self._window), self.alpha_source, self._features,
                             self.source_features)
        self.alpha_ref = self._window[c.index]
        self.choice = c
        self._want_reference = False
        self._window, self._features, self._window_start = [], [], None
        return c.describe() if self.relative else None

    def state(self) -> dict:
        """A JSON-friendly view for stats, front ends and the overlay."""
        with self._lock:
            return {"mode": self.mode, "power": self.power, "ease": self.ease_seconds, "reference": self.reference,
                    "reference_taken": self.alpha_ref is not None, "reference_pending": self._want_reference,
                    "reference_choice": None if self.choice is None else self.choice.to_dict(),
                    "selected_direction": self.selected, "offsets": [round(float(v), 4) for v in self.offsets]}


def _check_reference(reference: str) -> None:
    if reference not in REFERENCES:
        raise UserError(f"unknown reference choice {reference!r}; choose first, auto or landmarks")

