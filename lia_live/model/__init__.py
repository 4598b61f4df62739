"""Pure tensor code for LIA: no devices, no I/O."""

from .config import GeneratorConfig
from .generator import Generator
from .motion import Direction, qr_basis

__all__ = ["Generator", "GeneratorConfig", "Direction", "qr_basis"]
