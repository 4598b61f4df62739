"""Which reference pose for relative motion: the first frame, the α-nearest frame, or the landmark-nearest frame?

Measured on the demo clips in a data folder (default /work/shared/data; CC BY-NC, never committed):

1. **Same-identity protocol** (vox/driving1.mp4, where the right answer is known): the source portrait is
   frame ``s`` of the clip itself, for ``--sources`` values of ``s`` spread over the clip; the candidates
   are the clip's frames (every ``--step``-th) except those within ±``--exclude`` frames of ``s`` (so the
   trivial identical frame is not available). Each method picks one candidate as the reference:

   - ``first``: the first candidate in clip order (frame 0 unless it is excluded);
   - ``auto-α <model>``: the candidate whose motion code α is nearest (L2) the source's α_src (= α of frame s);
   - ``landmarks``: the candidate nearest in face-mesh features (:mod:`lia_live.reference`).

   and is scored by how close its reference frame r is to the source frame s:
   (a) pixel L1 of the two 256² crops (mean |Δ| / 255); (b) landmark head-pose distance (degrees, L2 of
   Δyaw, Δpitch, Δroll) and the full scaled feature distance (which ``landmarks`` minimises, so it is
   biased towards it); (c) downstream: the relative-mode animation of source s over the clip (every
   ``--render-every``-th candidate frame, reference r) against the true frames, mean L1 at the model size,
   with the ideal reference r = s as the floor. Rows "random" (mean over candidates) and "best by pixel L1"
   bound (a)/(b) from above and below.
2. **Another identity** (vox/macron.png, and scikit-image's public-domain astronaut, driving the vox clip):
   which frame each method picks and its distances (no ground truth: the pose distance is the only judge,
   and it is the landmark method's own measure).
3. **Full body** (taichi/driving1.mp4, taichi/subject1.png): whether the face mesh finds the faces at all
   (whole frames and the tracker's face crops), and first vs auto-α by (a) on whole frames.

Models: the bundled demo model (128², trained only on the astronaut: weak on vox) and a seeded random
official-shape 256 model (α of random weights is a random projection of the image: a baseline for (a)/(b);
its renders are noise, so it is not used for (c)). ``--checkpoint`` adds a real model (e.g. the official
vox.pt) and makes it the model of (c).

Usage: ``PYTHONPATH=. python scripts/reference_compare.py [--data DIR] [--step 8] [--random] [--json OUT.json]``
(about 2-4 minutes on one busy CPU core; ``--random`` adds the 256 model, about 3 minutes more).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lia_live.animator import Animator
from lia_live.errors import UserError
from lia_live.imaging import from_tensor, resize, to_tensor
from lia_live.io import open_frames, read_image
from lia_live.model import Generator
from lia_live.model.checkpoint import load_generator
from lia_live.reference import LandmarkFeatures, LandmarkReader, feature_distances
from lia_live.runtime import demo_checkpoint


def read_clip(path: Path, step: int) -> tuple[list[int], list[np.ndarray]]:
    """Every ``step``-th frame (RGB uint8) and its index in the clip."""
    idx, frames = [], []
    for i, f in enumerate(open_frames(path)):
        if i % step == 0:
            idx.append(i)
            frames.append(np.ascontiguousarray(f))
    return idx, frames


def motion_codes(anim: Animator, frames: list[np.ndarray], batch: int = 8) -> torch.Tensor:
    """α (N, M) of the frames."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            x = torch.cat([to_tensor(f, anim.size) for f in frames[i:i + batch]])  # (B, 3, S, S)
            out.append(anim.motion(x).float().cpu())
    return torch.cat(out)


def pose_deg(a: LandmarkFeatures | None, b: LandmarkFeatures | None) -> float:
    if a is None or b is None:
        return float("nan")
    return float(np.linalg.norm([a.yaw - b.yaw, a.pitch - b.pitch, a.roll - b.roll]))


def pixel_l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)


def animation_l1(anim: Animator, source: np.ndarray, ref_alpha: torch.Tensor, alphas: torch.Tensor,
                 truth: list[np.ndarray]) -> float:
    """Mean L1 of the relative animation of ``source`` (reference ``ref_alpha`` (1, M)) against ``truth``."""
    with torch.inference_mode():
        anim.set_source(source)
        out = []
        for i in range(0, len(alphas), 8):
            out.append(from_tensor(anim.render(alphas[i:i + 8], ref_alpha)))  # (B, S, S, 3)
    frames = np.concatenate(out)
    return float(np.mean([pixel_l1(o, resize(t, anim.size)) for o, t in zip(frames, truth)]))


def nearest(values: np.ndarray, allowed: np.ndarray) -> int:
    v = np.where(allowed, values, np.inf)
    return int(np.argmin(v))


def same_identity(idx, frames, feats, models, n_sources, exclude, render_every, log):
    """The protocol of part 1; returns per-method lists of per-source scores."""
    n = len(frames)
    pos = np.unique(np.round(np.linspace(0, n - 1, n_sources + 2)[1:-1]).astype(int))
    idx_arr = np.array(idx)
    render = np.arange(0, n, render_every)
    demo = models.get("checkpoint", models.get("demo"))
    rows: dict[str, dict[str, list]] = {}

    def add(name, key, value):
        rows.setdefault(name, {}).setdefault(key, []).append(value)

    for s in pos:
        allowed = np.abs(idx_arr - idx_arr[s]) > exclude
        cand = np.flatnonzero(allowed)
        l1 = np.array([pixel_l1(frames[s], f) for f in frames])  # (N,)
        pose = np.array([pose_deg(feats[s], f) for f in feats])
        fd = feature_distances(feats[s], feats) if feats[s] is not None else np.full(n, np.nan)
        picks = {"first": int(cand[0])}
        for name, (_, alphas) in models.items():
            d = (alphas - alphas[s:s + 1]).norm(dim=1).numpy()  # (N,)
            picks[f"auto-α {name}"] = nearest(d, allowed)
        if feats[s] is not None and np.isfinite(fd[allowed]).any():
            picks["landmarks"] = nearest(fd, allowed)
        picks["best by pixel L1"] = nearest(l1, allowed)
        anim_l1 = {}
        if demo is not None:
            anim, alphas = demo
            truth = [frames[t] for t in render]
            anim_l1["ideal (r = s)"] = animation_l1(anim, frames[s], alphas[s:s + 1], alphas[render], truth)
            for r in picks.values():
                if r not in anim_l1:
                    anim_l1[r] = animation_l1(anim, frames[s], alphas[r:r + 1], alphas[render], truth)
        for name, r in picks.items():
            add(name, "frame", int(idx_arr[r]))
            add(name, "pixel_l1", float(l1[r]))
            add(name, "pose_deg", float(pose[r]))
            add(name, "feature_dist", float(fd[r]))
            if demo is not None:
                add(name, "anim_l1", anim_l1[r])
        add("random (mean over candidates)", "pixel_l1", float(l1[cand].mean()))
        add("random (mean over candidates)", "pose_deg", float(np.nanmean(pose[cand])))
        fin = fd[cand][np.isfinite(fd[cand])]
        add("random (mean over candidates)", "feature_dist", float(fin.mean()) if len(fin) else float("nan"))
        if demo is not None:
            add("ideal (r = s)", "anim_l1", anim_l1["ideal (r = s)"])
        log(f"  source frame {idx_arr[s]}: " + ", ".join(f"{k} → {idx_arr[v]}" for k, v in picks.items()))
    return [int(idx_arr[s]) for s in pos], rows


def table(rows: dict[str, dict[str, list]], keys: list[tuple[str, str]]) -> str:
    head = "| method | " + " | ".join(h for _, h in keys) + " |"
    lines = [head, "|" + " --- |" * (len(keys) + 1)]
    for name, r in rows.items():
        cells = []
        for k, _ in keys:
            v = r.get(k)
            cells.append("—" if not v else f"{np.nanmean(v):.4f}" if k != "pose_deg" else f"{np.nanmean(v):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wins(rows: dict[str, dict[str, list]], methods: list[str], key: str) -> dict[str, int]:
    """Per method: in how many sources it scores best (ties count for every tied method)."""
    vals = np.array([rows[m][key] for m in methods])  # (methods, sources)
    best = np.nanmin(vals, axis=0)
    return {m: int(np.sum(np.isclose(vals[i], best))) for i, m in enumerate(methods)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--step", type=int, default=8, help="use every STEP-th frame as a candidate")
    p.add_argument("--sources", type=int, default=6, help="source frames of the same-identity protocol")
    p.add_argument("--exclude", type=int, default=10, help="candidates within ±K frames of the source are excluded")
    p.add_argument("--render-every", type=int, default=4, help="(c) renders every N-th candidate frame")
    p.add_argument("--random", action="store_true",
                   help="also the seeded random 256 model (about 2 s per frame on one busy CPU core)")
    p.add_argument("--checkpoint", type=Path, help="also a real model (official .pt or .safetensors); used for (c)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    result: dict = {"step": a.step, "exclude": a.exclude}
    idx, frames = read_clip(a.data / "vox" / "driving1.mp4", a.step)
    with LandmarkReader() as reader:
        feats = [reader.features(f) for f in frames]
        from skimage import data as skdata

        portraits = {"vox/macron.png": read_image(a.data / "vox" / "macron.png", "portrait"),
                     "astronaut (scikit-image)": np.ascontiguousarray(skdata.astronaut()[10:266, 96:352])}
        portrait_feats = {k: reader.features(v) for k, v in portraits.items()}
    log(f"vox: {len(frames)} candidate frames, face mesh found {sum(f is not None for f in feats)}")

    models: dict[str, tuple[Animator, torch.Tensor]] = {}
    demo = Animator(load_generator(demo_checkpoint()).eval())
    models["demo"] = (demo, motion_codes(demo, frames))
    log("α of the demo model done")
    if a.random:
        torch.manual_seed(0)
        rnd = Animator(Generator(256).eval())
        models["random256"] = (rnd, motion_codes(rnd, frames))
        log("α of the seeded random 256 model done")
    if a.checkpoint:
        ck = Animator(load_generator(a.checkpoint).eval())
        models["checkpoint"] = (ck, motion_codes(ck, frames))
        log(f"α of {a.checkpoint} done")

    log("same-identity protocol (vox):")
    src_frames, rows = same_identity(idx, frames, feats, models, a.sources, a.exclude, a.render_every, log)
    keys = [("pixel_l1", "(a) pixel L1 r↔s"), ("pose_deg", "(b) pose Δ°"), ("feature_dist", "(b) feature dist"),
            ("anim_l1", f"(c) animation L1 ({'checkpoint' if a.checkpoint else 'demo'})")]
    methods = [m for m in rows if "anim_l1" in rows[m] and m not in ("ideal (r = s)", "best by pixel L1")]
    result["same_identity"] = {"sources": src_frames, "rows": rows,
                               "wins_anim_l1": wins(rows, methods, "anim_l1"),
                               "wins_pixel_l1": wins(rows, methods, "pixel_l1")}

    # ---- another identity driving the vox clip ----
    result["other_identity"] = {}
    for pname, portrait in portraits.items():
        pf = portrait_feats[pname]
        src_alphas = {}
        picks = {"first": 0}
        for name, (anim, alphas) in models.items():
            with torch.inference_mode():
                src_alphas[name] = anim.set_source(portrait).alpha.float().cpu()  # (1, M)
            picks[f"auto-α {name}"] = int(np.argmin((alphas - src_alphas[name]).norm(dim=1).numpy()))
        fd = feature_distances(pf, feats) if pf is not None else np.full(len(frames), np.nan)
        if pf is not None:
            picks["landmarks"] = int(np.argmin(fd))
        prow = {}
        for name, r in picks.items():
            row = {"frame": idx[r], "feature_dist": float(fd[r]), "pose_deg": pose_deg(pf, feats[r])}
            for mname, (_, alphas) in models.items():
                row[f"alpha_dist_{mname}"] = float((alphas[r] - src_alphas[mname][0]).norm())
            prow[name] = row
        result["other_identity"][pname] = {"features": None if pf is None else pf.__dict__, "picks": prow}
    log("other identities done")

    # ---- full body: taichi ----
    tidx, tframes = read_clip(a.data / "taichi" / "driving1.mp4", a.step)
    subject = read_image(a.data / "taichi" / "subject1.png", "portrait")
    from lia_live.tracking import FaceCropper, crop_portrait

    with LandmarkReader() as reader:
        whole = [reader.features(f) for f in tframes]
        cropper = FaceCropper(out_size=256)
        try:
            crops = [cropper.crop(f) for f in tframes]
        finally:
            cropper.close()
        cropped = [reader.features(c) for c in crops]
        try:
            subject_crop = crop_portrait(subject, 256, name="subject1.png")
            subject_cropped = reader.features(subject_crop) is not None
        except UserError as e:  # no face found: a result to report here
            subject_cropped = f"crop failed: {e}"
        taichi = {"frames": len(tframes), "mesh_whole": sum(f is not None for f in whole),
                  "mesh_cropped": sum(f is not None for f in cropped),
                  "portrait_whole": reader.features(subject) is not None, "portrait_cropped": subject_cropped}
    demo_t = motion_codes(demo, tframes)
    tarr = np.array(tidx)
    tl1 = {"first": [], "auto-α demo": [], "random": []}
    for s in np.unique(np.round(np.linspace(0, len(tframes) - 1, a.sources + 2)[1:-1]).astype(int)):
        allowed = np.abs(tarr - tarr[s]) > a.exclude
        l1 = np.array([pixel_l1(tframes[s], f) for f in tframes])
        d = (demo_t - demo_t[s:s + 1]).norm(dim=1).numpy()
        tl1["first"].append(float(l1[np.flatnonzero(allowed)[0]]))
        tl1["auto-α demo"].append(float(l1[nearest(d, allowed)]))
        tl1["random"].append(float(l1[allowed].mean()))
    taichi["pixel_l1"] = {k: float(np.mean(v)) for k, v in tl1.items()}
    result["taichi"] = taichi
    log("taichi done")
    result["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"## Same identity (vox/driving1.mp4, every {a.step}th frame, sources {src_frames}, "
          f"candidates beyond ±{a.exclude} frames)\n")
    print(table(rows, keys))
    print(f"\nwins (c) animation L1: {result['same_identity']['wins_anim_l1']}")
    print(f"wins (a) pixel L1: {result['same_identity']['wins_pixel_l1']}")
    for pname, res in result["other_identity"].items():
        print(f"\n## {pname} driving vox/driving1.mp4\n")
        cols = list(next(iter(res["picks"].values())).keys())
        print("| method | " + " | ".join(cols) + " |\n|" + " --- |" * (len(cols) + 1))
        for name, row in res["picks"].items():
            print(f"| {name} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values())
                  + " |")
    print(f"\n## taichi\n\n{json.dumps(taichi)}\n\n({result['seconds']} s)")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
