#!/usr/bin/env python3
"""``make demo``: the main job on a fresh machine, with no download and no camera.

1. Makes the demo inputs: NASA's public-domain astronaut portrait (shipped with scikit-image) as the source,
   and a 640×480 "webcam" clip in which that portrait's head moves, turns and scales (the driving video;
   ``scripts/make_demo_data.py`` draws it).
2. Runs ``lia-live`` in file mode (webcam → face crop → LIA → compose) on them, writing
   ``demo_out/lia-live.mp4``, and ``lia-animate`` (the offline job), writing ``demo_out/lia-animate.mp4``.
3. Writes ``demo_out/side-by-side.mp4``: the driving clip | the animated portrait, with the model named on it.

The checkpoint is ./checkpoints/vox.pt (or $LIA_CHECKPOINT) when present — the authors' weights — and
otherwise the small pipeline-demo model bundled in the package (trained here on synthetic clips of the same
portrait; see docs/training.md). With neither, it stops with one line saying where to put a checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo_out"

SIDE_HEIGHT = 480


def make_inputs(n_frames: int = 90, fps: int = 15) -> tuple[Path, Path]:
    """astronaut.png and a moving-portrait driving clip, generated (not downloaded)."""
    import cv2
    import numpy as np
    from make_demo_data import write_clip_video
    from skimage import data

    OUT.mkdir(exist_ok=True)
    portrait = np.ascontiguousarray(data.astronaut())  # (512, 512, 3) RGB
    src = OUT / "astronaut.png"
    cv2.imwrite(str(src), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    drive = OUT / "driving_640x480.mp4"
    if not drive.exists():
        # the head (face ~126 px wide) on a flat backdrop, moving along a fixed path: a webcam-like clip
        write_clip_video(drive, "demo", n_frames, fps)
    return src, drive


def model_label(ckpt: Path) -> str:
    """What the side-by-side video calls the model."""
    from lia_live.runtime import demo_checkpoint

    demo = demo_checkpoint()
    if demo is not None and ckpt.resolve() == demo.resolve():
        return "bundled demo model (trained on this portrait only)"
    return f"checkpoint {ckpt.name}"


def write_side_by_side(drive: Path, animated: Path, out: Path, label: str, fps: float = 15.0) -> int:
    """driving | animated, each scaled to 480 px high, captioned; returns the frame count."""
    import cv2
    import numpy as np

    from lia_live.io import VideoWriter, open_frames

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (round(w * SIDE_HEIGHT / h) // 2 * 2, SIDE_HEIGHT), interpolation=cv2.INTER_CUBIC)

    def caption(img: np.ndarray, text: str) -> np.ndarray:
        img = img.copy()
        cv2.rectangle(img, (0, 0), (img.shape[1], 30), (0, 0, 0), -1)
        cv2.putText(img, text, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    n = 0
    with VideoWriter(out, fps, overwrite=True) as w:
        for d, a in zip(open_frames(drive), open_frames(animated)):
            left = caption(fit(d), "driving: webcam clip")
            right = caption(fit(a), label)
            w.write(np.concatenate([left, np.zeros((SIDE_HEIGHT, 8, 3), np.uint8), right], axis=1))  # RGB
            n += 1
    return n


def run(cmd: list[str]) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def main() -> int:
    from lia_live.errors import UserError, render_flags
    from lia_live.runtime import CHECKPOINT_HELP, DEFAULT_CHECKPOINTS, demo_checkpoint, resolve_checkpoint

    official = any(Path(c).is_file() for c in DEFAULT_CHECKPOINTS) or os.environ.get("LIA_CHECKPOINT")
    demo = demo_checkpoint()
    try:
        ckpt = resolve_checkpoint(None, allow_demo=False) if official or demo is None else demo
    except UserError as e:
        print(f"make demo: {e}", file=sys.stderr)
        return 2
    if ckpt == demo:  # said here, by the demo, which passes the checkpoint on (the tools have nothing to note)
        print(f"make demo: no official checkpoint in ./checkpoints/ or $LIA_CHECKPOINT: running the bundled "
              f"pipeline-demo model ({ckpt.name})", flush=True)
    src, drive = make_inputs()
    bin_dir = Path(sys.executable).parent
    live_out, anim_out, side = OUT / "lia-live.mp4", OUT / "lia-animate.mp4", OUT / "side-by-side.mp4"
    code = run([str(bin_dir / "lia-live"), "--source", str(src), "--driving", str(drive), "--checkpoint", str(ckpt),
                "--output", str(live_out), "--no-vcam", "--overwrite", "--stats-json", str(OUT / "stats.json")])
    if code:
        return code
    code = run([str(bin_dir / "lia-animate"), "--source", str(src), "--driving", str(drive), "--crop", "auto",
                "--source-crop", "auto", "--checkpoint", str(ckpt), "--output", str(anim_out), "--overwrite"])
    if code:
        return code
    label = model_label(ckpt)
    frames = write_side_by_side(drive, anim_out, side, label)
    print(f"\nmake demo: model {ckpt}: {label}")
    print(f"  {src}  the source portrait (NASA, public domain)")
    print(f"  {drive}  the driving 'webcam' clip: the astronaut's head moving, turning and scaling")
    print(f"  {live_out}  lia-live in file mode: webcam → face crop → LIA → composed output, as a live session")
    print(f"  {anim_out}  lia-animate, the offline job: the animated portrait crop, one frame per driving frame")
    print(f"  {side}  side by side ({frames} frames): driving clip | animated portrait, model named on it")
    print(f"  {OUT / 'stats.json'}  lia-live's timing statistics")
    if demo is not None and ckpt.resolve() == demo.resolve():
        print("\nThis ran the small bundled demo model. It was trained only on this public-domain portrait, so it "
              "shows the pipeline working, not LIA's quality: other faces come out blurred and wrong. "
              f"The official checkpoints give the real quality. {render_flags(CHECKPOINT_HELP)} Then run `make demo` "
              "again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
