"""The engine cache: where built engines live, how they are keyed, and how they are committed.

An engine (a TensorRT ExportedProgram, an ONNX file, a bundle of torch.compile cache artifacts) is only
valid for the exact weights, resolution, precision, graph and — for GPU engines — GPU and library
versions it was built with. All of that goes into an :class:`EngineSpec`; the file name carries a short
digest of it and a JSON sidecar carries the whole spec plus the file's SHA-256. :func:`lookup` accepts
nothing unless the sidecar matches exactly.

Location (:func:`engine_dir`): an explicit folder, else ``$LIA_ENGINE_DIR``, else the per-user cache
``$XDG_CACHE_HOME/lia-live/engines`` (``~/.cache/lia-live/engines``) — never the working folder, so the
tools run from a read-only folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..fsutil import atomic_path, sha256_file, write_atomic
from ..model import Generator

ENV_ENGINE_DIR = "LIA_ENGINE_DIR"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lia-live`` (default ``~/.cache/lia-live``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lia-live"


def engine_dir(path: str | os.PathLike | None = None) -> Path:
    """Where engines live: ``path``, else ``$LIA_ENGINE_DIR``, else ``user_cache_dir()/engines``."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_ENGINE_DIR)
    return Path(env) if env else user_cache_dir() / "engines"


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

    kind: str  # "tensorrt", "onnx", "inductor"
    graph: str  # "motion", "synthesis", "both"
    weights: str  # weights_hash()
    size: int
    precision: str
    extra: dict = field(default_factory=dict)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def filename(self, suffix: str) -> str:
        """Readable and unique: graph, resolution, precision, device identity, versions, digest."""
        parts = [f"lia-{self.graph}", str(self.size), self.precision]
        for key in ("mode", "gpu", "capability", "tensorrt", "torch_tensorrt", "opset"):
            if key in self.extra:
                parts.append(f"{key.replace('_', '')}{_slug(str(self.extra[key]))}")
        parts.append(self.weights[:12])
        parts.append(self.digest())
        return "_".join(parts) + suffix


def sidecar(path: Path) -> Path:
    """The JSON file beside an engine that records its spec and checksum."""
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
    if not isinstance(meta, dict):
        return True, "metadata is not a JSON object"
    want = asdict(spec)
    got = meta.get("spec")
    if got != want:
        diff = sorted(k for k in set(want) | set(got or {}) if (got or {}).get(k) != want.get(k))
        if "extra" in diff and isinstance(got, dict) and isinstance(got.get("extra"), dict):
            diff.remove("extra")
            diff += sorted(f"extra.{k}" for k in set(want["extra"]) | set(got["extra"])
                           if got["extra"].get(k) != want["extra"].get(k))
        return True, "built for a different " + ", ".join(diff)
    if meta.get("sha256") != sha256_file(path):
        return True, "engine file does not match its recorded checksum"
    return False, "up to date"


def lookup(root: Path, spec: EngineSpec, suffix: str) -> tuple[Path, bool, str]:
    """(path the engine lives at, usable?, reason). Never trust a file whose sidecar does not match."""
    path = Path(root) / spec.filename(suffix)
    stale, why = is_stale(path, spec)
    return path, not stale, why


def commit(path: Path, spec: EngineSpec, write: Callable[[Path], None], **info) -> Path:
    """Build into a temporary file beside ``path`` (``write(tmp)``), move it into place, write the sidecar last.

    A reader never sees a half-written engine: the engine appears whole or not at all
    (:func:`lia_live.fsutil.atomic_path`), and without its sidecar it is never loaded.
    """
    with atomic_path(path) as tmp:
        write(tmp)
    meta = {"spec": asdict(spec), "sha256": sha256_file(path), **info}
    write_atomic(sidecar(path), json.dumps(meta, indent=2, sort_keys=True))
    return path
