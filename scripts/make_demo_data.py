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


# -- the "webcam" clips of `make demo`: the astronaut's head on a flat background, then face-tracked crops --------
#: The head region of the 512² portrait and the size it is drawn at (its face is then ~126 px wide).
HEAD_ROWS, HEAD_COLS, HEAD_SIDE = slice(0, 300), slice(80, 380), 400
#: Backdrop colour (RGB) of the 640×480 webcam frame.
WEBCAM_BG = (70, 90, 110)
WEBCAM_SIZE = (640, 480)
#: Face parts in the 400² head patch, measured once with mediapipe's face mesh (landmarks 13/14, 61/291,
#: 159/145/33/133 and 386/374/362/263): mouth centre and width, eye centres and width, brow line.
MOUTH, MOUTH_W = (191.0, 195.0), 61.0
EYES, EYE_W = ((165.0, 135.0), (222.0, 137.0)), 26.0
BROW_Y = 118.0


def head_patch(full: bool = False) -> np.ndarray:
    """The astronaut's head as a 400² RGB patch (``full``: the whole portrait at the same scale, 683²,
    with the head patch at offset (106.7, 0))."""
    import cv2
    from skimage import data

    portrait = np.ascontiguousarray(data.astronaut())  # (512, 512, 3) RGB
    if full:
        return cv2.resize(portrait, (683, 683), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(portrait[HEAD_ROWS, HEAD_COLS], (HEAD_SIDE, HEAD_SIDE), interpolation=cv2.INTER_CUBIC)


def _gauss(xs: np.ndarray, ys: np.ndarray, c: tuple[float, float], sx: float, sy: float) -> np.ndarray:
    return np.exp(-((xs - c[0]) ** 2 / (2 * sx ** 2) + (ys - c[1]) ** 2 / (2 * sy ** 2)))


def expression_warp(patch: np.ndarray, mouth: float = 0.0, smile: float = 0.0, blink: float = 0.0,
                    brow: float = 0.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Piecewise-smooth warps of the face parts of a head patch, in one remap.

    ``mouth`` (0–1): the jaw below the lip line drops by up to 16 px; ``smile`` (−1–1): the mouth corners move
    out and up (down when negative); ``blink`` (0–1): the eyes close (rows around each eye's centre line are
    sampled from further out); ``brow`` (−1–1): the brows rise by up to 7 px. ``offset``: where the 400² head
    patch lies in ``patch`` (for the full-portrait patch).
    """
    import cv2

    h, w = patch.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ox, oy = offset
    mx, my = MOUTH[0] + ox, MOUTH[1] + oy
    sx, sy = xs.copy(), ys.copy()  # where each output pixel samples the input
    if mouth:
        below = 1 / (1 + np.exp(-(ys - my) / 3.0))  # 0 above the lip line, 1 below
        sy -= 16.0 * mouth * _gauss(xs, ys, (mx, my + 20), MOUTH_W * 0.75, 45.0) * below
    if smile:
        for side in (-1, 1):
            corner = (mx + side * MOUTH_W / 2, my - 4)
            g = _gauss(xs, ys, corner, 16.0, 12.0)
            sx -= side * 6.0 * smile * g
            sy += 5.0 * smile * g
    if blink:
        for ex, ey in EYES:
            g = _gauss(xs, ys, (ex + ox, ey + oy), EYE_W * 0.7, 9.0)
            sy += (ys - (ey + oy)) * 1.6 * blink * g
    if brow:
        for ex, _ in EYES:
            sy += 7.0 * brow * _gauss(xs, ys, (ex + ox, BROW_Y + oy), EYE_W, 9.0)
    return cv2.remap(patch, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def webcam_frame(patch: np.ndarray, cx: float, cy: float, angle: float, scale: float,
                 offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A 640×480 RGB frame: ``patch`` rotated by ``angle`` degrees and scaled about the head patch's centre,
    placed with that centre at (cx, cy) on the flat backdrop (as ``make demo``'s driving clip)."""
    import cv2

    c = (offset[0] + HEAD_SIDE / 2, offset[1] + HEAD_SIDE / 2)
    m = cv2.getRotationMatrix2D(c, angle, scale)
    m[:, 2] += (cx - c[0], cy - c[1])
    bg = np.empty((WEBCAM_SIZE[1], WEBCAM_SIZE[0], 3), np.uint8)
    bg[:] = WEBCAM_BG
    return cv2.warpAffine(patch, m, WEBCAM_SIZE, dst=bg, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)


def demo_path(i: int, n: int) -> dict[str, float]:
    """The motion of ``make demo``'s driving clip at frame ``i`` of ``n`` (rigid: no expression)."""
    t = i / n * 2 * np.pi
    return dict(cx=320 + 70 * np.sin(t), cy=250 + 20 * np.sin(2 * t), angle=10 * np.sin(1.5 * t),
                scale=1.0 + 0.1 * np.cos(t))


def heldout_path(i: int, n: int) -> dict[str, float]:
    """The held-back clip: another path (other frequencies, phases, amplitudes) with expressions.
    Never trained on: training paths are random knots (``random_path``), not sinusoids."""
    t = i / n * 2 * np.pi
    return dict(cx=300 + 80 * np.sin(1.3 * t + 1.0), cy=240 + 25 * np.sin(2.2 * t), angle=-12 * np.sin(t + 0.5),
                scale=1.0 - 0.12 * np.cos(0.8 * t), mouth=max(0.0, np.sin(3 * t)) * 0.8,
                blink=float(max(0.0, np.cos(5 * t)) ** 8), smile=0.5 * np.sin(2 * t + 0.3))


def random_path(rng: np.random.Generator, n: int, expressions: bool = True,
                blink_low: float = -3.0) -> list[dict[str, float]]:
    """Smooth random head motion (position, roll ±14°, scale ±15 %) and, optionally, expressions.

    ``blink_low``: the blink track's knots are drawn in [blink_low, 1] and clipped at 0; the eyes are then
    (partly / more than half) closed in 21 % / 7 % of the frames at −3, 51 % / 21 % at −1 (measured over 200
    paths of 40 frames)."""
    tr = dict(cx=smooth_track(rng, n, 230, 410, 5), cy=smooth_track(rng, n, 205, 290, 5),
              angle=smooth_track(rng, n, -14, 14, 5), scale=smooth_track(rng, n, 0.85, 1.15, 4))
    if expressions:
        tr.update(mouth=np.clip(smooth_track(rng, n, -0.6, 1.0, 6), 0, 1),
                  smile=smooth_track(rng, n, -0.7, 0.9, 5), brow=smooth_track(rng, n, -0.6, 0.9, 4),
                  blink=np.clip(smooth_track(rng, n, blink_low, 1.0, 8), 0, 1))
    return [{k: float(v[t]) for k, v in tr.items()} for t in range(n)]


def render_webcam(pose: dict[str, float], patch: np.ndarray, full: bool) -> np.ndarray:
    """One 640×480 RGB webcam frame for a pose (rigid keys cx, cy, angle, scale; expression keys optional)."""
    offset = (80 * 683 / 512, 0.0) if full else (0.0, 0.0)  # where the head patch lies in the 683² portrait
    expr = {k: pose[k] for k in ("mouth", "smile", "blink", "brow") if pose.get(k)}
    img = expression_warp(patch, offset=offset, **expr) if expr else patch
    return webcam_frame(img, pose["cx"], pose["cy"], pose["angle"], pose["scale"], offset)


def crop_frames(frames, size: int) -> list[np.ndarray]:
    """Face-tracked square crops (size²) of RGB frames, exactly as ``lia-animate --crop auto`` makes them."""
    from lia_live.tracking import FaceCropper

    cropper = FaceCropper(out_size=size)
    try:
        return [cropper.crop(f) for f in frames]
    finally:
        cropper.close()


def write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def write_webcam_dataset(out: Path, size: int, clips: int, frames: int, test_clips: int, seed: int = 0,
                         full_every: int = 3, blink_low: float = -3.0) -> Path:
    """Training clips like ``make demo``'s: random head paths with expressions, face-tracked crops (size²).
    Every ``full_every``-th clip draws the whole portrait instead of the cut-out head (what a source crop
    of ``astronaut.png`` looks like). ``blink_low``: how often the eyes close (``random_path``).
    Layout ``OUT/{train,test}/<clip>/%05d.png``."""
    rng = np.random.default_rng(seed)
    patches = {False: head_patch(False), True: head_patch(True)}
    for split, n in (("train", clips), ("test", test_clips)):
        for k in range(n):
            full = full_every > 0 and k % full_every == full_every - 1
            path = random_path(rng, frames, blink_low=blink_low)
            webcam = [render_webcam(p, patches[full], full) for p in path]
            write_frames(out / split / f"webcam-{'full' if full else 'head'}-{k:04d}", crop_frames(webcam, size))
    return out


def write_clip_video(path: Path, which: str, n_frames: int = 90, fps: int = 15) -> Path:
    """``make demo``'s driving clip (``demo``) or the held-back one (``heldout``) as a 640×480 mp4."""
    from lia_live.io import VideoWriter

    patch = head_patch(False)
    fn = {"demo": demo_path, "heldout": heldout_path}[which]
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps) as w:
        for i in range(n_frames):
            w.write(render_webcam(fn(i, n_frames), patch, False))  # RGB
    return path


def crop_video(video: Path, out: Path, size: int = 256) -> Path:
    """Face-tracked crops of a video as PNG frames in ``out`` (an evaluation clip for lia-eval)."""
    from lia_live.io import open_frames

    frames = list(open_frames(str(video)))
    write_frames(out, crop_frames(frames, size))
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
    from lia_live.options import float_range

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
