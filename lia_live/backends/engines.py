"""Engine files on disk (keyed, never loaded stale) and the post-build check against fp32 eager.

An engine (a TensorRT ExportedProgram, an ONNX file) is only valid for the exact weights, resolution,
precision, graph, and — for TensorRT — GPU and library versions it was built with. All of that goes
into an :class:`EngineSpec`; the file name carries a short digest of it and a JSON sidecar carries the
whole spec plus the file's SHA-256. :func:`lookup` loads nothing unless the sidecar matches exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..model import Generator

DEFAULT_ENGINE_DIR = Path("engines")
FP32_REL_TOL = 1e-4
LOW_REL_TOL = 2e-2
LOW_PSNR_DB = 35.0


def engine_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$LIA_ENGINE_DIR``, else ``./engines``."""
    return Path(path or os.environ.get("LIA_ENGINE_DIR") or DEFAULT_ENGINE_DIR)


def weights_hash(generator: Generator) -> str:
    """SHA-256 (hex) of the generator's config and state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(json.dumps(generator.config.to_dict(), sort_keys=True).encode())
    for name, t in generator.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.detach().to("cpu").clone(memory_format=torch.contiguous_format).reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", s).strip("-").lower() or "none"


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine file depends on. ``extra`` holds runtime/library versions and GPU identity."""

    kind: str  # "tensorrt", "onnx"
    graph: str  # "motion", "synthesis"
    weights: str  # weights_hash()
    size: int
    precision: str
    extra: dict = field(default_factory=dict)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def filename(self, suffix: str) -> str:
        """Readable and unique: graph, resolution, precision, device identity, versions, digest."""
        parts = [f"lia-{self.graph}", str(self.size), self.precision]
        for key in ("gpu", "capability", "tensorrt", "torch_tensorrt", "opset"):
            if key in self.extra:
                parts.append(f"{key.replace('_', '')}{_slug(str(self.extra[key]))}")
        parts.append(self.weights[:12])
        parts.append(self.digest())
        return "_".join(parts) + suffix


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def is_stale(path: Path, spec: EngineSpec) -> tuple[bool, str]:
    """(stale?, why). Missing file or sidecar, another spec (weights, GPU, versions…), or altered bytes."""
    meta_path = sidecar(path)
    if not path.is_file():
        return True, "no engine file"
    if not meta_path.is_file():
        return True, "no metadata sidecar (foreign or interrupted build)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return True, f"unreadable metadata ({e})"
    want = asdict(spec)
    got = meta.get("spec")
    if got != want:
        diff = sorted(k for k in set(want) | set(got or {}) if (got or {}).get(k) != want.get(k))
        if "extra" in diff and isinstance(got, dict) and isinstance(got.get("extra"), dict):
            diff.remove("extra")
            diff += sorted(f"extra.{k}" for k in set(want["extra"]) | set(got["extra"])
                           if got["extra"].get(k) != want["extra"].get(k))
        return True, "built for a different " + ", ".join(diff)
    if meta.get("sha256") != file_sha256(path):
        return True, "engine file does not match its recorded checksum"
    return False, "up to date"


def lookup(root: Path, spec: EngineSpec, suffix: str) -> tuple[Path, bool, str]:
    """(path the engine lives at, usable?, reason). Never trust a file whose sidecar does not match."""
    path = root / spec.filename(suffix)
    stale, why = is_stale(path, spec)
    return path, not stale, why


def commit(path: Path, spec: EngineSpec, write: Callable[[Path], None], **info) -> Path:
    """Build into a temp file, then atomically move it into place and write the sidecar last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta = {"spec": asdict(spec), "sha256": file_sha256(path), **info}
    sidecar(path).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


# ---- validation of a built engine against the fp32 eager model --------------------------------------

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


def next_fallback(precision: str, tried: list[str]) -> str | None:
    """After a failed check: a reduced-precision engine retries in fp32, then the ``compile`` backend.

    Returns "fp32" (rebuild the same engine in fp32), "compile" (switch backend) or None (nothing left).
    """
    if precision != "fp32" and "fp32" not in tried:
        return "fp32"
    if "compile" not in tried:
        return "compile"
    return None


def synthetic_face(size: int) -> torch.Tensor:
    """A smooth, face-like test card (1, 3, S, S) in [-1, 1] for engine checks when no photo is given."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    face = ((xs / 0.62) ** 2 + (ys / 0.8) ** 2 < 1).float()
    eyes = ((((xs.abs() - 0.27) / 0.11) ** 2 + ((ys + 0.2) / 0.06) ** 2) < 1).float()
    mouth = ((((xs / 0.25) ** 2 + ((ys - 0.38) / 0.06) ** 2) < 1)).float()
    skin = torch.stack([0.85 - 0.2 * ys, 0.65 - 0.15 * ys, 0.55 - 0.1 * ys])  # (3, S, S)
    bg = torch.stack([0.2 + 0.3 * xs.abs(), 0.3 + 0.1 * ys, 0.5 + 0 * xs])
    img = bg * (1 - face) + skin * face
    img = img * (1 - 0.8 * eyes) * (1 - 0.5 * mouth)
    return (img.clamp(0, 1) * 2 - 1).unsqueeze(0)
