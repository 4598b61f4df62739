"""Per-frame cost of the tensor frame path (lia_live.frames) against the numpy/OpenCV path it replaces.

    python scripts/bench_frames.py --threads 1
    python scripts/bench_frames.py --device cuda        # not run on a GPU yet

Stages, median wall ms and median CPU ms of this process (a fairer cost on a shared machine) over
``--frames`` after warm-up, 640×480 (and 1280×720) camera frames, 256² model
input, 1280×720 output:
- preprocess: numpy ``crop_square`` + ``imaging.to_tensor`` (+ ``.to(device)``) vs ``FrameUploader.upload``
  + ``crop_to_model`` (a bilinear box, an area box, the whole frame);
- compose: ``imaging.from_tensor`` + ``Compositor.compose`` vs ``compose_tensor`` + ``FrameDownloader.download``
  (crop and paste mode), and the pass-through.
On CUDA each tensor-path timing ends with a device sync, so it is the latency of that stage.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch and OpenCV CPU threads")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    from lia_live.frames import FrameDownloader, FrameUploader, crop_to_model
    from lia_live.imaging import from_tensor, to_tensor
    from lia_live.output.compose import Compositor
    from lia_live.tracking import CropBox, center_box, crop_square

    if a.threads:
        torch.set_num_threads(a.threads)
        cv2.setNumThreads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def med(fn) -> tuple[float, float]:
        """Median wall ms and median CPU ms (this process) per call."""
        for _ in range(a.warmup):
            fn()
        sync()
        wall, cpu = [], []
        for _ in range(a.frames):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return float(np.median(wall)) * 1e3, float(np.median(cpu)) * 1e3

    try:
        from skimage import data

        ast = np.ascontiguousarray(data.astronaut())  # (512, 512, 3)
    except ImportError:  # e.g. on a GPU machine without scikit-image: a synthetic texture, same size
        y, x = np.mgrid[0:512, 0:512].astype(np.float64)
        ast = np.clip(np.stack([128 + 100 * np.sin(x / 7.3 + y / 11.1), 128 + 90 * np.cos(x / 13.7 - y / 5.9),
                                (x + y) / 4], axis=-1), 0, 255).astype(np.uint8)
    f480 = np.ascontiguousarray(cv2.resize(ast, (640, 640))[80:560])  # (480, 640, 3)
    f720 = np.ascontiguousarray(cv2.resize(ast, (1280, 1280))[280:1000])  # (720, 1280, 3)
    up, down = FrameUploader(dev), FrameDownloader()
    rows = []
    for name, frame, box in [("640×480, box 300 (bilinear)", f480, CropBox(320, 220, 300)),
                             ("640×480, box 420 (area)", f480, CropBox(320, 220, 420)),
                             ("640×480, whole frame (area)", f480, center_box(f480)),
                             ("1280×720, box 600 (area)", f720, CropBox(640, 330, 600))]:
        old = med(lambda frame=frame, box=box: to_tensor(crop_square(frame, box, 256)).to(dev))
        new = med(lambda frame=frame, box=box: crop_to_model(up.upload(frame), box, 256))
        rows.append((f"preprocess {name}", old, new))
    src_box = CropBox(225.0, 110.0, 180.0)
    face = crop_to_model(torch.from_numpy(ast), src_box, 256).to(dev)  # (1, 3, 256, 256)
    for mode in ("crop", "paste"):
        comp = Compositor(1280, 720, mode)
        comp.set_source(ast, src_box, 256)
        comp.set_source_tensor(ast, src_box, 256, dev)
        old = med(lambda comp=comp: comp.compose(from_tensor(face)[0]))
        new = med(lambda comp=comp: down.download(comp.compose_tensor(face)))
        rows.append((f"compose {mode} → 1280×720 (+ download)", old, new))
    comp = Compositor(1280, 720)
    rows.append(("pass-through 640×480 → 1280×720", med(lambda: comp.passthrough(f480)),
                 med(lambda: down.download(comp.passthrough_tensor(up.upload(f480))))))
    print(f"device {dev}, torch threads {torch.get_num_threads()}, median of {a.frames} frames")
    print("| stage | numpy/cv2 wall ms | tensor wall ms | numpy/cv2 CPU ms | tensor CPU ms |\n|---|---|---|---|---|")
    for name, old, new in rows:
        print(f"| {name} | {old[0]:.2f} | {new[0]:.2f} | {old[1]:.2f} | {new[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
