"""Helpers around tests/fixtures/lia_reference (see its README): its manifest, weights and reference outputs."""

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


def seeded_params(seed: int | None = None) -> dict[str, torch.Tensor]:
    """The fixture's parameter values: the benchmark's seeded official-shape weights with the fixture's seed.

    One recipe in one place (``lia_live.bench.seeded_state``); the fixture's reference outputs were made
    with it, so test_parity fails if the recipe ever drifts.
    """
    from lia_live.bench import REFERENCE_SEED, seeded_state
    from lia_live.model import Generator

    return seeded_state(Generator(256), REFERENCE_SEED if seed is None else seed)


def reference_arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "reference_256.npz") as d:
        return {k: d[k] for k in d.files}


def rel_l2(a, b) -> float:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    return float((a - b).norm() / b.norm())


def max_abs(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())
