"""What a compiled backend does when its output fails the check against fp32 eager.

A reduced-precision engine is rebuilt in fp32; when fp32 fails too, the work moves to the next backend
(``NEXT_BACKEND``: a CUDA-graph capture of the eager model, which starts in about a second and has no
compiler of its own that could be at fault); after that there is nothing left and the caller raises.
"""

from __future__ import annotations

NEXT_BACKEND = {"cuda": "cudagraph", "cpu": "eager"}


def next_fallback(precision: str, tried: list[str], next_backend: str = "cudagraph") -> str | None:
    """After a failed check: "fp32" (rebuild the same engine in fp32), ``next_backend`` (switch backend)
    or None (nothing left). ``tried`` lists the precisions and backends already used."""
    if precision != "fp32" and "fp32" not in tried:
        return "fp32"
    if next_backend not in tried:
        return next_backend
    return None


def next_backend_for(device_type: str) -> str:
    """The backend a failing engine falls back to on a device of this type."""
    return NEXT_BACKEND.get(device_type, "eager")
