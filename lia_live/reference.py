"""The reference-pose choice of relative motion (``reference`` first / auto / landmarks), shared by the live
loop (over a short window, :class:`~lia_live.motion.MotionController`) and ``lia-animate`` (over the whole
clip), and the landmark features that ``landmarks`` compares.

:func:`choose_reference` picks one frame of a set of candidates: ``first``, the first one; ``auto``, the one
whose motion code α is nearest (L2) the portrait's own α_src; ``landmarks``, the one whose face-mesh features
(head pose, mouth and eye openness, below) are nearest the portrait's. It returns a :class:`ReferenceChoice`
that says how it chose.

The features of one face image come from mediapipe's 468-point face mesh (:func:`lia_live.mp_models.face_mesh`,
static-image mode, one face):

- **head pose** (degrees): the mesh's own 3-D points (x·W, y·H, z·W; mediapipe's z is a relative depth on
  the scale of x) give an orthonormal face frame, with no camera model and no solvePnP:
  ``x̂`` = subject's right eye outer corner (33) → left eye outer corner (263), ``ŷ`` = forehead (10) → chin
  (152) made orthogonal to ``x̂``, ``ẑ = x̂ × ŷ``. With ``R = [x̂ ŷ ẑ]`` decomposed as ``Rz(roll)·Ry(yaw)·Rx(pitch)``:
  ``roll = atan2(R10, R00)`` (the in-plane angle of the eye line, so rotating the image changes roll only),
  ``yaw = asin(−R20)``, ``pitch = atan2(R21, R22)``. The angles are relative to the mesh's own frontal frame
  (a frontal face is near, not exactly at, zero); only differences between faces are used.
- **mouth openness**: inner-lip gap (13 ↔ 14) / face size;
- **eye openness**, subject's right (159 ↔ 145) and left (386 ↔ 374): lid gap / face size;

where face size is the 3-D distance between the outer eye corners, so openness does not depend on the
image size or the distance to the camera, and little on the head's yaw.

Feature scaling (:data:`SCALES`, fixed, not fitted per clip): a feature vector is
``(yaw, pitch, roll) / 10°`` and ``mouth / 0.1``, ``(eye_r, eye_l) / 0.03``; one unit is a small but visible
change of each (10° of head turn; a mouth opened by a tenth of the eye-corner distance, about a third of a
full open; an eye going a third of the way from open to closed). The distance between two faces is the L2
distance of their scaled vectors. Fixed scales keep a feature that barely moves in a clip from being
blown up into noise, as a per-clip standardisation would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np
import torch

from . import mp_models
from .errors import UserError

REFERENCES = ("first", "auto", "landmarks")

# mesh indices (mediapipe's canonical face-mesh topology)
_EYE_R_OUT, _EYE_L_OUT = 33, 263
_FOREHEAD, _CHIN = 10, 152
_LIP_UP, _LIP_LOW = 13, 14
_EYE_R_UP, _EYE_R_LOW = 159, 145
_EYE_L_UP, _EYE_L_LOW = 386, 374

FEATURES = ("yaw", "pitch", "roll", "mouth", "eye_r", "eye_l")
SCALES = np.array([10.0, 10.0, 10.0, 0.1, 0.03, 0.03])  # one unit of each feature in the distance


@dataclass(frozen=True)
class LandmarkFeatures:
    """Head pose (degrees) and mouth / eye openness (fractions of the eye-corner distance) of one face."""

    yaw: float
    pitch: float
    roll: float
    mouth: float
    eye_r: float
    eye_l: float

    def vector(self) -> np.ndarray:
        """The scaled feature vector (6,) whose L2 distances compare faces (see :data:`SCALES`)."""
        return np.asarray(astuple(self), dtype=np.float64) / SCALES


def features_from_points(points: np.ndarray) -> LandmarkFeatures:
    """Features of one mesh (468, 3) in pixel units (x·W, y·H, z·W)."""
    p = np.asarray(points, dtype=np.float64)
    ex = p[_EYE_L_OUT] - p[_EYE_R_OUT]  # (3,)
    size = float(np.linalg.norm(ex))
    if size <= 1e-9:
        raise ValueError("degenerate face mesh: the eye corners coincide")
    ex = ex / size
    down = p[_CHIN] - p[_FOREHEAD]  # (3,)
    ey = down - ex * float(ex @ down)
    ey = ey / max(float(np.linalg.norm(ey)), 1e-9)
    ez = np.cross(ex, ey)
    r = np.stack([ex, ey, ez], axis=1)  # (3, 3) columns: the face axes in camera coordinates
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))

    def gap(a: int, b: int) -> float:
        return float(np.linalg.norm(p[a] - p[b])) / size

    return LandmarkFeatures(yaw, pitch, roll, gap(_LIP_UP, _LIP_LOW), gap(_EYE_R_UP, _EYE_R_LOW),
                            gap(_EYE_L_UP, _EYE_L_LOW))


class LandmarkReader:
    """Face-mesh features of images, one mesh graph reused (static-image mode: every image on its own).

    Cost: one face-mesh run per image, about 20 ms for a 256² image on one busy CPU core (measured here).
    """

    def __init__(self, min_confidence: float = 0.5):
        self._mesh = mp_models.face_mesh(static_image_mode=True, max_num_faces=1, min_confidence=min_confidence,
                                         purpose="«reference» landmarks")

    def points(self, image: np.ndarray) -> np.ndarray | None:
        """The mesh (468, 3) in pixels (x·W, y·H, z·W) of an RGB uint8 image (H, W, 3), or None without a face."""
        img = np.ascontiguousarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
        res = self._mesh.process(img)
        if not res.multi_face_landmarks:
            return None
        h, w = img.shape[:2]
        lm = res.multi_face_landmarks[0].landmark
        return np.array([[q.x * w, q.y * h, q.z * w] for q in lm], dtype=np.float64)  # (468, 3)

    def features(self, image: np.ndarray) -> LandmarkFeatures | None:
        """Features of the face in an RGB uint8 image, or None where the mesh finds no face."""
        pts = self.points(image)
        return None if pts is None else features_from_points(pts)

    def close(self) -> None:
        """Release the mesh graph."""
        self._mesh.close()

    def __enter__(self) -> LandmarkReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def landmark_features(image: np.ndarray) -> LandmarkFeatures | None:
    """Features of the face in one RGB uint8 image (None: no face); builds a mesh for this one call."""
    with LandmarkReader() as reader:
        return reader.features(image)


def feature_distances(target: LandmarkFeatures, frames: Sequence[LandmarkFeatures | None]) -> np.ndarray:
    """Scaled L2 distance (N,) of each frame's features to ``target``; ``inf`` where a frame has no face."""
    t = target.vector()  # (6,)
    return np.array([np.inf if f is None else float(np.linalg.norm(f.vector() - t)) for f in frames],
                    dtype=np.float64)


def nearest_features(target: LandmarkFeatures, frames: Sequence[LandmarkFeatures | None]
                     ) -> tuple[int | None, np.ndarray]:
    """Index of the frame nearest ``target`` (None when no frame has a face) and all distances (N,)."""
    d = feature_distances(target, frames)
    if not len(d) or not np.isfinite(d).any():
        return None, d
    return int(np.argmin(d)), d


# ---- the choice ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceChoice:
    """How the reference was chosen: the candidate's index (from 0) among ``window`` candidates, its distance
    to the portrait and the first candidate's (α units for ``auto`` and ``first``, landmark units for
    ``landmarks``; NaN without the portrait's), ``by`` which rule, and for ``landmarks`` how many candidates
    had a face mesh (``faces``; 0: none had, the first frame was taken)."""

    index: int
    distance: float
    first_distance: float
    window: int
    by: str = "first"
    faces: int | None = None

    def describe(self) -> str:
        """The one line said when the reference is taken."""
        if self.by == "landmarks" and self.faces == 0 and math.isnan(self.distance):
            return "reference pose: the first frame (the face mesh finds no face in the portrait)"
        if self.by == "landmarks" and self.faces == 0:
            return (f"reference pose: the face mesh found no face in the {self.window} driving frames; "
                    "using the first frame")
        if self.by == "first" or self.window <= 1:
            return f"reference pose captured (distance to the portrait's pose {self.distance:.3f})"
        faces = f"; {self.faces} frames with a face" if self.faces is not None else ""
        how = " by landmarks" if self.by == "landmarks" else ""
        return (f"reference pose: frame {self.index} of {self.window}{how} (distance to the portrait's pose "
                f"{self.distance:.3f}; first frame {self.first_distance:.3f}{faces})")

    def to_dict(self) -> dict:
        """JSON-friendly (NaN and infinity become None)."""
        def num(v: float) -> float | None:
            return round(v, 5) if math.isfinite(v) else None

        return {"index": self.index, "distance": num(self.distance), "first_distance": num(self.first_distance),
                "window": self.window, "by": self.by, "faces": self.faces}


def alpha_distances(alphas: torch.Tensor, target: torch.Tensor | None) -> np.ndarray:
    """L2 distance (N,) of each row of ``alphas`` (N, M) to ``target`` (1, M); NaN without a target."""
    if target is None:
        return np.full(len(alphas), np.nan)
    d = (alphas.detach().float().cpu() - target.detach().float().cpu().reshape(1, -1)).norm(dim=1)  # (N,)
    return d.numpy().astype(np.float64)


def choose_reference(by: str, alphas: torch.Tensor, alpha_source: torch.Tensor | None = None,
                     features: Sequence[LandmarkFeatures | None] | None = None,
                     source_features: LandmarkFeatures | None = None) -> ReferenceChoice:
    """The reference among candidate frames with motion codes ``alphas`` (N, M), N ≥ 1 (see the module doc).

    ``auto`` needs ``alpha_source`` (without it: the first frame). ``landmarks`` needs ``features`` (one per
    candidate, None where the mesh found no face) and the portrait's ``source_features``; without a face on
    either side it takes the first frame (``faces == 0``).
    """
    if by not in REFERENCES:
        raise UserError(f"unknown «reference» choice {by!r}; choose first, auto or landmarks")
    n = len(alphas)
    if n < 1:
        raise ValueError("choose_reference needs at least one candidate frame")
    if by == "landmarks":
        feats = list(features or [])[:n] + [None] * max(0, n - len(features or []))
        if source_features is None:
            return ReferenceChoice(0, math.nan, math.nan, n, by, 0)
        best, d = nearest_features(source_features, feats)
        faces = int(np.isfinite(d).sum())
        if best is None:
            return ReferenceChoice(0, math.inf, math.inf, n, by, 0)
        return ReferenceChoice(best, float(d[best]), float(d[0]), n, by, faces)
    d = alpha_distances(alphas, alpha_source)
    best = int(np.argmin(d)) if by == "auto" and alpha_source is not None else 0
    return ReferenceChoice(best, float(d[best]), float(d[0]), n, by)


__all__ = ["FEATURES", "REFERENCES", "SCALES", "LandmarkFeatures", "LandmarkReader", "ReferenceChoice",
           "alpha_distances", "choose_reference", "feature_distances", "features_from_points",
           "landmark_features", "nearest_features"]
