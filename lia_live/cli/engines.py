"""``lia-live engines build``: build (or refresh) the inference engines in the engine cache ahead of time,
and check them against eager fp32.

    lia-live engines build --checkpoint checkpoints/vox.pt               # TensorRT FP16 on cuda
    lia-live engines build --backends onnxruntime --device cpu          # the ONNX files only

The cache is ``--engine-dir``, else ``$LIA_ENGINE_DIR``, else ``~/.cache/lia-live/engines``
(``$XDG_CACHE_HOME/lia-live/engines``). Engines are keyed by weights hash, resolution, precision, GPU and
library versions; up-to-date ones are reused, stale or foreign ones rebuilt. Each built engine is compared
with the fp32 eager model on a real image (``--image``; a synthetic test card otherwise). Exit code 1 when a
check fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..backends import available_backends, create_backend
from ..backends.graph import GraphBackend
from ..backends.tensorrt import TensorRTBackend
from ..errors import UserError
from ..imaging import to_tensor
from ..io import read_image
from ..model.checkpoint import load_generator
from ..options import add_config_args, config_from_args
from ..runtime import resolve_checkpoint, resolve_device
from ..settings import ModelConfig, group, option
from .common import ArgumentParser, user_errors

PROG = "lia-live engines"
ENGINE_BACKENDS = ("tensorrt", "onnxruntime")


@dataclass(frozen=True)
class EngineBuildConfig:
    """What ``lia-live engines build`` builds, for which model, where."""

    backends: tuple[str, ...] = option(("tensorrt",), "comma-separated: tensorrt, onnxruntime", choices=ENGINE_BACKENDS,
                                       csv=True, metavar="LIST")
    engine_dir: Path | None = option(None, "where engines live (default: $LIA_ENGINE_DIR, else "
                                     "~/.cache/lia-live/engines)", metavar="DIR")
    image: Path | None = option(None, "a portrait (RGB image file) to check the engines on (default: a synthetic "
                                "test card)", metavar="IMAGE")
    # --precision: tensorrt's (fp16 unless given); onnxruntime engines are fp32
    model: ModelConfig = group(ModelConfig, "model", hide=("backend", "backend_options"))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Engines of the tensorrt and onnxruntime backends, built ahead of time.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser("build", help=__doc__.split("\n\n")[0].split(": ", 1)[1].replace("\n", " "),
                           description=__doc__.split("\n\n")[0].split(": ", 1)[1].replace("\n", " "),
                           formatter_class=p.formatter_class)
    add_config_args(build, EngineBuildConfig())
    return p


@user_errors(PROG)
def main(argv=None) -> int:
    cfg = config_from_args(EngineBuildConfig(), build_parser().parse_args(argv))
    return build_engines(cfg)


def build_engines(cfg: EngineBuildConfig) -> int:
    """Build and check every asked-for engine; 1 when a check fails."""
    device = resolve_device(cfg.model.device)
    gen = load_generator(resolve_checkpoint(cfg.model.checkpoint))
    image = None if cfg.image is None else to_tensor(read_image(cfg.image, "image"), gen.config.size)
    avail = available_backends(device)
    failed = False
    for name in cfg.backends:
        ok, why = avail[name]
        if not ok:
            raise UserError(f"{name} is not available on {device}: {why}")
        if name == "tensorrt":
            backend = create_backend(name, gen, device=device, precision=cfg.model.precision or "fp16",
                                     engine_root=cfg.engine_dir, validate_on_source=False)
            assert isinstance(backend, TensorRTBackend)
            checks = backend.check_and_fallback(image)
        else:
            backend = create_backend(name, gen, device=device, precision="fp32", engine_root=cfg.engine_dir)
            assert isinstance(backend, GraphBackend)
            checks = backend.validate(image)
        print(f"{backend.describe()}:")
        for c in checks:
            print(f"  {c}")
        failed |= not all(c.ok for c in checks)
    return 1 if failed else 0
