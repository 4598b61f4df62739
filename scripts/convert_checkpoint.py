#!/usr/bin/env python3
"""Convert an official LIA checkpoint (vox.pt, taichi.pt, ted.pt, vox512.pt) to lia-live's format.

    python scripts/convert_checkpoint.py checkpoints/vox.pt checkpoints/vox.safetensors

The output holds only the generator weights and its config (``.safetensors``, or ``.pt`` with
``format: lia-live``); it loads without unpickling anything. Exit code 2 on a bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lia_live.cli.common import user_errors  # noqa: E402
from lia_live.errors import UserError  # noqa: E402
from lia_live.fsutil import check_output_path  # noqa: E402


@user_errors("convert_checkpoint")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path, help="official LIA .pt (or any checkpoint lia-live reads)")
    p.add_argument("output", type=Path, help="output .safetensors or .pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    a = p.parse_args(argv)
    check_output_path(a.output, a.overwrite, "output")
    if a.output.suffix not in (".safetensors", ".pt"):
        raise UserError(f"output must end in .safetensors or .pt, got {a.output.name}")
    from lia_live.model.checkpoint import load_generator, save_generator

    gen = load_generator(a.input)
    save_generator(gen, a.output)
    n = sum(t.numel() for t in gen.state_dict().values())
    print(f"converted {a.input} → {a.output}: {gen.config}, {n / 1e6:.1f}M values, "
          f"{a.output.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
