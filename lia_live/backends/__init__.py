"""Inference backends behind one interface; see ``base.py``. Import is cheap: engines load lazily."""

from .base import (Backend, BackendInfo, SourceState, available_backends, backend_info, backend_names,
                   create_backend, default_precision, register_backend, resolve_backend_name)

__all__ = ["Backend", "BackendInfo", "SourceState", "available_backends", "backend_info", "backend_names",
           "create_backend", "default_precision", "register_backend", "resolve_backend_name"]


def _load_builtin() -> None:
    """Register the built-in backends (each module registers itself; heavy imports stay lazy)."""
    from . import compiled, eager, onnxrt, tensorrt  # noqa: F401
