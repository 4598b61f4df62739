"""Evaluation of LIA checkpoints (``lia-eval``): L1, LPIPS, AED and AKD on same- or cross-identity test videos.

Modules: ``metrics`` (per-frame metrics), ``lpips_weights`` (offline AlexNet weights for LPIPS), ``dataset``
(test-video discovery), ``runner`` (the resumable job), ``report`` (metrics.json / per_video.csv / results.md).
Importing this package is cheap: lpips, dlib and mediapipe are imported only when a metric is built.
"""

from .dataset import VideoEntry, discover_videos
from .metrics import l1_per_frame, mean_of_video_means
from .runner import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "VideoEntry", "discover_videos", "l1_per_frame", "mean_of_video_means", "run_evaluation"]
