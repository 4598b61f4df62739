"""The per-session motion policy: reference pose, relative/absolute mode, power, easing, direction offsets.

The :class:`~lia_live.animator.Animator` owns the latent arithmetic (``w + (α_src + p·(α − α_ref) + o)·Qᵀ``);
a :class:`MotionController` decides, frame by frame, which α, reference, power and offset go into it:

- the reference pose is taken from the first frame with a face (``reference="first"``) or, with
  ``reference="auto"``, from the frame of a short start-up window whose α is nearest the portrait's own
  α_src (so the animation starts from the portrait's pose); ``reset_reference()`` takes it again;
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

MODES = ("relative", "absolute")
REFERENCES = ("first", "auto")
POWER_RANGE = (0.0, 2.0)


@dataclass(frozen=True)
class MotionArgs:
    """What the animator needs for one frame: the α to show (None → the neutral pose) and how to apply it."""

    alpha: torch.Tensor | None  # (1, M)
    alpha_ref: torch.Tensor | None  # (1, M); None → absolute motion
    power: float
    offset: torch.Tensor | None  # (1, M)


@dataclass(frozen=True)
class ReferenceChoice:
    """How the reference was chosen: frame index in the window, its distance to α_src, the first frame's."""

    index: int
    distance: float
    first_distance: float
    window: int

    def describe(self) -> str:
        if self.window <= 1:
            return f"reference pose captured (distance to the portrait's pose {self.distance:.3f})"
        return (f"reference pose: frame {self.index + 1} of a {self.window}-frame window, distance to the "
                f"portrait's pose {self.distance:.3f} (first frame: {self.first_distance:.3f})")


class MotionController:
    """Reference, mode, power, easing and offsets for one live session (see the module docstring)."""

    def __init__(self, motion_dim: int, mode: str = "relative", power: float = 1.0, ease_seconds: float = 1.0,
                 reference: str = "first", window_seconds: float = 2.0):
        if mode not in MODES:
            raise UserError(f"unknown motion mode {mode!r}; choose relative or absolute")
        if reference not in REFERENCES:
            raise UserError(f"unknown reference choice {reference!r}; choose first or auto")
        self._lock = threading.RLock()
        self.motion_dim = motion_dim
        self.relative = mode == "relative"
        self.power = 1.0
        self.set_power(power)
        self.ease_seconds = float(ease_seconds)
        self.reference = reference
        self.window_seconds = float(window_seconds)
        self.alpha_ref: torch.Tensor | None = None
        self.alpha_source: torch.Tensor | None = None  # (1, M) the portrait's own α, for reference="auto"
        self.alpha: torch.Tensor | None = None  # the motion shown last (eased while the face is lost)
        self.offsets = torch.zeros(motion_dim)  # (M,)
        self.selected = 0  # the direction the offset keys act on
        self.choice: ReferenceChoice | None = None
        self._want_reference = True
        self._window: list[torch.Tensor] = []
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
            self._window, self._window_start = [], None

    def toggle_mode(self) -> str:
        with self._lock:
            self.relative = not self.relative
            return self.mode

    def set_power(self, value: float) -> float:
        if not math.isfinite(value):
            raise UserError(f"motion power must be a finite number, got {value}")
        with self._lock:
            self.power = round(min(POWER_RANGE[1], max(POWER_RANGE[0], float(value))), 3)
            return self.power

    def set_source_alpha(self, alpha: torch.Tensor) -> None:
        """The portrait's α_src (1, M): the target of ``reference="auto"``."""
        with self._lock:
            self.alpha_source = alpha.detach().float().reshape(1, -1)

    def select_direction(self, step: int = 1) -> int:
        with self._lock:
            self.selected = (self.selected + step) % self.motion_dim
            return self.selected

    def nudge(self, amount: float) -> float:
        """Add ``amount`` to the selected direction's offset; returns its new value."""
        with self._lock:
            self.offsets[self.selected] = round(float(self.offsets[self.selected]) + amount, 4)
            return float(self.offsets[self.selected])

    def reset_offsets(self) -> None:
        with self._lock:
            self.offsets.zero_()

    def set_offsets(self, values) -> None:
        t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if t.numel() != self.motion_dim or not torch.isfinite(t).all():
            raise UserError(f"offsets must be {self.motion_dim} finite numbers (one per motion direction), "
                            f"got {t.numel()}")
        with self._lock:
            self.offsets = t.clone()

    @property
    def want_reference(self) -> bool:
        return self._want_reference

    # ---- per frame (model thread) -------------------------------------------------------------------------
    def update(self, alpha: torch.Tensor | None, t: float) -> tuple[MotionArgs, str | None]:
        """Feed the driving frame's α (None: no face) at media time ``t``.

        Returns the animator's arguments for this frame and a message to show the user (or None), e.g. when
        the reference pose was just taken.
        """
        with self._lock:
            dt = 0.0 if self._t_last is None else max(0.0, t - self._t_last)
            self._t_last = t
            message = None
            if alpha is not None:
                if self._want_reference:
                    message = self._collect_reference(alpha, t)
                self.alpha = alpha
            elif self.alpha is not None:
                keep = math.exp(-dt / self.ease_seconds) if self.ease_seconds > 0 else 0.0
                target = self._neutral()
                self.alpha = target + (self.alpha - target) * keep  # (1, M)
            return self._args(), message

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

    def _collect_reference(self, alpha: torch.Tensor, t: float) -> str | None:
        if self.reference == "first" or self.alpha_source is None:
            self._set_reference([alpha], 0)
            return self.choice.describe() if self.relative and self.choice else None
        if self._window_start is None:
            self._window_start = t
        self._window.append(alpha.detach())
        if t - self._window_start < self.window_seconds:
            return None
        best = nearest_to(torch.cat(self._window), self.alpha_source)
        self._set_reference(self._window, best)
        return self.choice.describe() if self.relative and self.choice else None

    def _set_reference(self, window: list[torch.Tensor], index: int) -> None:
        src = self.alpha_source
        dist = [float((a.float().cpu() - src.cpu()).norm()) if src is not None else float("nan") for a in window]
        self.alpha_ref = window[index]
        self.choice = ReferenceChoice(index, dist[index], dist[0], len(window))
        self._want_reference = False
        self._window, self._window_start = [], None

    def state(self) -> dict:
        """A JSON-friendly view for stats and the overlay."""
        with self._lock:
            c = self.choice
            return {"mode": self.mode, "motion_power": self.power, "reference": self.reference,
                    "reference_set": self.alpha_ref is not None,
                    "reference_choice": None if c is None else {"index": c.index, "distance": round(c.distance, 5),
                                                                "first_distance": round(c.first_distance, 5),
                                                                "window": c.window},
                    "selected_direction": self.selected, "offsets": [round(float(v), 4) for v in self.offsets]}


def nearest_to(alphas: torch.Tensor, target: torch.Tensor) -> int:
    """Index of the row of ``alphas`` (N, M) nearest (L2) to ``target`` (1, M)."""
    d = (alphas.float().cpu() - target.float().cpu().reshape(1, -1)).norm(dim=1)  # (N,)
    return int(torch.argmin(d))
