"""The evaluation job behind ``lia-eval``: checkpoint × test split → per-frame, per-video and overall metrics.

Protocols:

- same-identity (default, the official one): source = frame 0 of each video, driving = every frame
  (frame 0 included), absolute motion; scored against the driving frames (L1, LPIPS, AED, AKD).
- cross-identity (``cross=True``): source = frame 0 of the next video (sorted order, wrapping round); there is
  no ground truth, so it reports AED to the source's identity and AKD to the driving frames.

The output folder is resumable: each finished video is stored as ``per_video/<name>.json`` and skipped when the
same run (same checkpoint, data, protocol and frame limit, recorded in ``run.json``) is started again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..fsutil import sha256_file, write_atomic
from ..imaging import from_tensor, resize, to_tensor
from ..io.video import FrameSource
from ..log import plural, progress_bar
from ..paths import inside, read_json, same_file
from ..runtime import model_device, resolve_checkpoint
from ..settings import METRICS, EvalConfig
from .dataset import VideoEntry, discover_videos
from .metrics import l1_per_frame
from .records import load_record, stamp
from .report import clean, summarize_run, summarize_video, write_reports

ALL_METRICS = METRICS
RUN_FORMAT = "lia-eval"
RUN_VERSION = 1
TIMERS = ("decode", "model", "l1", "lpips", "aed", "akd", "video")


@dataclass
class Plan:
    """What will be measured: the metrics that apply, and why the others do not."""

    domain: str
    metrics: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def safe_name(name: str) -> str:
    """A file name for a video name (odd characters replaced, plus a short hash when anything was)."""
    s = re.sub(r"[^\w.-]", "_", name)
    return s if s == name else f"{s}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def first_frame(path: Path) -> np.ndarray:
    """Frame 0 of a video or frame folder (RGB uint8)."""
    for f in FrameSource(path):
        return f
    raise UserError(f"no frames in {path}")


def read_frames(path: Path, size: int, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    """The first ``max_frames`` frames of a video resized to the model size (RGB uint8), and its fps."""
    src = FrameSource(path)
    frames = []
    for f in src:
        frames.append(resize(f, size))
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise UserError(f"no readable frames in {path}")
    return frames, src.fps


def detect_domain(image: np.ndarray) -> str:
    """'face' when mediapipe's face detector finds a face at least 20% of the frame wide, else 'body'."""
    from .. import mp_models

    try:
        det = mp_models.face_detection(0, 0.5)
    except UserError:
        return "face"
    res = det.process(np.ascontiguousarray(image))
    det.close()
    boxes = [d.location_data.relative_bounding_box.width for d in (res.detections or [])]
    return "face" if boxes and max(boxes) >= 0.2 else "body"


def plan_metrics(requested: tuple[str, ...], domain: str, cross: bool) -> Plan:
    """Drop the metrics that cannot be measured in this setting, with the reason as a note."""
    notes, keep = [], []
    for m in requested:
        if cross and m in ("l1", "lpips"):
            notes.append(f"{m.upper()} not measured: cross-identity has no ground truth")
        elif domain == "body" and m == "aed":
            notes.append("AED not measured for full-body data: the paper uses a person re-identification network "
                         "(Market-1501 ResNet-50) and no such model ships offline; dlib's face model does not "
                         "apply to small full-body faces")
        else:
            keep.append(m)
    if "akd" in keep and domain == "body":
        notes.append("AKD uses mediapipe pose (33 keypoints, visibility >= 0.5; the paper uses OpenPose's 18); "
                     "MKR = keypoints visible in the ground truth but missing in the reconstruction")
    if "akd" in keep and domain == "face":
        notes.append("AKD uses mediapipe face mesh (468 landmarks; the paper uses FAN's 68)")
    if "aed" in keep:
        notes.append("AED uses dlib's 128-D face descriptor (Euclidean distance), not the paper's OpenFace: "
                     "compare across our checkpoints, not with the paper's numbers")
    if not keep:
        raise UserError(f"none of the requested metrics ({', '.join(requested)}) can be measured here: "
                        + "; ".join(notes))
    return Plan(domain, tuple(keep), notes)


class Scorers:
    """The metric models of a run, built once (heavy packages are imported here, not at module import)."""

    def __init__(self, plan: Plan, lpips_weights: Path | None, device: str):
        from .metrics import FaceIdentity, Landmarks, LPIPSMetric

        self.lpips = LPIPSMetric(lpips_weights, device) if "lpips" in plan.metrics else None
        self.identity = FaceIdentity() if "aed" in plan.metrics else None
        self.landmarks = Landmarks(plan.domain) if "akd" in plan.metrics else None

    def close(self) -> None:
        """Release the mediapipe graph."""
        if self.landmarks is not None:
            self.landmarks.close()


def prepare_out(out: Path, run: dict) -> bool:
    """Accept ``out`` for a new run (True: ``run.json`` is still to be written) or for resuming (False);
    refuse foreign folders and runs with other settings. Nothing is created here: the run record is
    written with the first scored video (:func:`start_run`), so a run that fails earlier leaves no trace."""
    marker = out / "run.json"
    if out.exists() and not out.is_dir():
        raise UserError(f"«out» exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise UserError(f"«out» {out} is not empty and is not a lia-eval output folder (no run.json); "
                            "choose a new or empty folder")
        try:
            old = read_json(marker, "lia-eval run record")  # a regular file of at most 1 MiB, valid JSON
        except UserError as e:
            raise UserError(f"{e}; choose a new «out» folder") from None
        if not isinstance(old, dict) or old.get("format") != RUN_FORMAT:
            raise UserError(f"{marker} is not a lia-eval run record; choose a new «out» folder")
        diff = [k for k in sorted(set(old) | set(run)) if old.get(k) != run.get(k)]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} → {run.get(k)!r}" for k in diff[:3])
            raise UserError(f"«out» {out} holds a lia-eval run with other settings ({shown}); "
                            "use another --out folder to keep both")
        return False
    return True


def start_run(out: Path, run: dict) -> None:
    """Create ``out`` and write its ``run.json`` (the record that makes the folder resumable)."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "run.json", json.dumps(run, indent=2) + "\n")


def _undo_start(out: Path, made_out: bool) -> None:
    """After a failure before anything was scored: remove the empty folders this run made."""
    for sub in (out / "videos", out / "per_video"):
        try:
            sub.rmdir()
        except OSError:  # absent or not empty: leave it
            pass
    if made_out:
        try:
            out.rmdir()
        except OSError:
            pass


def evaluate_video(anim, entry: VideoEntry, source: VideoEntry, cfg: EvalConfig, plan: Plan, scorers: Scorers,
                   timers: dict[str, float], on_frames: Callable[[int], None], video_path: Path | None) -> dict:
    """Animate and score one video; returns its record (name, source, frames, per-frame lists, summary)."""
    t = time.perf_counter()
    frames, fps = read_frames(entry.path, anim.size, cfg.max_frames)
    src_img = frames[0] if source is entry else resize(first_frame(source.path), anim.size)
    timers["decode"] += time.perf_counter() - t
    cross = source is not entry

    per_frame: dict[str, list] = {m: [] for m in plan.metrics}
    if "akd" in plan.metrics and plan.domain == "body":
        per_frame.update(gt_keypoints=[], missing_keypoints=[])
    src_emb = None
    if cross and scorers.identity is not None:
        t = time.perf_counter()
        box = scorers.identity.detect(src_img)
        src_emb = None if box is None else scorers.identity.embed(src_img, box)
        timers["aed"] += time.perf_counter() - t

    writer = None
    if video_path is not None:
        from ..io.video import VideoWriter

        writer = VideoWriter(video_path, fps, overwrite=True)
    try:
        with torch.inference_mode():
            anim.set_source_tensor(to_tensor(src_img))
            anim.set_reference(to_tensor(frames[0]) if cfg.mode == "relative" else None)
            for i in range(0, len(frames), cfg.batch_size):
                batch = frames[i:i + cfg.batch_size]
                t = time.perf_counter()
                real = torch.cat([to_tensor(f) for f in batch])  # (B, 3, S, S)
                recon = anim.render(anim.motion(real.to(anim.device))).float().cpu()  # (B, 3, S, S)
                timers["model"] += time.perf_counter() - t
                fake = from_tensor(recon)  # (B, S, S, 3) uint8
                _score_batch(per_frame, batch, real, recon, fake, src_img, src_emb, cross, plan, scorers,
                             timers)
                if writer is not None:
                    t = time.perf_counter()
                    for real_u8, fake_u8 in zip(batch, fake):
                        writer.write(np.concatenate([src_img, real_u8, fake_u8], axis=1))
                    timers["video"] += time.perf_counter() - t
                on_frames(len(batch))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return {"name": entry.name, "path": str(entry.path), "source": source.name, "frames": len(frames),
            "per_frame": per_frame, "summary": summarize_video(per_frame, plan.metrics)}


def _score_batch(per_frame: dict[str, list], batch: list, real: torch.Tensor, recon: torch.Tensor, fake,
                 src_img: np.ndarray, src_emb, cross: bool, plan: Plan, scorers: Scorers,
                 timers: dict[str, float]) -> None:
    """Append one batch's per-frame scores (L1, LPIPS, AED, AKD) to ``per_frame``, timing each metric."""
    if "l1" in plan.metrics:
        t = time.perf_counter()
        per_frame["l1"] += [float(v) for v in l1_per_frame(recon, real)]
        timers["l1"] += time.perf_counter() - t
    if scorers.lpips is not None:
        t = time.perf_counter()
        per_frame["lpips"] += [float(v) for v in scorers.lpips(recon, real)]
        timers["lpips"] += time.perf_counter() - t
    if scorers.identity is not None:
        t = time.perf_counter()
        for real_u8, fake_u8 in zip(batch, fake):
            if cross:
                d = math.nan if src_emb is None else scorers.identity.distance(src_img, fake_u8, src_emb)
            else:
                d = scorers.identity.distance(real_u8, fake_u8)
            per_frame["aed"].append(d)
        timers["aed"] += time.perf_counter() - t
    if scorers.landmarks is not None:
        t = time.perf_counter()
        for real_u8, fake_u8 in zip(batch, fake):
            match = scorers.landmarks.match(real_u8, fake_u8)
            per_frame["akd"].append(match.akd)
            if "gt_keypoints" in per_frame:
                per_frame["gt_keypoints"].append(match.gt_present)
                per_frame["missing_keypoints"].append(match.missing)
        timers["akd"] += time.perf_counter() - t

def _from_json(rec: dict) -> dict:
    """Restore NaN for the None values JSON stored."""
    rec["per_frame"] = {k: [math.nan if v is None else v for v in vals] for k, vals in rec["per_frame"].items()}
    rec["summary"] = {k: math.nan if v is None else v for k, v in rec["summary"].items()}
    return rec


@dataclass
class Job:
    """One evaluation run as resolved from its config: what is scored, with which model, where."""

    cfg: EvalConfig
    checkpoint: Path
    device: str
    plan: Plan
    lpips_path: Path | None
    gen: Any  # the generator (a lia_live.model.Generator), on the CPU
    run: dict
    pairs: list[tuple[VideoEntry, VideoEntry]]


def plan_job(cfg: EvalConfig, log: Callable[[str], None]) -> Job:
    """Resolve the checkpoint, device, videos and metrics of a run; fails (UserError) before any work."""
    from ..model.checkpoint import load_generator
    from .lpips_weights import find_alexnet_weights, load_alexnet_convs

    if same_file(cfg.out, cfg.data) or inside(cfg.out, cfg.data) or inside(cfg.data, cfg.out):
        raise UserError(f"«out» {cfg.out} and «data» {cfg.data} overlap: the reports would be read as test "
                        "videos (or written among them); choose an «out» folder outside the data")
    checkpoint = resolve_checkpoint(cfg.model.checkpoint, allow_demo=False)
    device = model_device(cfg.model)
    videos, folder = discover_videos(cfg.data, cfg.split)
    if cfg.max_videos is not None:
        videos = videos[:cfg.max_videos]
    if cfg.cross and len(videos) < 2:
        raise UserError(f"«cross» needs at least 2 test videos (found {len(videos)} in {folder})")
    unknown = [m for m in cfg.metrics if m not in ALL_METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(ALL_METRICS)}")
    domain = cfg.domain
    if domain == "auto":
        domain = detect_domain(first_frame(videos[0].path))
        log(f"lia-eval: domain {domain} (auto-detected from the first frame of {videos[0].name}; "
            "set --domain face|body to override)")
    plan = plan_metrics(tuple(cfg.metrics), domain, cfg.cross)
    lpips_path = find_alexnet_weights(cfg.lpips_weights) if "lpips" in plan.metrics else None
    if lpips_path is not None:
        load_alexnet_convs(lpips_path)  # a wrong file fails now, in one line, before any work
    gen = load_generator(checkpoint, "cpu")
    run = {"format": RUN_FORMAT, "version": RUN_VERSION, "checkpoint": str(checkpoint.resolve()),
           "checkpoint_sha256": sha256_file(checkpoint),
           # one video given as --data is recorded as itself: another video of its folder is another run
           "data": str(Path(cfg.data).resolve() if Path(cfg.data).is_file() else Path(folder).resolve()),
           "protocol": "cross-identity" if cfg.cross else "same-identity", "mode": cfg.mode,
           "max_frames": cfg.max_frames, "domain": domain, "metrics": list(plan.metrics),
           "size": gen.config.size, "lpips_weights_sha256": sha256_file(lpips_path) if lpips_path else None}
    pairs = [(v, videos[(i + 1) % len(videos)] if cfg.cross else v) for i, v in enumerate(videos)]
    return Job(cfg, checkpoint, device, plan, lpips_path, gen, run, pairs)


def run_evaluation(cfg: EvalConfig, log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) an evaluation; writes the reports into ``cfg.out`` and returns ``metrics.json``'s content."""
    from ..animator import Animator

    log = log or (lambda s: print(s, file=sys.stderr))
    job = plan_job(cfg, log)
    fresh = prepare_out(cfg.out, job.run)
    made_out = not cfg.out.exists()
    anim = Animator(job.gen, device=job.device)
    records: dict[str, dict] = {}
    todo = []
    for entry, source in job.pairs:
        rec = load_record(cfg.out / "per_video" / f"{safe_name(entry.name)}.json", entry, source, job.plan.metrics,
                          log)
        if rec is None:
            todo.append((entry, source))
        else:
            records[entry.name] = _from_json(rec)
    if records:
        log(f"lia-eval: resuming in {cfg.out}: {len(records)} of {plural(len(job.pairs), 'video')} already scored, "
            f"{len(todo)} to go")
    timers = dict.fromkeys(TIMERS, 0.0)
    new_frames = 0
    if todo:
        try:
            new_frames, fresh = score_videos(job, anim, todo, records, timers, fresh)
        except BaseException:
            if fresh:
                _undo_start(cfg.out, made_out)
            raise
    if fresh:
        start_run(cfg.out, job.run)

    ordered = [records[e.name] for e, _ in job.pairs]
    overall = summarize_run(ordered, job.plan.metrics)
    timing = None
    if new_frames:
        timing = {k: 1000.0 * v / new_frames for k, v in timers.items() if v > 0}
        timing["total"] = sum(timing.values())
    paths = write_reports(cfg.out, job.run, overall, ordered, job.plan.notes, timing)
    return json.loads(paths["json"].read_text())


def score_videos(job: Job, anim, todo: list, records: dict, timers: dict[str, float], fresh: bool) -> tuple[int, bool]:
    """Score the videos still to do, storing each record as soon as it is done; returns (frames scored, whether
    the run is still unstarted)."""
    cfg = job.cfg
    new_frames = 0
    scorers = Scorers(job.plan, job.lpips_path, job.device)
    total = sum(min(len(FrameSource(e.path)), cfg.max_frames or 1 << 62) for e, _ in todo)
    try:
        with progress_bar(total, "lia-eval", enabled=cfg.progress) as bar:
            for entry, source in todo:
                bar.set_postfix_str(entry.name)
                video_path = cfg.out / "videos" / f"{safe_name(entry.name)}.mp4" if cfg.save_videos else None
                if video_path is not None:
                    video_path.parent.mkdir(parents=True, exist_ok=True)
                rec = evaluate_video(anim, entry, source, cfg, job.plan, scorers, timers, bar.update, video_path)
                if fresh:
                    start_run(cfg.out, job.run)
                    fresh = False
                write_atomic(cfg.out / "per_video" / f"{safe_name(entry.name)}.json",
                             json.dumps(clean(stamp(rec, entry, source))) + "\n")
                records[entry.name] = rec
                new_frames += rec["frames"]
    finally:
        scorers.close()
    return new_frames, fresh
