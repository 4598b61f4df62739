"""Build (or refresh) the inference engines in the engine cache ahead of time, and check them against eager fp32.

    python scripts/build_engines.py --checkpoint checkpoints/vox.pt                 # TensorRT FP16 on cuda
    python scripts/build_engines.py --backends onnxruntime --device cpu            # the ONNX files only

The cache is ``--engine-dir``, else ``$LIA_ENGINE_DIR``, else ``~/.cache/lia-live/engines``
(``$XDG_CACHE_HOME/lia-live/engines``). Engines are keyed by weights hash, resolution, precision, GPU and
library versions; up-to-date ones are reused, stale or foreign ones rebuilt. Each built engine is compared
with the fp32 eager model on a real image (``--image``; a synthetic test card otherwise). Exit code 1 when a
check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lia_live.cli.common import ArgumentParser, user_errors  # noqa: E402
from lia_live.errors import UserError  # noqa: E402
from lia_live.runtime import resolve_checkpoint, resolve_device  # noqa: E402

PROG = "build_engines"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="generator weights (default: checkpoints/vox.pt, $LIA_CHECKPOINT, demo)")
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    p.add_argument("--backends", default="tensorrt", help="comma-separated: tensorrt, onnxruntime")
    p.add_argument("--precision", default=None, help="fp16 or fp32 for tensorrt (default fp16)")
    p.add_argument("--engine-dir", default=None,
                   help="where engines live (default: $LIA_ENGINE_DIR, else ~/.cache/lia-live/engines)")
    p.add_argument("--image", default=None, help="a portrait (RGB image file) to check the engines on")
    return p


def _load_image(path: str | None, size: int):
    if path is None:
        return None
    import cv2

    from lia_live.imaging import to_tensor

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot read image: {path}")
    return to_tensor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


@user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    from lia_live.backends import available_backends, create_backend
    from lia_live.model.checkpoint import load_generator

    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = set(names) - {"tensorrt", "onnxruntime"}
    if unknown:
        raise UserError(f"can only build engines for tensorrt and onnxruntime, not {', '.join(sorted(unknown))}")
    gen = load_generator(resolve_checkpoint(args.checkpoint))
    image = _load_image(args.image, gen.config.size)
    avail = available_backends(device)
    failed = False
    for name in names:
        ok, why = avail[name]
        if not ok:
            raise UserError(f"{name} is not available on {device}: {why}")
        if name == "tensorrt":
            backend = create_backend(name, gen, device=device, precision=args.precision or "fp16",
                                     engine_root=args.engine_dir, validate_on_source=False)
            checks = backend.check_and_fallback(image)
        else:
            backend = create_backend(name, gen, device=device, precision="fp32", engine_root=args.engine_dir)
            checks = backend.validate(image)
        print(f"{backend.describe()}:")
        for c in checks:
            print(f"  {c}")
        failed |= not all(c.ok for c in checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
