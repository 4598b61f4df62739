#!/usr/bin/env python3
"""``make demo``: the main job on a fresh machine, with no download and no camera.

1. Makes the demo inputs: NASA's public-domain astronaut portrait (shipped with scikit-image) as the source,
   and a 640×480 "webcam" clip in which that portrait moves, turns and scales (the driving video).
2. Runs ``lia-live`` in file mode (webcam → face crop → LIA → compose) on them, writing
   ``demo_out/lia-live.mp4``, and ``lia-animate`` (the offline job), writing ``demo_out/lia-animate.mp4``.

The checkpoint is ./checkpoints/vox.pt (or $LIA_CHECKPOINT) when present — the authors' weights — and
otherwise the small pipeline-demo model bundled in the package (trained here on synthetic clips; it shows the
pipeline, not LIA's quality). With neither, it stops with one line saying where to put a checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo_out"
sys.path.insert(0, str(ROOT))


def make_inputs(n_frames: int = 90, fps: int = 15) -> tuple[Path, Path]:
    """astronaut.png and a moving-portrait driving clip, generated (not downloaded)."""
    import cv2
    import numpy as np
    from skimage import data

    OUT.mkdir(exist_ok=True)
    portrait = np.ascontiguousarray(data.astronaut())  # (512, 512, 3) RGB
    src = OUT / "astronaut.png"
    cv2.imwrite(str(src), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    drive = OUT / "driving_640x480.mp4"
    if drive.exists():
        return src, drive
    from lia_live.io import VideoWriter

    # the head region (the face box is about 95 px in the 512² portrait) scaled so the face is ~130 px,
    # a webcam-like size in a 640×480 frame
    face = cv2.resize(portrait[:300, 80:380], (400, 400), interpolation=cv2.INTER_CUBIC)
    bg = np.full((480, 640, 3), (70, 90, 110), np.uint8)
    with VideoWriter(drive, fps) as w:
        for i in range(n_frames):
            t = i / n_frames * 2 * np.pi
            cx, cy = 320 + 70 * np.sin(t), 250 + 20 * np.sin(2 * t)
            angle, scale = 10 * np.sin(1.5 * t), 1.0 + 0.1 * np.cos(t)
            m = cv2.getRotationMatrix2D((200, 200), angle, scale)
            m[:, 2] += (cx - 200, cy - 200)
            frame = cv2.warpAffine(face, m, (640, 480), dst=bg.copy(), borderMode=cv2.BORDER_TRANSPARENT)
            w.write(frame)
    return src, drive


def run(cmd: list[str]) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def main() -> int:
    from lia_live.runtime import resolve_checkpoint
    from lia_live.errors import UserError

    try:
        ckpt = resolve_checkpoint(None)
    except UserError as e:
        print(f"make demo: {e}", file=sys.stderr)
        return 2
    src, drive = make_inputs()
    bin_dir = Path(sys.executable).parent
    live_out, anim_out = OUT / "lia-live.mp4", OUT / "lia-animate.mp4"
    code = run([str(bin_dir / "lia-live"), "--source", str(src), "--driving", str(drive), "--checkpoint", str(ckpt),
                "--output", str(live_out), "--no-vcam", "--overwrite", "--stats-json", str(OUT / "stats.json")])
    if code:
        return code
    code = run([str(bin_dir / "lia-animate"), "--source", str(src), "--driving", str(drive), "--crop", "auto",
                "--source-crop", "auto", "--checkpoint", str(ckpt), "--output", str(anim_out), "--overwrite"])
    if code == 0:
        print(f"\ndemo outputs: {live_out} (live pipeline, file mode) and {anim_out} (offline job)")
    return code


if __name__ == "__main__":
    sys.exit(main())
