#!/usr/bin/env bash
# lia-live GPU check: one command that measures the project on a CUDA GPU within 6 minutes and writes what it
# found under $OUT (default /tmp/lia-gpu-check/out): summary.md, summary.json, steps.log, each step's JSON.
# Most informative numbers first; a step that fails, times out or cannot run does not stop the others.
#
#   bash scripts/gpu_check.sh                 # on a CUDA machine
#   bash scripts/gpu_check.sh --plan          # the plan, each step's limit, what this machine lacks; runs nothing
#                                             # (with --cpu-dry-run: the dry run's plan)
#   bash scripts/gpu_check.sh --cpu-dry-run   # every step on the CPU with a tiny model (<= 3 min): checks the script
#
# Steps and limits (s):
#   env 10           the machine: GPU, driver, Python, torch, CUDA
#   prepare 15       a seeded official-shape checkpoint (.pt) and, without the real clip, a generated frame folder
#   bench 60         model step per backend: cudagraph, eager; fp16/fp32; batch 1, 8, 32 (tensorrt is left out: its
#                    engine builds take minutes; build them first with lia-live engines build, then bench them)
#   live-paste 40    the live loop, pipelined, paste-back compose: 300 generated 640x480 frames -> 1280x720
#   live-serial 15   the same stages one after another (what running them concurrently gains)
#   animate 35       offline: lia-animate, batch 8, PNG frames out
#   pytest-gpu 35    the CUDA correctness tests (compile excluded: its cold compile is the next step, not repeated)
#   compile-cold 75  torch.compile reduce-overhead fp16 from an empty cache (48 s of set-up measured on an H200)
#   compile-warm 25  the same in a new process from the project's cached compiled code (target: first frame <= 10 s)
# The limits add up to 310 s; no step starts past 345 s and each is cut to what is left, so the whole run, summary
# included, ends within 6 minutes.
#
# Needs, checked in the first second: bash, timeout (coreutils), python3 (or $PYTHON) with torch (a CUDA build),
# numpy and OpenCV (cv2). Optional: pytest (else pytest-gpu is skipped), the real clip driving1.mp4 + macron.png in
# $LIA_GPU_DATA, shared/data/vox, .gpu-data or ../shared/data/vox (else animate drives a generated frame folder).
# Not needed: safetensors, mediapipe, PyAV, pyvirtualcam, scikit-image (no face tracking: crop none; PNG and null
# outputs; seeded weights). Nothing is downloaded.
# None of the project's CUDA code has run on a GPU yet: see docs/engines.md and docs/benchmarks.md.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
PLAN_ONLY=0
for arg in "$@"; do
  case $arg in
    --cpu-dry-run) MODE=dry ;;
    --plan) PLAN_ONLY=1 ;;
    *) echo "usage: bash scripts/gpu_check.sh [--plan] [--cpu-dry-run]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
START_AT=345  # no step starts (or runs) past this many seconds; the summary takes a few more
START=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORK=/tmp/lia-gpu-check
export LIA_ENGINE_DIR=$WORK/engines  # its own cache, emptied below (compile-cold must start cold): never a user's

STEP_NAMES=(env prepare bench live-paste live-serial animate pytest-gpu compile-cold compile-warm)
STEP_LIMITS=(10 15 60 40 15 35 35 75 25)
if [ $MODE = dry ]; then  # a tiny model on a CPU: the time goes to starting Python and torch (5-7 s on a busy box)
  STEP_LIMITS=(15 20 20 25 15 20 20 15 15)
  START_AT=165  # the dry run ends within 3 minutes
  export OMP_NUM_THREADS=1  # one thread: on a shared, busy CPU OpenMP stalls cost more than a second thread gains
fi
STEP_WHAT=("the machine: GPU, driver, Python, torch, CUDA"
           "seeded official-shape checkpoint; a generated frame folder if the real clip is missing"
           "model step per backend (cudagraph, eager), fp16/fp32, batch 1/8/32"
           "live loop, pipelined, paste compose, 300 generated 640x480 frames -> 1280x720"
           "the same stages one after another, 100 frames"
           "offline lia-animate, batch 8, PNG frames out"
           "CUDA correctness tests against fp32 eager (compile excluded: next step)"
           "torch.compile reduce-overhead fp16, empty caches"
           "the same, new process, from the project's cached compiled code")

# ---- needs: module lookups only (no imports), so this takes well under a second ------------------------------
NEEDS=$($PY - "$ROOT" <<'EOF' 2>/dev/null
import importlib.util, pathlib, sys
have = lambda m: importlib.util.find_spec(m) is not None
missing = [m for m in ("torch", "numpy", "cv2") if not have(m)]
print("missing=" + ",".join(missing))
print("pytest=" + ("1" if have("pytest") else "0"))
print("python=" + sys.version.split()[0])
EOF
) || NEEDS="missing=python3"
MISSING=$(sed -n 's/^missing=//p' <<<"$NEEDS")
HAS_PYTEST=$(sed -n 's/^pytest=//p' <<<"$NEEDS")
command -v timeout >/dev/null || MISSING="${MISSING:+$MISSING,}timeout"
GPU_SEEN=0
command -v nvidia-smi >/dev/null && timeout 5 nvidia-smi -L >/dev/null 2>&1 && GPU_SEEN=1
DATA=""
for d in "${LIA_GPU_DATA:-}" shared/data/vox .gpu-data ../shared/data/vox ../../shared/data/vox; do
  if [ -n "$d" ] && [ -f "$d/driving1.mp4" ] && [ -f "$d/macron.png" ]; then DATA=$d; break; fi
done

# why a step cannot run here (empty: it can)
skip_reason() {
  case $1 in
    pytest-gpu) [ "$HAS_PYTEST" = 1 ] || echo "pytest not installed" ;;
  esac
}

print_plan() {
  local total=0 i
  echo "gpu_check plan ($([ $MODE = dry ] && echo "CPU dry run" || echo GPU)): step, limit, what it measures"
  for i in "${!STEP_NAMES[@]}"; do
    local why; why=$(skip_reason "${STEP_NAMES[$i]}")
    printf '  %-13s %3s s  %s%s\n' "${STEP_NAMES[$i]}" "${STEP_LIMITS[$i]}" "${STEP_WHAT[$i]}" "${why:+  [skipped: $why]}"
    total=$((total + STEP_LIMITS[$i]))
  done
  echo "limits total: $total s; no step runs past $START_AT s; whole run within $([ $MODE = dry ] && echo 180 || echo 360) s"
  echo "needs: python ${NEEDS:+$(sed -n 's/^python=//p' <<<"$NEEDS")}; missing required: ${MISSING:-none};" \
       "pytest: $([ "$HAS_PYTEST" = 1 ] && echo yes || echo no); nvidia-smi sees a GPU: $([ $GPU_SEEN = 1 ] && echo yes || echo no);" \
       "real clip: ${DATA:-none (a generated frame folder instead)}"
}

print_plan
[ $PLAN_ONLY = 1 ] && exit 0
if [ -n "$MISSING" ]; then
  echo "gpu_check: cannot run without: $MISSING (needs python3 with torch, numpy and OpenCV, and timeout)" >&2
  exit 2
fi
if [ $MODE = gpu ] && [ $GPU_SEEN != 1 ]; then
  echo "gpu_check: nvidia-smi sees no GPU here; 'bash scripts/gpu_check.sh --cpu-dry-run' exercises the script on the CPU" >&2
  exit 2
fi

OUT=${OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK"
STEPS="$OUT/.steps.tsv"
LOG="$OUT/steps.log"
: >"$STEPS"
: >"$LOG"

limit_of() {
  local i
  for i in "${!STEP_NAMES[@]}"; do [ "${STEP_NAMES[$i]}" = "$1" ] && echo "${STEP_LIMITS[$i]}"; done
}

# step NAME COMMAND...: runs with its limit (never past START_AT), logs, records rc and seconds
step() {
  local name=$1; shift
  local limit; limit=$(limit_of "$name")
  local why; why=$(skip_reason "$name")
  if [ -n "$why" ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "$why" >>"$STEPS"; echo "=== $name: skipped ($why)" | tee -a "$LOG"; return
  fi
  local left=$((START_AT - ($(date +%s) - START)))
  if [ $left -lt 5 ]; then
    printf '%s\tskipped\t0\tout of time\n' "$name" >>"$STEPS"; echo "=== $name: skipped (out of time)" | tee -a "$LOG"; return
  fi
  [ "$limit" -gt $left ] && limit=$left
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0; t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  local note=""
  { [ $rc = 124 ] || [ $rc = 137 ]; } && note="timed out after ${limit}s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$note" >>"$STEPS"
  echo "=== $name: rc $rc in ${dt}s $note" | tee -a "$LOG"
}

cat >"$WORK/prepare.py" <<'EOF'
"""Write the checkpoint the steps load (torch.save: no safetensors needed) and, if asked, a driving frame folder."""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from lia_live.backends.checks import test_card
from lia_live.bench import seeded_generator
from lia_live.imaging import from_tensor
from lia_live.model import GeneratorConfig
from lia_live.model.checkpoint import save_generator

work, tiny, frames = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
cfg = GeneratorConfig(size=64, style_dim=64, motion_dim=8, channel_div=8) if tiny else GeneratorConfig(size=256)
save_generator(seeded_generator(cfg), work / "model.pt")
if frames:
    face = from_tensor(test_card(256))[0]  # (256, 256, 3) RGB
    cv2.imwrite(str(work / "portrait.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    clip = work / "driving"
    clip.mkdir(exist_ok=True)
    for i in range(frames):  # the card drifting and breathing inside a 384x384 frame
        canvas = np.full((384, 384, 3), 90, np.uint8)
        side = int(256 * (1 + 0.08 * np.sin(i / 15)))
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        x, y = int(64 + 30 * np.sin(i / 25)), int(64 + 12 * np.sin(i / 20))
        canvas[y:y + side, x:x + side] = patch[:384 - y, :384 - x]
        cv2.imwrite(str(clip / f"{i:05d}.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
print(f"prepared {work / 'model.pt'} ({'tiny' if tiny else 'official 256'} shape, seeded)"
      + (f" and {frames} driving frames" if frames else ""), torch.__version__)
EOF

IND=$WORK/inductor
rm -rf "$IND-cold" "$IND-warm" "$LIA_ENGINE_DIR" "$WORK/animate_png" "$WORK/driving"
if [ $MODE = dry ]; then
  DEV=cpu; TINY=1; LIVE_N=5; SERIAL_N=5; ANIM_N=4; BATCHES=1,2; BENCH_N=1; COMPILE_N=1; WARM=0; ROUNDS=1
  ANIM_BACKEND=eager  # auto on a CPU is onnxruntime, whose first use exports ONNX for half a minute
  BENCH_MODEL=(--checkpoint "$WORK/model.pt"); LIVE_MODEL=(--checkpoint "$WORK/model.pt" --backend eager); LIVE_PREC=()
  COMPILE=(--backends eager --precisions fp32)  # stands in: a CPU inductor compile takes minutes here
else
  DEV=cuda; TINY=0; LIVE_N=300; SERIAL_N=100; ANIM_N=0; BATCHES=1,8,32; BENCH_N=50; COMPILE_N=30; WARM=3; ROUNDS=2
  ANIM_BACKEND=cudagraph  # what auto picks without TensorRT; named, so an installed TensorRT does not build for minutes
  BENCH_MODEL=(); LIVE_MODEL=(--backend cudagraph); LIVE_PREC=(--precision fp16)
  COMPILE=(--backends compile --precisions fp16)
fi
if [ -n "$DATA" ]; then
  SOURCE=$DATA/macron.png; DRIVING=$DATA/driving1.mp4; GEN_FRAMES=0
else
  SOURCE=$WORK/portrait.png; DRIVING=$WORK/driving; GEN_FRAMES=$([ $MODE = dry ] && echo 6 || echo 300)
fi

step env bash -c "if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi; \
  $PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))'"
step prepare $PY "$WORK/prepare.py" "$WORK" $TINY $GEN_FRAMES
step bench $PY -m lia_live.cli.bench --device $DEV "${BENCH_MODEL[@]}" --backends cudagraph,eager \
  --batch-sizes $BATCHES --frames $BENCH_N --warmup $WARM --naive-frames 2 --rounds $ROUNDS --json "$OUT/bench.json"
LIVE=($PY scripts/live_bench.py --device $DEV "${LIVE_MODEL[@]}" "${LIVE_PREC[@]}" --compose paste --crop none)
step live-paste "${LIVE[@]}" --frames $LIVE_N --json "$OUT/live_bench.json"
step live-serial "${LIVE[@]}" --frames $SERIAL_N --serial --json "$OUT/live_bench_serial.json"
ANIM=(--device $DEV --backend $ANIM_BACKEND --checkpoint "$WORK/model.pt" --no-progress --overwrite --source "$SOURCE" --driving "$DRIVING"
      --output "$WORK/animate_png" --batch-size $([ $MODE = dry ] && echo 2 || echo 8))
[ "$ANIM_N" -gt 0 ] && ANIM+=(--max-frames $ANIM_N)
step animate $PY -m lia_live.cli.animate "${ANIM[@]}"
step pytest-gpu env TORCHINDUCTOR_CACHE_DIR="$IND-pytest" $PY -m pytest -q -p no:cacheprovider -m gpu -k "not compile" \
  tests/test_gpu.py tests/test_gpu_live.py
# compile, cold: empty inductor cache; it saves its compiled code into the project's engine cache ($LIA_ENGINE_DIR) ...
step compile-cold env TORCHINDUCTOR_CACHE_DIR="$IND-cold" $PY -m lia_live.cli.bench --device $DEV "${BENCH_MODEL[@]}" \
  "${COMPILE[@]}" --batch-sizes 1 --frames $COMPILE_N --warmup $WARM --naive-frames 0 --rounds $ROUNDS --json "$OUT/bench_compile.json"
# ... warm: a new process with another empty inductor cache, so only the project's cached bundle can help
step compile-warm env TORCHINDUCTOR_CACHE_DIR="$IND-warm" $PY -m lia_live.cli.bench --device $DEV "${BENCH_MODEL[@]}" \
  "${COMPILE[@]}" --batch-sizes 1 --frames $COMPILE_N --warmup $WARM --naive-frames 0 --rounds $ROUNDS --json "$OUT/bench_warm.json"
N_PNG=$(find "$WORK/animate_png" -name '*.png' 2>/dev/null | wc -l)

$PY - "$OUT" "$STEPS" "$N_PNG" "$MODE" "$(($(date +%s) - START))" "${DATA:-generated frames}" <<'EOF'
import json, pathlib, sys

out, steps_file, n_png, mode, total, clip = (pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4],
                                             int(sys.argv[5]), sys.argv[6])
steps = []
for line in pathlib.Path(steps_file).read_text().splitlines():
    name, rc, secs, note = (line.split("\t") + [""])[:4]
    steps.append({"step": name, "rc": None if rc == "skipped" else int(rc), "seconds": int(secs), "note": note,
                  "ok": rc == "0"})


def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None


bench, cold, warm = load("bench.json"), load("bench_compile.json"), load("bench_warm.json")
live, serial = load("live_bench.json"), load("live_bench_serial.json")
summary = {"dry_run": mode == "dry", "total_seconds": total, "steps": steps, "animate_png_frames": n_png,
           "animate_clip": clip, "bench": bench, "bench_compile_cold": cold, "bench_compile_warm": warm,
           "live_bench": live, "live_bench_serial": serial}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
md = [f"# gpu_check{' (CPU dry run)' if mode == 'dry' else ''}", "", f"total {total} s", "",
      "| step | ok | rc | s | note |", "|---|---|---|---|---|"]
md += [f"| {s['step']} | {'yes' if s['ok'] else 'NO'} | {s['rc']} | {s['seconds']} | {s['note']} |" for s in steps]
for title, b in (("model step per backend", bench), ("compile, cold", cold), ("compile, warm (cached code)", warm)):
    if not b:
        continue
    md += ["", f"## {title}: {b.get('device')}, torch {b.get('torch')}", "",
           "| backend | prec | batch | ms/frame | fps | set-up s | 1st frame s | peak MB | PSNR dB | note |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in b.get("rows", []):
        md.append(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['frame_ms']:.2f} | {r['fps']:.1f} | "
                  f"{r['setup_s']:.1f} | {r['first_frame_s']:.1f} | {r['peak_mb']:.0f} | {r['psnr_db']:.1f} | {r['note']} |")
for title, lb in (("live loop, pipelined", live), ("live loop, serial", serial)):
    if lb:
        md += ["", f"## {title}: {lb.get('gpu') or lb.get('device')}, {lb.get('backend')}, {lb.get('input')} -> "
                   f"{lb.get('output')} {lb.get('compose')}: {lb.get('steady_fps') or 0:.1f} fps steady, latency "
                   f"{lb.get('latency_ms_mean') or 0:.1f} ms, stage sum {lb.get('stage_sum_ms')} ms, "
                   f"stages {lb.get('stage_ms_mean')}, first frame {lb.get('first_frame_ms')} ms"]
md += ["", f"lia-animate wrote {n_png} PNG frames ({clip})", ""]
(out / "summary.md").write_text("\n".join(md))
print("\n".join(md))
EOF
FAILED=$(awk -F'\t' '$2 != "0" && $2 != "skipped" {print $1}' "$STEPS" | tr '\n' ' ')
rm -f "$STEPS"
if [ -n "$FAILED" ]; then
  echo "gpu_check: failed or timed out: $FAILED(see $LOG)" >&2
  exit 1
fi
