"""Training pairs: two distinct random frames of one video, one pair per video per epoch.

Layouts (FOMM / MRAA): ``ROOT/{train,test}/<video>/*.png`` (frames sorted by name) and
``ROOT/{train,test}/<video>.mp4``; any frame size, resized to the model size.

Sampling is a pure function of the *global sample index* ``g`` (iteration × global batch + position):
epoch ``g // n_videos`` fixes a seeded permutation of the videos, and a generator seeded with
``(seed, g)`` draws the two frames and the augmentation. So any world size, any gradient-accumulation
split and any resume point see exactly the same pairs in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lia_live.errors import UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}


@dataclass(frozen=True)
class Video:
    """One training video: a frame folder (``frames``) or a video file (``path`` with ``count`` frames)."""

    name: str
    path: Path
    frames: tuple[Path, ...] | None
    count: int


def _video_frame_count(path: Path) -> int:
    import cv2

    from lia_live.io.video import quiet_ffmpeg

    quiet_ffmpeg()
    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n


def find_videos(root: str | Path, split: str = "train") -> list[Video]:
    """All videos with at least two frames under ``root/split`` (or ``root`` itself if it has no splits)."""
    given = str(root)
    root = Path(root)
    if not given or not root.is_dir():
        raise UserError(f"--data must be a dataset folder (ROOT/{{train,test}}/<video>/*.png or <video>.mp4); "
                        f"got {given or 'nothing'}")
    base = root / split if (root / split).is_dir() else root
    videos = []
    for p in sorted(base.iterdir()):
        if p.is_dir():
            frames = tuple(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS))
            if len(frames) >= 2:
                videos.append(Video(p.name, p, frames, len(frames)))
        elif p.suffix.lower() in VIDEO_EXTS:
            n = _video_frame_count(p)
            if n >= 2:
                videos.append(Video(p.stem, p, None, n))
    if not videos:
        raise UserError(f"no training videos (frame folders or video files with >= 2 frames) in {base}")
    return videos


def _read_rgb(path: Path) -> np.ndarray:
    from lia_live.io.video import read_image

    return read_image(path, "training frame")


def read_frame(video: Video, index: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) frame ``index`` of a video."""
    if video.frames is not None:
        return _read_rgb(video.frames[index])
    import cv2

    cap = cv2.VideoCapture(str(video.path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, img = cap.read()
    finally:
        cap.release()
    if not ok:
        raise UserError(f"cannot read frame {index} of {video.path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float (3, size, size) in [-1, 1]."""
    import cv2

    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()  # (3, S, S)
    return t / 127.5 - 1.0


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]  # (1, H, W)


def jitter_pair(src: torch.Tensor, drv: torch.Tensor, rng: np.random.Generator,
                strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One random colour op (brightness, contrast, saturation or hue) with the same factor on both.

    The official ColorJitter applies each op to the *original* image, so only one op survives; this
    keeps that behaviour on purpose (one op per pair) rather than composing four.
    """
    op = int(rng.integers(4))
    if op == 3:
        shift = float(rng.uniform(-strength, strength))
    else:
        factor = float(rng.uniform(max(0.0, 1 - strength), 1 + strength))
    out = []
    for x in (src, drv):
        y = (x + 1) / 2  # (3, H, W) in [0, 1]
        if op == 0:
            y = y * factor
        elif op == 1:
            y = (y - _gray(y).mean()) * factor + _gray(y).mean()
        elif op == 2:
            y = (y - _gray(y)) * factor + _gray(y)
        else:
            from torchvision.transforms.functional import adjust_hue

            y = adjust_hue(y.clamp(0, 1), shift)  # (3, H, W), hue rotated by `shift` turns
        out.append(y.clamp(0, 1) * 2 - 1)
    return out[0], out[1]


class PairDataset(torch.utils.data.Dataset):
    """``dataset[g]`` → (source, driving), each (3, size, size) in [-1, 1], for global sample index g."""

    def __init__(self, videos: list[Video], size: int, seed: int = 0, crop: int = 0, flip: bool = False,
                 jitter: float = 0.0):
        self.videos = videos
        self.size = size
        self.seed = seed
        self.crop = crop
        self.flip = flip
        self.jitter = jitter
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def video_of(self, g: int) -> int:
        """Index of the video used by global sample ``g`` (a seeded permutation per epoch)."""
        epoch, pos = divmod(g, len(self.videos))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0x1A]).permutation(len(self.videos))
            self._perm_epoch = epoch
        assert self._perm is not None
        return int(self._perm[pos])

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.videos[self.video_of(g)]
        rng = np.random.default_rng([self.seed, g])
        i, j = (int(v) for v in rng.choice(video.count, size=2, replace=False))
        src_img, drv_img = read_frame(video, i), read_frame(video, j)
        if self.crop:
            src_img, drv_img = self._crop(src_img, drv_img, rng)
        src, drv = to_tensor(src_img, self.size), to_tensor(drv_img, self.size)
        if self.flip and rng.random() < 0.5:
            src, drv = src.flip(-1), drv.flip(-1)
        if self.jitter > 0:
            src, drv = jitter_pair(src, drv, rng, self.jitter)
        return src, drv

    def _crop(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The same random square crop of both frames; the crop is given at model resolution."""
        import cv2

        s = self.size
        if a.shape[:2] != (s, s):
            a = cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA)
        if b.shape[:2] != (s, s):
            b = cv2.resize(b, (s, s), interpolation=cv2.INTER_AREA)
        c = min(self.crop, s)
        y, x = int(rng.integers(0, s - c + 1)), int(rng.integers(0, s - c + 1))
        return a[y:y + c, x:x + c], b[y:y + c, x:x + c]


class RankBatchSampler(torch.utils.data.Sampler):
    """Global indices for one rank: iteration ``it`` covers ``[it·B, (it+1)·B)``; rank r takes its
    contiguous slice, split into ``accum`` micro-batches (one list per micro-batch)."""

    def __init__(self, batch_size: int, rank: int, world: int, accum: int, start_iter: int, iters: int):
        self.batch_size, self.rank, self.world, self.accum = batch_size, rank, world, accum
        self.start_iter, self.iters = start_iter, iters
        self.micro = batch_size // (world * accum)

    def __len__(self) -> int:
        return max(0, self.iters - self.start_iter) * self.accum

    def indices(self, it: int, micro: int) -> list[int]:
        base = it * self.batch_size + self.rank * (self.batch_size // self.world) + micro * self.micro
        return list(range(base, base + self.micro))

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start_iter, self.iters):
            for m in range(self.accum):
                yield self.indices(it, m)


def make_loader(dataset: PairDataset, sampler: RankBatchSampler, workers: int, pin: bool):
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin,
                                       persistent_workers=False, prefetch_factor=4 if workers else None)


def display_batch(dataset: PairDataset, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of ``n`` pairs for the image grids (indices far beyond any training index)."""
    n = max(1, min(n, 8))
    pairs = [dataset[10 ** 12 + k] for k in range(n)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])  # (n, 3, S, S) ×2


__all__ = ["Video", "find_videos", "read_frame", "to_tensor", "PairDataset", "RankBatchSampler", "make_loader",
           "display_batch", "jitter_pair"]
