"""Inference backends behind one interface; see ``base.py``. Import is cheap: engines load lazily."""

from .base import (
    Backend,
    BackendInfo,
    BackendOption,
    SourceState,
    available_backends,
    backend_info,
    backend_names,
    create_backend,
    default_batch_size,
    default_precision,
    parse_backend_options,
    register_backend,
    resolve_backend_name,
)
from .cache import engine_dir, user_cache_dir

__all__ = ["Backend", "BackendInfo", "BackendOption", "SourceState", "available_backends", "backend_info",
           "backend_names", "create_backend", "default_batch_size", "default_precision", "engine_dir",
           "parse_backend_options", "register_backend", "resolve_backend_name", "user_cache_dir"]


def _load_builtin() -> None:
    """Register the built-in backends (each module registers itself; heavy imports stay lazy)."""
    from . import compiled, cudagraph, eager, onnxrt, tensorrt  # noqa: F401
