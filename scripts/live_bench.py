"""End-to-end benchmark of the live pipeline in file mode (no camera, no virtual camera needed).

    python scripts/live_bench.py --frames 120 --checkpoint demo                 # bundled model, CPU
    python scripts/live_bench.py --frames 120 --checkpoint demo --serial        # stages one after another
    python scripts/live_bench.py --device cuda --compose paste --crop none      # bare GPU machine

A 640×480 clip of a portrait moving (and zooming a little) is written with OpenCV and played through
``lia_live.live.run_live`` exactly like ``lia-live --driving clip.mp4``; frames go to a null output
(``--sink null``), a fake virtual camera (``--sink vcam``, needs pyvirtualcam) or an mp4 (``--sink mp4``).
Prints JSON: steady fps, mean capture→send latency, per-stage means, their sum (the serial cost of a
frame) and the pipelining gain ``steady_fps × stage_sum_ms / 1000``. Needs only torch, numpy and OpenCV
(``--crop auto`` also needs mediapipe; the portrait defaults to scikit-image's astronaut when installed,
else the built-in test card).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

MODEL_STAGES = ("motion", "synthesis")


class NullOutput:
    """Counts frames and drops them (what a benchmark of the pipeline itself needs)."""

    def __init__(self):
        self.count = 0

    def send(self, rgb) -> None:
        self.count += 1

    def close(self) -> None:
        pass


class CountingVirtualCamera(NullOutput):
    """A pyvirtualcam backend that counts frames and drops them (``--sink vcam``: the real vcam code path)."""

    instances: list[CountingVirtualCamera] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        super().__init__()
        self.width, self.height, self.fps, self.fourcc, self._device = width, height, fps, fourcc, device or "fake0"
        CountingVirtualCamera.instances.append(self)

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return self.fourcc

    @classmethod
    def register(cls) -> type[CountingVirtualCamera]:
        import pyvirtualcam  # optional: only the vcam sink needs it

        pyvirtualcam.register_backend("fake", cls)
        return cls


def portrait(path: str | None):
    import cv2
    import numpy as np

    if path:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"live_bench: cannot read {path}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    try:
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    except ImportError:
        from lia_live.backends.checks import test_card
        from lia_live.imaging import from_tensor

        return from_tensor(test_card(512))[0]


def webcam_frames(face, n: int, size: tuple[int, int] = (640, 480), fps: float = 30.0):
    """The portrait (head ~300 px) drifting and breathing inside a plain frame: ``n`` RGB frames."""
    import math

    import cv2
    import numpy as np

    w, h = size
    for i in range(n):
        t = i / fps
        side = int(300 * (1 + 0.08 * math.sin(2 * math.pi * t / 3)))
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        canvas = np.full((h, w, 3), 90, np.uint8)
        x = int(w / 2 - side / 2 + 80 * math.sin(2 * math.pi * t / 5))
        y = int(h / 2 - side / 2 + 30 * math.sin(2 * math.pi * t / 4))
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
        canvas[y0:y1, x0:x1] = patch[y0 - y:y1 - y, x0 - x:x1 - x]
        yield canvas


def write_clip(face, path: Path, frames: int, size: tuple[int, int], fps: float = 30.0) -> None:
    """:func:`webcam_frames` as an mp4 (OpenCV mp4v)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for canvas in webcam_frames(face, frames, size, fps):
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--checkpoint", default="seeded256",
                   help="a checkpoint file, 'demo' (the bundled model) or 'seeded256' (the benchmark's seeded "
                        "official-shape weights: image-like outputs, so reduced-precision checks mean something)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default=None)
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--compose", choices=("crop", "paste"), default="paste")
    p.add_argument("--crop", choices=("auto", "none"), default="auto", help="none: no face tracker (no mediapipe)")
    p.add_argument("--input", default="640x480", help="clip WxH")
    p.add_argument("--size", default="1280x720", help="output WxH")
    p.add_argument("--detect-every", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--serial", action="store_true", help="run the stages one after another")
    p.add_argument("--sink", choices=("null", "vcam", "mp4"), default="null")
    p.add_argument("--source", help="portrait image (default: scikit-image astronaut or the test card)")
    p.add_argument("--json", type=Path, help="also write the report here")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)

    import cv2
    import torch

    from lia_live.animator import Animator
    from lia_live.backends import parse_backend_options
    from lia_live.bench import seeded_generator
    from lia_live.capture import FileCapture
    from lia_live.live import run_live
    from lia_live.model import GeneratorConfig
    from lia_live.model.checkpoint import load_generator
    from lia_live.runtime import demo_checkpoint, resolve_device
    from lia_live.settings import LiveConfig

    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    if a.checkpoint == "seeded256":
        gen = seeded_generator(GeneratorConfig(size=256)).to(device)
    else:
        gen = load_generator(demo_checkpoint() if a.checkpoint == "demo" else a.checkpoint, device=device)
    anim = Animator(gen, backend=a.backend, device=device, precision=a.precision,
                    options=parse_backend_options(a.backend_option))
    face = portrait(a.source)
    in_w, in_h = (int(v) for v in a.input.split("x"))
    out_w, out_h = (int(v) for v in a.size.split("x"))
    outputs, fake = [], None
    with tempfile.TemporaryDirectory() as d:
        video, src = Path(d) / "drive.mp4", Path(d) / "src.png"
        write_clip(face, video, a.frames, (in_w, in_h))
        cv2.imwrite(str(src), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        run = {"stats_every": 0, "pipeline": not a.serial}
        out = {"size": (out_w, out_h), "compose": a.compose, "vcam": a.sink == "vcam", "vcam_backend": "fake"}
        if a.sink == "vcam":
            fake = CountingVirtualCamera.register()
        elif a.sink == "mp4":
            out["output"] = Path(d) / "out.mp4"
        else:
            outputs.append(NullOutput())
        cfg = LiveConfig(sources=(src,)).replace(
            output=out, run=run, motion={"crop": a.crop, "source_crop": a.crop, "detect_every": a.detect_every},
            capture={"driving": str(video)})
        stats = run_live(cfg, capture=FileCapture(video), animator=anim, extra_outputs=outputs)
    ms = stats["stage_ms_mean"]
    steady = stats["steady_fps"] or 0.0
    report = {"device": str(anim.device), "gpu": torch.cuda.get_device_name(anim.device)
              if anim.device.type == "cuda" else None, "backend": anim.backend.describe(), "model_size": anim.size,
              "threads": torch.get_num_threads(), "input": a.input, "output": a.size, "compose": a.compose,
              "crop": a.crop, "pipelined": not a.serial, "frames": stats["frames"], "steady_fps": steady,
              "latency_ms_mean": stats["latency_ms_mean"], "stage_ms_mean": ms,
              "stage_sum_ms": stats["stage_sum_ms"], "first_frame_ms": stats["first_frame_ms"],
              "pipeline_gain": round(steady * stats["stage_sum_ms"] / 1000, 3),
              "model_ms": round(sum(ms.get(s, 0) for s in MODEL_STAGES), 3),
              "overhead_ms": round(sum(v for k, v in ms.items() if k not in MODEL_STAGES), 3),
              "frames_out": (fake.instances[0].count if fake else outputs[0].count if outputs else stats["frames"])}
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
