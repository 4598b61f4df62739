"""Numeric checks of a backend's output against the fp32 eager model, and the test card they run on.

- :func:`psnr`, :func:`rel_l2`: the two error measures used everywhere (checks, benchmark, tests).
- :func:`check_output` → :class:`Check`: rejects NaN/Inf, black (constant) frames and errors beyond the
  precision's tolerance (:func:`tolerance`).
- :func:`test_card`: a smooth face-like image for checks when no photo is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FP32_REL_TOL = 1e-4
LOW_REL_TOL = 2e-2
LOW_PSNR_DB = 35.0


@dataclass
class Check:
    """Result of comparing an engine's output with fp32 eager on the same real input."""

    name: str
    rel_l2: float
    psnr_db: float
    finite: bool
    black: bool
    ok: bool
    reason: str

    def __str__(self) -> str:
        state = "ok" if self.ok else f"FAILED ({self.reason})"
        return f"{self.name}: rel L2 {self.rel_l2:.2e}, PSNR {self.psnr_db:.1f} dB, {state}"


def psnr(got: torch.Tensor, want: torch.Tensor, peak: float = 2.0) -> float:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2), both clamped to that range first."""
    mse = float((got.float().clamp(-1, 1) - want.float().clamp(-1, 1)).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ in float64."""
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


def tolerance(precision: str) -> tuple[float, float]:
    """(max relative L2, min PSNR dB) accepted for ``precision``."""
    return (FP32_REL_TOL, 0.0) if precision == "fp32" else (LOW_REL_TOL, LOW_PSNR_DB)


def check_output(name: str, got: torch.Tensor, want: torch.Tensor, precision: str,
                 image: bool = True) -> Check:
    """Reject NaN/Inf, black (constant) frames, and errors beyond the precision's tolerance."""
    got = got.detach().float().cpu()
    want = want.detach().float().cpu()
    finite = bool(torch.isfinite(got).all())
    black = bool(image and finite and float(got.clamp(-1, 1).std()) < 1e-3 <= float(want.clamp(-1, 1).std()))
    r = rel_l2(got, want) if finite else math.inf
    p = psnr(got, want) if finite and image else math.inf
    max_rel, min_psnr = tolerance(precision)
    reason = ("non-finite values" if not finite else "constant (black) frame" if black
              else f"rel L2 {r:.2e} > {max_rel:.0e}" if r > max_rel
              else f"PSNR {p:.1f} dB < {min_psnr:.0f} dB" if p < min_psnr else "")
    return Check(name, r, p, finite, black, not reason, reason)


def test_card(size: int) -> torch.Tensor:
    """A smooth, face-like test card (1, 3, S, S) in [-1, 1] for engine checks when no photo is given."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    face = ((xs / 0.62) ** 2 + (ys / 0.8) ** 2 < 1).float()
    eyes = ((((xs.abs() - 0.27) / 0.11) ** 2 + ((ys + 0.2) / 0.06) ** 2) < 1).float()
    mouth = (((xs / 0.25) ** 2 + ((ys - 0.38) / 0.06) ** 2) < 1).float()
    skin = torch.stack([0.85 - 0.2 * ys, 0.65 - 0.15 * ys, 0.55 - 0.1 * ys])  # (3, S, S)
    bg = torch.stack([0.2 + 0.3 * xs.abs(), 0.3 + 0.1 * ys, 0.5 + 0 * xs])  # (3, S, S)
    img = bg * (1 - face) + skin * face
    img = img * (1 - 0.8 * eyes) * (1 - 0.5 * mouth)
    return (img.clamp(0, 1) * 2 - 1).unsqueeze(0)  # (1, 3, S, S)


test_card.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name
