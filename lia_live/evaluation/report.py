"""Aggregate per-video records and write ``metrics.json``, ``per_video.csv`` and ``results.md``.

Aggregation: each video's metric is the mean over its frames (frames where the metric could not be measured,
e.g. no face detected, are left out and counted in ``*_fail``); the overall number is the mean over videos of
the per-video means (the official ``evaluation.py`` protocol). Frame-weighted means (FOMM's
``reconstruction.py`` style) are reported next to them under ``frame_weighted``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..fsutil import write_atomic
from .metrics import nanmean

#: Column order of the tables; only metrics present in the run are shown.
COLUMNS = ("l1", "lpips", "aed", "aed_fail", "akd", "akd_fail", "mkr")
LABELS = {"l1": "L1", "lpips": "LPIPS", "aed": "AED", "aed_fail": "AED fail", "akd": "AKD (px)",
          "akd_fail": "AKD fail", "mkr": "MKR"}


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize_video(per_frame: dict[str, list[float]], metrics: tuple[str, ...]) -> dict[str, float]:
    """Per-video means (NaN-aware) and failure fractions from the per-frame lists."""
    out: dict[str, float] = {}
    for m in ("l1", "lpips", "aed", "akd"):
        if m not in metrics:
            continue
        vals = per_frame[m]
        out[m] = nanmean(vals)
        if m in ("aed", "akd"):
            out[f"{m}_fail"] = sum(1 for v in vals if v is None or not math.isfinite(v)) / max(len(vals), 1)
    if "akd" in metrics and "gt_keypoints" in per_frame:
        present = sum(per_frame["gt_keypoints"])
        out["mkr"] = sum(per_frame["missing_keypoints"]) / present if present else math.nan
    return out


def summarize_run(records: list[dict], metrics: tuple[str, ...]) -> dict[str, Any]:
    """Overall numbers: mean over videos of per-video means, plus frame-weighted means and failure rates."""
    overall: dict[str, Any] = {"videos": len(records), "frames": sum(r["frames"] for r in records)}
    frame_weighted: dict[str, float] = {}
    for m in ("l1", "lpips", "aed", "akd"):
        if m not in metrics:
            continue
        overall[m] = nanmean([r["summary"].get(m) for r in records])
        frame_weighted[m] = nanmean([v for r in records for v in r["per_frame"][m]])
        if m in ("aed", "akd"):
            n_fail = sum(r["summary"][f"{m}_fail"] * r["frames"] for r in records)
            overall[f"{m}_fail"] = n_fail / overall["frames"] if overall["frames"] else math.nan
    if "akd" in metrics and any("mkr" in r["summary"] for r in records):
        present = sum(sum(r["per_frame"]["gt_keypoints"]) for r in records)
        missing = sum(sum(r["per_frame"]["missing_keypoints"]) for r in records)
        overall["mkr"] = missing / present if present else math.nan
    overall["frame_weighted"] = frame_weighted
    return overall


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_table(overall: dict, records: list[dict]) -> str:
    """A markdown table: one row per video and an overall row (mean of video means)."""
    cols = [c for c in COLUMNS if c in overall]
    head = "| video | source | frames | " + " | ".join(LABELS[c] for c in cols) + " |"
    sep = "|" + "---|" * (3 + len(cols))
    rows = [head, sep]
    for r in records:
        rows.append(f"| {r['name']} | {r['source']} | {r['frames']} | "
                    + " | ".join(_fmt(r["summary"].get(c)) for c in cols) + " |")
    rows.append(f"| **overall** ({overall['videos']} videos) | | {overall['frames']} | "
                + " | ".join(f"**{_fmt(overall.get(c))}**" for c in cols) + " |")
    return "\n".join(rows) + "\n"


def write_reports(out: Path, run: dict, overall: dict, records: list[dict], notes: list[str],
                  timing: dict | None) -> dict[str, Path]:
    """Write metrics.json, per_video.csv and results.md into ``out``; returns their paths."""
    cols = [c for c in COLUMNS if c in overall]
    per_video = {r["name"]: {"source": r["source"], "frames": r["frames"], **r["summary"]} for r in records}
    doc = {"run": run, "overall": overall, "per_video": per_video, "notes": notes, "timing_ms_per_frame": timing}
    paths = {"json": out / "metrics.json", "csv": out / "per_video.csv", "md": out / "results.md"}
    write_atomic(paths["json"], json.dumps(clean(doc), indent=2) + "\n")

    lines: list[list[Any]] = [["video", "source", "frames", *cols]]
    for r in records:
        lines.append([r["name"], r["source"], r["frames"], *[clean(r["summary"].get(c)) for c in cols]])
    from io import StringIO

    buf = StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["" if v is None else v for v in row] for row in lines])
    write_atomic(paths["csv"], buf.getvalue())

    md = [f"# lia-eval: {run['checkpoint']} on {run['data']} ({run['protocol']}, {run['mode']} motion)", "",
          markdown_table(overall, records)]
    md += ["L1 and LPIPS: mean over frames of each video, then mean over videos. AED: dlib 128-D face "
           "descriptor distance (not the paper's OpenFace). AKD: mean landmark distance in pixels at "
           f"{run['size']}×{run['size']}; 'fail' = fraction of frames where it could not be measured.", ""]
    if notes:
        md += ["Notes:", *[f"- {n}" for n in notes], ""]
    if timing:
        md += ["Time per frame (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()), ""]
    write_atomic(paths["md"], "\n".join(md))
    return paths
