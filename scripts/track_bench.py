"""Face-tracking benchmark on generated frames (NASA's public-domain astronaut portrait from scikit-image).

The portrait is warped into 640×480, 1280×720 and 1920×1080 frames: face widths from 48 px up to filling the
frame, in-plane roll ±30°, yaw imitated by a horizontal squeeze (0.7), dim and backlit exposure, sensor noise.
Each (resolution, size, condition) is a short sequence in which the face drifts slowly (a circle of 0.15 face
widths, ±5 % zoom, ±3° roll); each method tracks it with a fresh ``FaceTracker`` (detect every frame).

Ground truth: the face box of the portrait (centre and side) is measured once with the short-range model on
windows of 1.9-2.5 box sides around the face at native size (the regime of the VoxCeleb calibration) and
transformed with the warp; a squeezed face keeps its height as its side.

Per method and resolution: hit rate (the tracker reports the face and its detector box centre is within 0.3
face widths of the truth), box-size error |side/true - 1| and centre error (in face widths) over hits,
ms per ``update`` (the tracking cost of one frame), and crop jitter on a still face (noise only): the
frame-to-frame change of the smoothed crop box (max of |Δcx|, |Δcy|, |Δside|) in % of its side, and the same
for the unsmoothed crop of each detection.

    PYTHONPATH=. python scripts/track_bench.py [--frames 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np

from lia_live import mp_models
from lia_live.tracking import (
    FULL_SCALE,
    FULL_SHIFT,
    CropBox,
    Detection,
    FaceDetector,
    FaceTracker,
    crop_square,
    vox_box,
)

RESOLUTIONS = ((640, 480), (1280, 720), (1920, 1080))
SIZES = (48, 64, 80, 96, 128, 176, 240)
CONDITIONS = ("frontal", "roll+30", "roll-30", "yaw", "dim", "backlit")


class FullFrameDetector:
    """One BlazeFace model on the whole frame every time (``model_selection`` 0 is what lia-live used before)."""

    def __init__(self, model_selection: int, correct: bool = False):
        self._m = mp_models.face_detection(model_selection, 0.5)
        self.correct = correct

    def detect(self, image: np.ndarray, near: Detection | None = None, full_search: bool = True):
        h, w = image.shape[:2]
        res = self._m.process(np.ascontiguousarray(image))
        if not res.detections:
            return None
        d = max(res.detections, key=lambda d: d.score[0])
        bb = d.location_data.relative_bounding_box
        det = Detection(bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h, float(d.score[0]))
        if self.correct:
            s = FULL_SCALE * det.side
            det = Detection(det.center[0] - s / 2, det.center[1] + FULL_SHIFT * s - s / 2, s, s, det.score)
        return det

    def close(self) -> None:
        self._m.close()


class MeshDetector:
    """Candidate: the box of mediapipe's face-mesh landmarks (tracking mode: the mesh follows itself and
    re-detects with the short-range model when lost), scaled to the reference box once on the portrait."""

    calib = (1.0, 0.0)  # (box side / landmark height, centre shift in sides), set by ``calibrate``

    def __init__(self):
        self._m = mp_models.face_mesh(static_image_mode=False)

    @staticmethod
    def box(lm, w: int, h: int):
        p = np.array([(q.x * w, q.y * h) for q in lm.landmark])
        lo, hi = p.min(0), p.max(0)
        return (lo + hi) / 2, hi[1] - lo[1]

    @classmethod
    def calibrate(cls, portrait: np.ndarray, ref) -> None:
        m = mp_models.face_mesh(static_image_mode=True)
        c, hgt = cls.box(m.process(portrait).multi_face_landmarks[0], portrait.shape[1], portrait.shape[0])
        m.close()
        cls.calib = (ref[2] / hgt, (ref[1] - c[1]) / ref[2])

    def detect(self, image: np.ndarray, near: Detection | None = None, full_search: bool = True):
        h, w = image.shape[:2]
        res = self._m.process(np.ascontiguousarray(image))
        if not res.multi_face_landmarks:
            return None
        c, hgt = self.box(res.multi_face_landmarks[0], w, h)
        s = self.calib[0] * hgt
        return Detection(c[0] - s / 2, c[1] + self.calib[1] * s - s / 2, s, s, 1.0)

    def close(self) -> None:
        self._m.close()


METHODS = {
    "short-range, whole frame (before)": lambda: FullFrameDetector(0),
    "full-range, whole frame": lambda: FullFrameDetector(1, correct=True),
    "full-range search + short-range ROI (now)": lambda: FaceDetector(),
    "face-mesh landmarks (candidate)": MeshDetector,
}


def reference_box(portrait: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, side) of the portrait's face: short-range box on windows of 1.9/2.2/2.5 sides, averaged."""
    m = mp_models.face_detection(0, 0.5)
    first = m.process(portrait).detections[0].location_data.relative_bounding_box
    h, w = portrait.shape[:2]
    cx, cy, s = (first.xmin + first.width / 2) * w, (first.ymin + first.height / 2) * h, first.width * w
    out = []
    for k in (1.9, 2.2, 2.5):
        win = CropBox(cx, cy, k * s)
        bb = m.process(crop_square(portrait, win, 128)).detections[0].location_data.relative_bounding_box
        sc = win.side
        out.append((win.cx - sc / 2 + (bb.xmin + bb.width / 2) * sc, win.cy - sc / 2 + (bb.ymin + bb.height / 2) * sc,
                    bb.width * sc))
    m.close()
    return tuple(float(v) for v in np.mean(out, 0))


@dataclass
class Shot:
    """One generated frame and its true face box."""

    image: np.ndarray
    cx: float
    cy: float
    side: float


class Generator:
    def __init__(self, portrait: np.ndarray, ref: tuple[float, float, float], seed: int = 0):
        self.portrait = portrait
        self.ref = ref
        rng = np.random.default_rng(seed)
        self.noise = {}
        self.rng = rng

    def _noise(self, w: int, h: int, i: int):
        key = (w, h)
        if key not in self.noise:
            bank = []
            for _ in range(4):
                n = self.rng.normal(0, 3.0, (h, w, 3))
                bank.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
            self.noise[key] = bank
        return self.noise[key][i % 4]

    def shot(self, w: int, h: int, size: float, cx: float, cy: float, cond: str, i: int,
             roll: float = 0.0) -> Shot:
        rcx, rcy, rs = self.ref
        sc = size / rs
        squeeze = 0.7 if cond == "yaw" else 1.0
        roll += {"roll+30": 30.0, "roll-30": -30.0}.get(cond, 0.0)
        a = math.radians(roll)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        lin = rot @ np.diag([sc * squeeze, sc])
        m = np.hstack([lin, (np.array([cx, cy]) - lin @ np.array([rcx, rcy]))[:, None]])
        y, x = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
        bg = np.stack([90 + 40 * np.sin(x / 37.0), 110 + 30 * np.cos(y / 23.0 + x / 61.0),
                       120 + 35 * np.sin(y / 29.0)], -1)
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
        src = self.portrait
        if cond == "backlit":
            bg = np.clip(bg * 0.3 + 200, 0, 255)
            src = (src.astype(np.float32) * 0.45).astype(np.uint8)
        frame = cv2.warpAffine(src, m, (w, h), dst=bg.astype(np.uint8),
                               flags=cv2.INTER_AREA if sc < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_TRANSPARENT)
        if cond == "dim":
            frame = (frame.astype(np.float32) * 0.3).astype(np.uint8)
        plus, minus = self._noise(w, h, i)
        frame = cv2.subtract(cv2.add(frame, plus), minus)
        return Shot(frame, cx, cy, size)


def sequence(gen: Generator, w: int, h: int, size: float, cond: str, n: int, still: bool = False) -> list[Shot]:
    out = []
    for i in range(n):
        ph = 2 * math.pi * i / max(n, 1)
        r = 0.0 if still else 0.15 * size
        s = size * (1.0 if still else 1 + 0.05 * math.sin(ph))
        roll = 0.0 if still else 3.0 * math.sin(2 * ph)
        out.append(gen.shot(w, h, s, w / 2 + r * math.cos(ph), h / 2 + r * math.sin(ph), cond, i, roll))
    return out


def run_sequence(tracker: FaceTracker, shots: list[Shot]):
    hits, size_err, centre_err, ms, boxes, raw = 0, [], [], [], [], []
    for i, sh in enumerate(shots):
        t0 = time.perf_counter()
        r = tracker.update(sh.image, i / 30.0)
        ms.append((time.perf_counter() - t0) * 1e3)
        det = tracker.last_detection
        ok = False
        if r.found and r.detected and det is not None:
            e = math.hypot(det.center[0] - sh.cx, det.center[1] - sh.cy) / sh.side
            if e < 0.3:
                ok = True
                size_err.append(abs(det.side / sh.side - 1))
                centre_err.append(e)
        hits += ok
        boxes.append(r.box if ok else None)
        raw.append(vox_box(det) if ok else None)
    return hits, size_err, centre_err, ms, boxes, raw


def jitter(boxes: list) -> list[float]:
    """Frame-to-frame change of consecutive crop boxes, % of the side (pairs where both exist)."""
    out = []
    for a, b in zip(boxes, boxes[1:]):
        if a is not None and b is not None:
            out.append(100 * max(abs(a.cx - b.cx), abs(a.cy - b.cy), abs(a.side - b.side)) / a.side)
    return out


def timing(gen: Generator, names: list[str], repeats: int, n: int) -> dict:
    """Per resolution and method: tracking ms per frame on a 96 px face drifting slowly (every frame after the
    first), and the first frame (the search of the whole frame). Methods run in turn, ``repeats`` times; per
    frame the least time over the repeats is kept (the cost with the least interference from other
    processes on a shared machine), and the mean over repeats is given too."""
    out = {}
    for w, h in RESOLUTIONS:
        shots = sequence(gen, w, h, 96, "frontal", n)
        trackers = {name: FaceTracker(detector=METHODS[name]()) for name in names}
        times = {name: [] for name in names}
        for _ in range(repeats):
            for name, tr in trackers.items():
                tr.reset()
                times[name].append(run_sequence(tr, shots)[3])
        for name, tr in trackers.items():
            tr.close()
            t = np.array(times[name])  # (repeats, n)
            out[f"{w}x{h} | {name}"] = {"ms_min": float(t[:, 1:].min(0).mean()), "ms_mean": float(t[:, 1:].mean()),
                                        "first_min": float(t[:, 0].min()), "first_mean": float(t[:, 0].mean())}
            r = out[f"{w}x{h} | {name}"]
            print(f"timing {w}x{h} {name}: {r['ms_min']:.2f} ms/frame least of {repeats} ({r['ms_mean']:.2f} mean); "
                  f"first frame {r['first_min']:.1f} ms ({r['first_mean']:.1f} mean)", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30, help="frames per sequence (default 30)")
    p.add_argument("--still-frames", type=int, default=60, help="frames of each still-face sequence (default 60)")
    p.add_argument("--methods", nargs="*", default=list(METHODS), help="which methods (default all)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--timing-only", action="store_true", help="only the timing pass")
    p.add_argument("--repeats", type=int, default=9, help="repeats of the timing pass (default 9)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    from skimage import data

    portrait = np.ascontiguousarray(data.astronaut())
    ref = reference_box(portrait)
    print(f"reference face box in the portrait: centre ({ref[0]:.1f}, {ref[1]:.1f}), side {ref[2]:.1f} px")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cpus: {os.cpu_count()})")
    MeshDetector.calibrate(portrait, ref)
    gen = Generator(portrait, ref)
    results = {"timing": timing(gen, args.methods, args.repeats, args.frames)}
    for w, h in ([] if args.timing_only else RESOLUTIONS):
        fill = int(0.55 * h)
        sizes = [s for s in SIZES if s < fill] + [fill]
        seqs = {(s, c): sequence(gen, w, h, s, c, args.frames) for s in sizes for c in CONDITIONS}
        stills = {s: sequence(gen, w, h, s, "frontal", args.still_frames, still=True) for s in (64, 96, 176)}
        for name in args.methods:
            det = METHODS[name]()
            tracker = FaceTracker(detector=det)
            rows = {}
            for (s, c), shots in seqs.items():
                tracker.reset()
                rows[(s, c)] = run_sequence(tracker, shots)
            jit, jit_raw, still_ms = [], [], []
            for shots in stills.values():
                tracker.reset()
                _, _, _, ms, boxes, raw = run_sequence(tracker, shots)
                jit += jitter(boxes)
                jit_raw += jitter(raw)
                still_ms += ms[1:]
            tracker.close()
            res = {"by_size": {}, "by_condition": {}}
            for key, pick in (("by_size", 0), ("by_condition", 1)):
                for k in sorted({kk[pick] for kk in rows}, key=lambda v: (isinstance(v, str), v)):
                    sel = [v for kk, v in rows.items() if kk[pick] == k]
                    res[key][str(k)] = summarize(sel)
            res["ge64"] = summarize([v for (s, _), v in rows.items() if s >= 64])
            res["all"] = summarize(list(rows.values()))
            res["jitter_pct"] = float(np.mean(jit)) if jit else math.nan
            res["jitter_raw_pct"] = float(np.mean(jit_raw)) if jit_raw else math.nan
            res["still_ms"] = float(np.mean(still_ms))
            res["first_ms"] = float(np.mean([r[3][0] for r in rows.values()]))
            results[f"{w}x{h} | {name}"] = res
            g = res["ge64"]
            print(f"{w}x{h} {name}: faces >=64 px: hit {100 * g['hit']:.1f}% size err {100 * g['size']:.1f}% "
                  f"(p95 {100 * g['size95']:.1f}%) centre err {100 * g['centre']:.1f}% | all: hit "
                  f"{100 * res['all']['hit']:.1f}% | {g['ms']:.2f} ms/frame (still face {res['still_ms']:.2f}, "
                  f"first frame {res['first_ms']:.1f}) | "
                  f"still-face jitter {res['jitter_pct']:.3f}% (unsmoothed {res['jitter_raw_pct']:.3f}%)",
                  flush=True)
            for k, v in res["by_size"].items():
                print(f"    face {k:>4} px: hit {100 * v['hit']:5.1f}%  size err {100 * v['size']:4.1f}%  "
                      f"centre err {100 * v['centre']:4.1f}%  {v['ms']:.2f} ms")
            for k, v in res["by_condition"].items():
                print(f"    {k:>8}: hit {100 * v['hit']:5.1f}%  size err {100 * v['size']:4.1f}%  "
                      f"centre err {100 * v['centre']:4.1f}%")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def summarize(rows) -> dict:
    n = sum(len(r[3]) for r in rows)
    hits = sum(r[0] for r in rows)
    size = [e for r in rows for e in r[1]]
    centre = [e for r in rows for e in r[2]]
    ms = [m for r in rows for m in r[3]]
    return {"frames": n, "hit": hits / n, "size": float(np.mean(size)) if size else math.nan,
            "size95": float(np.percentile(size, 95)) if size else math.nan,
            "centre": float(np.mean(centre)) if centre else math.nan, "ms": float(np.mean(ms)),
            "ms95": float(np.percentile(ms, 95))}


if __name__ == "__main__":
    sys.exit(main())
