"""``lia-live backends``: every registered inference backend and whether it works here."""

from __future__ import annotations

from ..backends import (
    available_backends,
    backend_info,
    default_batch_size,
    default_precision,
    engine_dir,
    resolve_backend_name,
)
from ..options import add_config_args, config_from_args
from ..runtime import resolve_device
from ..settings import ModelConfig
from .common import ArgumentParser, user_errors

PROG = "lia-live backends"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="List inference backends and their availability.")
    add_config_args(p, ModelConfig(), "model", only=("device",))
    return p


@user_errors(PROG)
def main(argv=None) -> int:
    model = config_from_args(ModelConfig(), build_parser().parse_args(argv), "model")
    device = resolve_device(model.device)
    auto = resolve_backend_name("auto", device)
    print(f"device {device}; --backend auto → {auto} ({default_precision(auto, device)}); "
          f"default --batch-size {default_batch_size(device, auto)}; engine cache {engine_dir()}")
    for name, (ok, why) in available_backends(device).items():
        print(f"  {name:<12} {'yes' if ok else 'no ':<4} {why}")
        for opt in backend_info(name).options:
            print(f"  {'':<12}      --backend-option {opt.describe()}")
    return 0
