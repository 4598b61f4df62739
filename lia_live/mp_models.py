"""The one place that builds mediapipe models (legacy ``solutions`` API of mediapipe 0.10.21, bundled models).

mediapipe and TFLite print INFO/``W0000`` lines on the native stderr when a graph is built, when it first
runs, and when its landmark stage first produces something. Every builder here returns a ``QuietModel``:
the graph is built and run once on a small blank image with the C-level stderr redirected to /dev/null,
and ``process`` stays silenced until the first call that finds something; after that calls run
unsilenced, so other threads' messages are not swallowed for long. Python exceptions still propagate.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from .errors import UserError

_NEED = "mediapipe==0.10.21 (the last release with the legacy 'solutions' API and bundled models)"


@contextlib.contextmanager
def native_stderr_silenced():
    """Redirect the C-level stderr (fd 2) to /dev/null inside the block; does nothing where fd 2 cannot be
    redirected."""
    fd = 2  # native code writes to fd 2 whatever ``sys.stderr`` is
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def solutions(purpose: str):
    """``mediapipe.solutions``, or UserError saying what ``purpose`` needs."""
    try:
        import mediapipe as mp
        return mp.solutions
    except (ImportError, AttributeError) as e:
        raise UserError(f"{purpose} needs {_NEED}: pip install mediapipe==0.10.21 ({e})") from None


class QuietModel:
    """A mediapipe solution whose native log lines are silenced until it first finds something."""

    def __init__(self, build, warm_size: int = 64):
        with native_stderr_silenced():
            self.model = build()
            self.model.process(np.zeros((warm_size, warm_size, 3), np.uint8))
        self._quiet = True

    def process(self, image: np.ndarray):
        """The solution's result for one RGB uint8 image."""
        if not self._quiet:
            return self.model.process(image)
        with native_stderr_silenced():
            res = self.model.process(image)
        fields = ("detections", "multi_face_landmarks", "pose_landmarks")
        if any(getattr(res, f, None) for f in fields):
            self._quiet = False
        return res

    def close(self) -> None:
        """Release the graph."""
        self.model.close()


def face_detection(model_selection: int = 0, min_confidence: float = 0.5,
                   purpose: str = "face tracking") -> QuietModel:
    """BlazeFace: ``model_selection`` 0 = short-range (128² input, faces filling ≳15% of the image),
    1 = full-range sparse (192² input, faces down to ≈7% of the image's long side)."""
    fd = solutions(purpose).face_detection
    return QuietModel(lambda: fd.FaceDetection(model_selection=model_selection,
                                           min_detection_confidence=min_confidence))


def face_mesh(static_image_mode: bool = True, max_num_faces: int = 1, refine_landmarks: bool = False,
              min_confidence: float = 0.5, purpose: str = "face landmarks") -> QuietModel:
    """The 468-point face mesh."""
    fm = solutions(purpose).face_mesh
    return QuietModel(lambda: fm.FaceMesh(static_image_mode=static_image_mode, max_num_faces=max_num_faces,
                                      refine_landmarks=refine_landmarks, min_detection_confidence=min_confidence))


def pose(static_image_mode: bool = True, model_complexity: int = 1, min_confidence: float = 0.5,
         purpose: str = "body keypoints") -> QuietModel:
    """The 33-keypoint body pose model (``model_complexity=1`` is bundled)."""
    ps = solutions(purpose).pose
    return QuietModel(lambda: ps.Pose(static_image_mode=static_image_mode, model_complexity=model_complexity,
                                  min_detection_confidence=min_confidence))
