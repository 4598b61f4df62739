"""lia-live: real-time face reenactment with LIA (Latent Image Animator).

Public API (imported lazily, so ``import lia_live`` has no side effects and stays cheap):
``Generator``, ``GeneratorConfig``, ``load_generator``, ``save_generator``, ``Animator``, ``UserError``.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "Generator": ("lia_live.model", "Generator"),
    "GeneratorConfig": ("lia_live.model", "GeneratorConfig"),
    "load_generator": ("lia_live.model.checkpoint", "load_generator"),
    "save_generator": ("lia_live.model.checkpoint", "save_generator"),
    "Animator": ("lia_live.animator", "Animator"),
    "UserError": ("lia_live.errors", "UserError"),
    "CheckpointError": ("lia_live.errors", "CheckpointError"),
}

__all__ = list(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        mod, attr = _EXPORTS[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'lia_live' has no attribute {name!r}")
