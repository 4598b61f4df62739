"""Helpers to rebuild the seeded reference weights of tests/fixtures/lia_reference (see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "lia_reference"


def read_manifest(path: Path = FIXTURE / "manifest.tsv") -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in path.read_text().splitlines()[1:]:
        key, shape, kind = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")), kind))
    return rows


def seeded_params(seed: int = 20221) -> dict[str, torch.Tensor]:
    """The fixture's parameter values, drawn in manifest order from one generator."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, kind in read_manifest():
        if kind != "param":
            continue
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if key.endswith("modulation.bias"):
            v = 1 + 0.1 * z
        else:
            v = 0.1 * z if key.endswith("bias") else z
            if "to_flows" in key and "modulation" not in key:
                v = v * 0.1
        out[key] = v
    return out


def reference_arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "reference_256.npz") as d:
        return {k: d[k] for k in d.files}


def rel_l2(a, b) -> float:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    return float((a - b).norm() / b.norm())


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())
