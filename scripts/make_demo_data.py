"""Synthetic training clips from public-domain pictures, for the pipeline-demo model and the tests.

Each clip is a smooth random camera/head motion over one picture: translation, in-plane rotation,
scale, mild perspective (a yaw/pitch-like keystone) and a mouth-opening warp, rendered as a square crop
around the face. The layout is the FOMM one the trainer reads: ``OUT/{train,test}/<clip>/%05d.png``.

Pictures come from scikit-image's ``skimage.data`` (astronaut: NASA, public domain; chelsea / coffee:
CC0). Nothing is downloaded.

    python scripts/make_demo_data.py --out data/demo --size 128 --clips 48 --frames 40
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Picture:
    """A source picture with its face box: centre (x, y), crop side and mouth centre, in its pixels."""

    name: str
    image: np.ndarray
    center: tuple[float, float]
    side: float
    mouth: tuple[float, float] | None


def load_pictures(names: list[str]) -> list[Picture]:
    from skimage import data

    table = {
        "astronaut": lambda: Picture("astronaut", np.ascontiguousarray(data.astronaut()), (224.0, 130.0), 250.0,
                                     (224.0, 150.0)),
        "chelsea": lambda: Picture("chelsea", np.ascontiguousarray(data.chelsea()), (200.0, 140.0), 240.0, None),
        "coffee": lambda: Picture("coffee", np.ascontiguousarray(data.coffee()), (300.0, 200.0), 300.0, None),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"make_demo_data: unknown picture(s) {unknown}; choose from {sorted(table)}")
    return [table[n]() for n in names]


def mouth_warp(img: np.ndarray, mouth: tuple[float, float], amount: float, radius: float) -> np.ndarray:
    """Open the mouth: pixels below the mouth centre move down by up to ``amount`` pixels (smooth)."""
    import cv2

    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - mouth[0], ys - mouth[1]
    fall = np.exp(-(dx ** 2 / (2 * (radius * 0.9) ** 2) + dy ** 2 / (2 * (radius * 0.7) ** 2)))
    below = 1 / (1 + np.exp(-dy / (radius * 0.12)))  # 0 above the lip line, 1 below
    shift = (amount * fall * below).astype(np.float32)
    return cv2.remap(img, xs, ys - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def smooth_track(rng: np.random.Generator, n: int, lo: float, hi: float, knots: int = 4) -> np.ndarray:
    """A smooth random curve of n values in [lo, hi] (cosine interpolation between random knots)."""
    k = rng.uniform(lo, hi, size=knots)
    t = np.linspace(0, knots - 1, n)
    i = np.minimum(t.astype(int), knots - 2)
    f = (1 - np.cos((t - i) * np.pi)) / 2
    return k[i] * (1 - f) + k[i + 1] * f


def render(pic: Picture, size: int, tx: float, ty: float, rot: float, scale: float, yaw: float, pitch: float,
           mouth: float) -> np.ndarray:
    """One RGB uint8 (size, size, 3) frame of the picture under the given motion."""
    import cv2

    img = pic.image
    if pic.mouth is not None and mouth > 0.2:
        img = mouth_warp(img, pic.mouth, mouth, pic.side * 0.12)
    cx, cy = pic.center
    half = pic.side / 2 / scale
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half  # (4, 2)
    # keystone: one side of the crop window grows, the other shrinks (a cheap yaw / pitch)
    corners[:, 1] *= 1 + yaw * np.sign(corners[:, 0])
    corners[:, 0] *= 1 + pitch * np.sign(corners[:, 1])
    c, s = np.cos(rot), np.sin(rot)
    corners = corners @ np.array([[c, s], [-s, c]])
    corners += np.array([cx + tx * pic.side, cy + ty * pic.side])
    dst = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=np.float32)
    H = cv2.getPerspectiveTransform(corners.astype(np.float32), dst)
    return cv2.warpPerspective(img, H, (size, size), flags=cv2.INTER_AREA if size < half else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)


def make_clip(pic: Picture, size: int, frames: int, rng: np.random.Generator, strength: float = 1.0,
              flip: bool = False, hue: float = 0.0) -> list[np.ndarray]:
    """A list of ``frames`` RGB uint8 frames following one random smooth motion."""
    import cv2

    s = strength
    tracks = dict(
        tx=smooth_track(rng, frames, -0.08 * s, 0.08 * s), ty=smooth_track(rng, frames, -0.06 * s, 0.06 * s),
        rot=smooth_track(rng, frames, -0.2 * s, 0.2 * s), scale=smooth_track(rng, frames, 1 - 0.1 * s, 1 + 0.1 * s),
        yaw=smooth_track(rng, frames, -0.08 * s, 0.08 * s), pitch=smooth_track(rng, frames, -0.05 * s, 0.05 * s),
        mouth=np.clip(smooth_track(rng, frames, -6 * s, 10 * s, knots=6), 0, None))
    out = []
    for t in range(frames):
        f = render(pic, size, **{k: float(v[t]) for k, v in tracks.items()})
        if flip:
            f = f[:, ::-1]
        if hue:
            hsv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(int) + int(hue * 180)) % 180).astype(np.uint8)
            f = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        out.append(np.ascontiguousarray(f))
    return out


def write_dataset(out: Path, pictures: list[Picture], size: int, clips: int, frames: int, test_clips: int,
                  seed: int = 0, strength: float = 1.0) -> Path:
    """Write ``clips`` train and ``test_clips`` test clips (PNG frame folders); returns ``out``."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, n in (("train", clips), ("test", test_clips)):
        for k in range(n):
            pic = pictures[k % len(pictures)]
            flip = bool(rng.random() < 0.5)
            hue = float(rng.uniform(-0.04, 0.04))
            folder = out / split / f"{pic.name}-{k:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t, f in enumerate(make_clip(pic, size, frames, rng, strength, flip, hue)):
                cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="dataset root to create")
    p.add_argument("--size", type=int, default=128, help="frame size (pixels)")
    p.add_argument("--clips", type=int, default=48, help="training clips")
    p.add_argument("--test-clips", type=int, default=4, help="test clips")
    p.add_argument("--frames", type=int, default=40, help="frames per clip")
    p.add_argument("--pictures", default="astronaut", help="comma list of astronaut, chelsea, coffee")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from lia_live.cli.common import float_range

    p.add_argument("--strength", type=float_range(0, 10), default=1.0, help="motion amplitude multiplier")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.out.exists() and any(a.out.iterdir()):
        print(f"make_demo_data: {a.out} exists and is not empty; choose a new --out", file=sys.stderr)
        return 2
    write_dataset(a.out, load_pictures(a.pictures.split(",")), a.size, a.clips, a.frames, a.test_clips, a.seed,
                  a.strength)
    print(f"make_demo_data: wrote {a.clips} + {a.test_clips} clips of {a.frames} frames to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
