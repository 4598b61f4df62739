"""Typed generator configuration, stored beside the weights in every lia-live checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class GeneratorConfig:
    """Hyper-parameters that fix the generator's architecture.

    ``size``, ``style_dim``, ``motion_dim`` and ``channel_multiplier`` are the official ones
    (256/512, 512, 20, 1). ``channel_div`` divides every channel count: 1 for the official networks,
    larger for the small models used in tests and the bundled demo.
    """

    size: int = 256
    style_dim: int = 512
    motion_dim: int = 20
    channel_multiplier: int = 1
    channel_div: int = 1

    def __post_init__(self):
        if self.size < 64 or self.size > 2048 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two in [64, 2048], got {self.size}")
        if self.style_dim > 4096 or self.motion_dim < 1 or self.motion_dim > self.style_dim:
            raise ValueError(f"need 1 <= motion_dim ({self.motion_dim}) <= style_dim ({self.style_dim}) <= 4096")
        if not (1 <= self.channel_multiplier <= 16 and 1 <= self.channel_div <= 512):
            raise ValueError("channel_multiplier must be in [1, 16] and channel_div in [1, 512]")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    def channels(self, multiplier: int | None = None) -> dict[int, int]:
        """Channels per resolution (StyleGAN2's table). The encoder uses multiplier 1."""
        m = self.channel_multiplier if multiplier is None else multiplier
        base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m,
                512: 32 * m, 1024: 16 * m, 2048: 8 * m}
        return {r: max(1, c // self.channel_div) for r, c in base.items()}

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in d.items()})
