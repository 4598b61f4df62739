"""Find the test videos of a dataset root.

Accepted layouts (the training layouts, or anything simpler):

- ``ROOT/<split>/<video>/*.png`` (frame folders) and/or ``ROOT/<split>/<video>.mp4``;
- a plain folder of videos and/or frame folders (used when ``ROOT/<split>`` does not exist);
- a single video file, or a single folder of frames.

Videos are sorted by name, so ``--max-videos N`` always picks the same N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..io.video import IMAGE_EXTS, VIDEO_EXTS

KNOWN_SPLITS = ("train", "test", "val", "valid", "validation")


@dataclass(frozen=True)
class VideoEntry:
    """One test video: its name (folder name or file stem) and path (video file or frame folder)."""

    name: str
    path: Path


def _has_frames(folder: Path) -> bool:
    try:
        return any(f.suffix.lower() in IMAGE_EXTS and f.is_file() for f in folder.iterdir())
    except OSError:
        return False


def _scan(folder: Path) -> list[VideoEntry]:
    out = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.name.startswith("."):
            continue
        if child.is_file() and child.suffix.lower() in VIDEO_EXTS:
            out.append(VideoEntry(child.stem, child))
        elif child.is_dir() and _has_frames(child):
            out.append(VideoEntry(child.name, child))
    return out


def discover_videos(root: str | os.PathLike, split: str = "test") -> tuple[list[VideoEntry], Path]:
    """(videos, the folder they were found in); UserError with the reason when there are none."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"«data» not found: {root}")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTS:
            raise UserError(f"«data» is a file but not a video ({', '.join(sorted(VIDEO_EXTS))}): {root}")
        return [VideoEntry(root.stem, root)], root.parent
    split_dir = root / split
    if split_dir.is_dir():
        folder = split_dir
    else:
        present = [s for s in KNOWN_SPLITS if (root / s).is_dir()]
        if present:
            raise UserError(f"no '{split}' split in {root} (it has: {', '.join(present)}); "
                            f"choose one with «split»")
        folder = root
    videos = _scan(folder)
    if not videos and _has_frames(folder):
        videos = [VideoEntry(folder.name, folder)]
    if not videos:
        raise UserError(f"no videos in {folder}: expected <video>.mp4 files or <video>/ folders of frames")
    names = [v.name for v in videos]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"two test videos share the name {dup[0]!r} in {folder} (a folder and a video file?)")
    return videos, folder
