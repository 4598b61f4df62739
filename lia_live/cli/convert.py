"""``lia-live convert SRC DST``: an official LIA checkpoint (vox.pt, taichi.pt, ted.pt, vox512.pt) in
lia-live's format.

    lia-live convert checkpoints/vox.pt checkpoints/vox.safetensors

The output holds only the generator weights and its config (``.safetensors``, or ``.pt`` with
``format: lia-live``); it loads without unpickling anything. Exit code 2 on a bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..fsutil import check_output_path
from ..model.checkpoint import load_generator, save_generator
from ..options import add_config_args, config_from_args
from ..settings import option
from .common import ArgumentParser, user_errors

PROG = "lia-live convert"


@dataclass(frozen=True)
class ConvertConfig:
    """What ``lia-live convert`` reads and writes."""

    source: Path = option(None, "official LIA .pt (or any checkpoint lia-live reads)", positional=True,
                          metavar="SRC")
    output: Path = option(None, "output .safetensors or .pt", positional=True, metavar="DST")
    overwrite: bool = option(False, "replace an existing output")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1].replace("\n", " "))
    add_config_args(p, ConvertConfig())
    return p


@user_errors(PROG)
def main(argv=None) -> int:
    cfg = config_from_args(ConvertConfig(), build_parser().parse_args(argv))
    check_output_path(cfg.output, cfg.overwrite, "output")
    if cfg.output.suffix not in (".safetensors", ".pt"):
        raise UserError(f"output must end in .safetensors or .pt, got {cfg.output.name}")
    gen = load_generator(cfg.source)
    save_generator(gen, cfg.output)
    n = sum(t.numel() for t in gen.state_dict().values())
    print(f"converted {cfg.source} → {cfg.output}: {gen.config}, {n / 1e6:.1f}M values, "
          f"{cfg.output.stat().st_size / 1e6:.1f} MB")
    return 0
