"""The per-video records a resumed ``lia-eval`` run reads back, checked before they are trusted.

A record (``per_video/<name>.json``) holds, besides the scores, a fingerprint of the driving video and of
the source video it was scored with (file names, sizes and modification times: cheap, and it changes when
frames are added, removed or replaced). A record is reused only when both fingerprints still match and its
fields have the expected types and lengths; otherwise the video is scored again, and the log says why.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..errors import UserError
from ..paths import MIB, read_json
from .dataset import VideoEntry

RECORD_MAX_BYTES = 256 * MIB


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times of a video file or of the files of a frame folder (hashed)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def stamp(rec: dict, entry: VideoEntry, source: VideoEntry) -> dict:
    """``rec`` with the fingerprints of its driving and source videos."""
    return {**rec, "video": fingerprint(entry.path), "source_video": fingerprint(source.path)}


def _number_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def check_record(rec, entry: VideoEntry, source: VideoEntry, metrics: tuple[str, ...]) -> str | None:
    """Why ``rec`` cannot be reused (None: it can)."""
    if not isinstance(rec, dict):
        return "it is not a record"
    if rec.get("name") != entry.name or rec.get("source") != source.name:
        return "it belongs to another video"
    if rec.get("video") != fingerprint(entry.path) or rec.get("source_video") != fingerprint(source.path):
        return "its frames changed since it was scored"
    n, per_frame, summary = rec.get("frames"), rec.get("per_frame"), rec.get("summary")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return "its frame count is not a positive number"
    if not isinstance(per_frame, dict) or not isinstance(summary, dict):
        return "it lacks per-frame scores or a summary"
    for m in metrics:
        vals = per_frame.get(m)
        if not isinstance(vals, list) or len(vals) != n or not all(_number_or_none(v) for v in vals):
            return f"its {m!r} scores are not {n} numbers"
    if not all(isinstance(k, str) and _number_or_none(v) for k, v in summary.items()):
        return "its summary holds values that are not numbers"
    return None


def load_record(path: Path, entry: VideoEntry, source: VideoEntry, metrics: tuple[str, ...],
                log=lambda s: None) -> dict | None:
    """A finished video's record if it is there and can be reused, else None (the video is scored again;
    ``log`` says why when a record was there)."""
    if not path.exists():
        return None
    try:
        rec = read_json(path, "lia-eval record", RECORD_MAX_BYTES)
    except UserError as e:
        log(f"lia-eval: scoring {entry.name} again: {e}")
        return None
    why = check_record(rec, entry, source, metrics)
    if why is not None:
        log(f"lia-eval: scoring {entry.name} again: {why} ({path})")
        return None
    return rec
