"""Face tracking and VoxCeleb-style square crops (mediapipe BlazeFace, One-Euro smoothing).

Detection (``FaceDetector``): the full-range model searches the frame for a new face; the short-range model
then measures it, and follows it from frame to frame, on a 128² window of ``ROI_SCALE`` box sides around the
last box, turned upright by the eye-line roll. The face thus always fills about half of the short-range
model's input, whatever the frame size and the distance to the camera: faces from ≈48 px (640×480) or
≈64 px (1280×720, 1920×1080) wide are found, and the box size does not wander with the face size
(``scripts/track_bench.py``, ``docs/live.md``).

The LIA vox model was trained on VoxCeleb crops: the whole head with a little of the shoulders. Measured on
vox-cropped 256² frames (macron, mona_lisa, monroe, taylor), mediapipe's short-range detector box (side s,
centre c) sits low in the frame: the crop side is ≈ 1.9·s and the crop centre is ≈ 0.22·s above c.
``vox_box`` applies that rule; ``crop_square`` samples the square with an affine warp (replicated borders
when the square leaves the image) and returns the 2×3 matrix, so the crop can be pasted back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserError

VOX_SCALE = 1.9  # crop side / detector box side
VOX_SHIFT = 0.22  # crop centre is this many box sides above the detector box centre


@dataclass(frozen=True)
class Detection:
    """A face box in pixels: top-left (x, y), width, height, the detector's score, and the roll of the eye
    line in degrees (clockwise in the image; the box is that of the face turned upright)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    angle: float = 0.0

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def side(self) -> float:
        return max(self.w, self.h)


@dataclass(frozen=True)
class CropBox:
    """A square region of an image: centre (cx, cy) and side, in pixels of that image."""

    cx: float
    cy: float
    side: float

    def matrix(self, out_size: int) -> np.ndarray:
        """2×3 affine from image pixels to crop pixels (out_size²), pixel-centre convention."""
        s = out_size / self.side
        tx = out_size / 2 - s * self.cx
        ty = out_size / 2 - s * self.cy
        return np.array([[s, 0.0, tx], [0.0, s, ty]], dtype=np.float64)


def vox_box(det: Detection, scale: float = VOX_SCALE, shift: float = VOX_SHIFT) -> CropBox:
    """The VoxCeleb-style square for a detector box (see the module docstring for the rule)."""
    cx, cy = det.center
    s = det.side
    return CropBox(cx, cy - shift * s, scale * s)


def crop_square(image: np.ndarray, box: CropBox, out_size: int) -> np.ndarray:
    """Sample ``box`` of an RGB image into an out_size² RGB image (borders replicated)."""
    import cv2

    m = box.matrix(out_size)
    interp = cv2.INTER_AREA if box.side > out_size * 1.5 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        return _crop_area(image, box, out_size)
    return cv2.warpAffine(image, m, (out_size, out_size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def _crop_area(image: np.ndarray, box: CropBox, out_size: int) -> np.ndarray:
    """Downscaling crop with an area filter: cut an integer-aligned padded window, then resize."""
    import cv2

    h, w = image.shape[:2]
    half = box.side / 2
    x0, y0 = int(math.floor(box.cx - half)), int(math.floor(box.cy - half))
    n = int(math.ceil(box.side))
    pad = max(0, -x0, -y0, x0 + n - w, y0 + n - h)
    src = image
    if pad:
        src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    window = src[y0 + pad: y0 + pad + n, x0 + pad: x0 + pad + n]
    return cv2.resize(window, (out_size, out_size), interpolation=cv2.INTER_AREA)


ROI_SCALE = 2.2  # side of the window the short-range model looks at, in detector box sides
SHORT_INPUT = 128  # the short-range model's input side
# The full-range box against the followed short-range box, measured on the astronaut: ≈1 % larger, centre
# 0.044-0.047 box sides higher. Used to start following from a full-range box, or as the box when unconfirmed.
FULL_SCALE = 0.99
FULL_SHIFT = 0.047


def _to_detection(d, x0: float, y0: float, sx: float, sy: float) -> Detection:
    """A mediapipe detection in a window (top-left x0, y0; size sx × sy pixels, axis-aligned) → Detection."""
    bb = d.location_data.relative_bounding_box
    kp = d.location_data.relative_keypoints
    angle = math.degrees(math.atan2((kp[0].y - kp[1].y) * sy, (kp[0].x - kp[1].x) * sx)) if len(kp) > 1 else 0.0
    return Detection(x0 + bb.xmin * sx, y0 + bb.ymin * sy, bb.width * sx, bb.height * sy, float(d.score[0]),
                     _wrap(angle + 180.0))


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def sample_window(image: np.ndarray, cx: float, cy: float, side: float, angle: float, out: int) -> np.ndarray:
    """An out² RGB sample of the square of ``side`` centred at (cx, cy) and turned by ``angle`` degrees
    (its x axis along the image direction at ``angle``), borders replicated. Only the pixels around the
    square are touched: a large square is first decimated by an integer step, so the cost does not grow with
    the frame or the face size."""
    import cv2

    h, w = image.shape[:2]
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    r = 0.5 * side * (abs(c) + abs(s)) + 2
    x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
    x1, y1 = min(w, int(math.ceil(cx + r)) + 1), min(h, int(math.ceil(cy + r)) + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((out, out, 3), np.uint8)
    step = max(1, int(side / (2 * out)))
    region = np.ascontiguousarray(image[y0:y1:step, x0:x1:step])
    k = side / (out * step)
    lin = k * np.array([[c, -s], [s, c]])
    off = np.array([(cx - x0) / step, (cy - y0) / step]) - lin @ np.array([out / 2, out / 2])
    m = np.hstack([lin, off[:, None]])  # output pixel → region pixel
    return cv2.warpAffine(region, m, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _spans(length: int, side: int) -> list[int]:
    """Start offsets of windows of ``side`` covering ``length``, evenly spread, overlapping."""
    n = max(1, math.ceil((length - side) / side) + 1) if length > side else 1
    return [round(i * (length - side) / (n - 1)) if n > 1 else 0 for i in range(n)]


def search_windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Where the full-range model looks for a new face, as (x, y, width, height): the whole frame; for a
    frame over 800 px wide (or tall) also squares of its short side; for a short side over 900 px also
    squares of 2/3 of it. The model sees a window at 192 px and needs the face ≳14 px there: faces from
    ≈48 px are found in 640×480, ≈64 px in 1280×720 and 1920×1080."""
    wins = [(0, 0, width, height)]
    short, long_ = min(width, height), max(width, height)
    sides = ([short] if long_ > 800 and long_ > 1.4 * short else []) + ([round(short * 2 / 3)] if short > 900 else [])
    for s in sides:
        wins += [(x, y, s, s) for y in _spans(height, s) for x in _spans(width, s)]
    return wins


class FaceDetector:
    """Finds one face: the full-range BlazeFace proposes, the short-range BlazeFace measures.

    The short-range model gives steady boxes when the face fills about half of its 128² input (the regime of
    the VoxCeleb calibration, ``VOX_SCALE``/``VOX_SHIFT``), but misses faces below ~15% of the frame. So:

    - ``near`` given (the last box): the short-range model runs on a 128² window of ``ROI_SCALE`` box sides
      around it (≈2 ms, any frame size, the box size no longer depends on the frame size);
    - otherwise, or when that fails, the full-range model searches the frame (``search_windows``; all of
      them, or one per call in turn with ``full_search=False``) and its best box is measured again with the
      short-range model. A full-range box the short-range model cannot confirm is used as it is (corrected
      by ``FULL_SCALE``/``FULL_SHIFT``) when its score reaches ``min_confidence``.

    ``detect(rgb)`` returns the face or None. Call ``close()`` when done.
    """

    def __init__(self, min_confidence: float = 0.5, search_confidence: float = 0.3):
        from . import mp_models

        self.min_confidence = min_confidence
        self._short: mp_models.QuietModel | None = mp_models.face_detection(0, min_confidence)
        self._full: mp_models.QuietModel | None = mp_models.face_detection(1, search_confidence)
        self._turn = 0

    def refine(self, image: np.ndarray, near: Detection) -> Detection | None:
        """The short-range box of the face in the window around ``near``, turned by ``near.angle`` so that
        the face is upright there (None if the model finds no face)."""
        side = ROI_SCALE * near.side
        cx, cy = near.center
        patch = sample_window(image, cx, cy, side, near.angle, SHORT_INPUT)  # (128, 128, 3)
        assert self._short is not None, "FaceDetector used after close()"
        res = self._short.process(patch)
        if not res.detections:
            return None
        d = _to_detection(max(res.detections, key=lambda d: d.score[0]), 0.0, 0.0, SHORT_INPUT, SHORT_INPUT)
        k = side / SHORT_INPUT
        a = math.radians(near.angle)
        u, v = d.center[0] - SHORT_INPUT / 2, d.center[1] - SHORT_INPUT / 2
        fx = cx + k * (math.cos(a) * u - math.sin(a) * v)
        fy = cy + k * (math.sin(a) * u + math.cos(a) * v)
        fw, fh = k * d.w, k * d.h
        return Detection(fx - fw / 2, fy - fh / 2, fw, fh, d.score, _wrap(near.angle + d.angle))

    def search(self, image: np.ndarray, full_search: bool = True) -> Detection | None:
        """Full-range search of the frame (every window, or the next one in turn), refined."""
        h, w = image.shape[:2]
        wins = search_windows(w, h)
        if not full_search:
            wins = [wins[self._turn % len(wins)]]
            self._turn += 1
        cands = []
        for x0, y0, ww, hh in wins:
            assert self._full is not None, "FaceDetector used after close()"
            res = self._full.process(np.ascontiguousarray(image[y0:y0 + hh, x0:x0 + ww]))
            cands += [_to_detection(d, x0, y0, ww, hh) for d in (res.detections or [])]
        for c in sorted(cands, key=lambda d: -d.score)[:3]:
            s = FULL_SCALE * c.side
            a = math.radians(c.angle)  # the full-range box is shifted along the face's own vertical
            gx, gy = c.center[0] - math.sin(a) * FULL_SHIFT * s, c.center[1] + math.cos(a) * FULL_SHIFT * s
            guess = Detection(gx - s / 2, gy - s / 2, s, s, c.score, c.angle)
            found = self.refine(image, guess)
            if found is not None:
                return found
            if c.score >= self.min_confidence:
                return guess
        return None

    def detect(self, image: np.ndarray, near: Detection | None = None, full_search: bool = True) -> Detection | None:
        """The face near ``near`` if given and still there, else the best face the search finds."""
        image = np.ascontiguousarray(image)
        if near is not None:
            found = self.refine(image, near)
            if found is not None:
                return found
        return self.search(image, full_search)

    def close(self) -> None:
        for m in (self._short, self._full):
            if m is not None:
                m.close()
        self._short = self._full = None

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) on a vector: smooth when still, responsive when moving.

    ``min_cutoff`` (Hz) sets the jitter removal at rest; ``beta`` how fast the cutoff rises with speed.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, value, t: float) -> np.ndarray:
        v = np.asarray(value, dtype=np.float64)
        if self.x is None or self.t is None or t <= self.t:
            if self.x is None or self.t is None:
                self.x, self.dx, self.t = v.copy(), np.zeros_like(v), t
            return self.x.copy()
        dt = t - self.t
        self.t = t
        dx = (v - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = self.dx + a_d * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))
        self.x = self.x + a * (v - self.x)
        return self.x.copy()


@dataclass
class TrackResult:
    """What the tracker knows about one frame: the smoothed crop box (the last one while missing; None
    before the first face), whether the face is there now (detected, or tracked between detections), and
    whether the detector ran."""

    box: CropBox | None
    found: bool
    detected: bool
    frames_lost: int


class FaceTracker:
    """Detect every ``detect_every`` frames (every frame while lost), smooth the VoxCeleb square.

    Each detection first looks around the last detector box (``FaceDetector.refine``); the whole frame is
    searched on the first frame, and one search window per frame in turn while the face is missing. A miss
    gives ``found`` False (the caller holds its last motion) and keeps the last box; after ``hold``
    consecutive misses the face counts as lost and the filter restarts on the next detection, so a re-found
    face does not glide in from where it was lost.
    """

    def __init__(self, detect_every: int = 1, hold: int = 3, min_cutoff: float = 1.0, beta: float = 0.05,
                 min_confidence: float = 0.5, detector: FaceDetector | None = None):
        if detect_every < 1:
            raise UserError(f"«detect_every» must be >= 1, got {detect_every}")
        self.detect_every = detect_every
        self.hold = hold
        self.detector = detector or FaceDetector(min_confidence=min_confidence)
        self.filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
        self.box: CropBox | None = None
        self.last_detection: Detection | None = None
        self.misses = 0
        self._since_detect = 0
        self._frame = 0
        self._searched = False

    def update(self, image: np.ndarray, t: float | None = None) -> TrackResult:
        """Track one RGB frame; ``t`` is its time in seconds (default: frame index / 30)."""
        t = self._frame / 30.0 if t is None else t
        self._frame += 1
        lost = self.box is None or self.misses >= self.hold
        due = lost or self.misses > 0 or self._since_detect + 1 >= self.detect_every
        if not due:
            self._since_detect += 1
            return TrackResult(self.box, True, False, 0)
        self._since_detect = 0
        det = self.detector.detect(image, near=self.last_detection, full_search=not self._searched)
        self._searched = True
        if det is None:
            self.misses += 1
            return TrackResult(self.box, False, True, self.misses)
        self.last_detection = det
        raw = vox_box(det)
        if lost:
            self.filter.reset()
        # Filter the side in log space so that zooming in and out are treated alike.
        cx, cy, log_side = self.filter((raw.cx, raw.cy, math.log(raw.side)), t)
        self.box = CropBox(float(cx), float(cy), float(math.exp(log_side)))
        self.misses = 0
        return TrackResult(self.box, True, True, 0)

    def reset(self) -> None:
        self.box = None
        self.last_detection = None
        self.misses = 0
        self._searched = False
        self.filter.reset()

    def close(self) -> None:
        self.detector.close()


class FaceCropper:
    """Track a face through a stream and return VoxCeleb-style crops (out_size²).

    Frames before the first detection are centre-cropped; a lost face keeps its last box.
    """

    def __init__(self, out_size: int = 256, detect_every: int = 1, tracker: FaceTracker | None = None):
        self.out_size = out_size
        self.tracker = tracker or FaceTracker(detect_every=detect_every)
        self.last: TrackResult | None = None

    def crop(self, image: np.ndarray, t: float | None = None) -> np.ndarray:
        self.last = self.tracker.update(image, t)
        box = self.last.box or center_box(image)
        return crop_square(image, box, self.out_size)

    def close(self) -> None:
        self.tracker.close()


def center_box(image: np.ndarray | Any) -> CropBox:
    """The largest centred square of an image (anything with a (H, W, ...) ``shape``: arrays, tensors)."""
    h, w = image.shape[:2]
    return CropBox(w / 2, h / 2, float(min(w, h)))


def find_portrait_box(image: np.ndarray, name: str = "source") -> CropBox:
    """The VoxCeleb square around the most confident face; UserError naming ``name`` if none."""
    with FaceDetector() as det:
        found = det.detect(image)
    if found is None:
        raise UserError(f"no face found in {name}; use a clear frontal portrait, or set «source_crop» to none "
                        f"if the image is already a head crop")
    return vox_box(found)


def crop_portrait_with_box(image: np.ndarray, size: int, name: str = "source") -> tuple[np.ndarray, CropBox]:
    """Crop a portrait like the training data; returns (size² crop, its box in ``image`` pixels)."""
    box = find_portrait_box(image, name)
    return crop_square(image, box, size), box


def crop_portrait(image: np.ndarray, size: int, name: str = "source") -> np.ndarray:
    """Crop a portrait like the training data (size² RGB); UserError naming ``name`` when no face."""
    return crop_portrait_with_box(image, size, name)[0]
