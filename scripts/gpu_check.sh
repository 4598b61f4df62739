#!/usr/bin/env bash
# One command for a lent GPU machine: the CUDA tests, the benchmark (cold and warm start), the live bench and
# lia-animate on a real clip — each step with its own time limit, going on past failures, within 8 minutes,
# with a summary (summary.md + summary.json) and the raw results under $OUT.
#
#   bash scripts/gpu_check.sh                 # on the GPU machine (repository root)
#   bash scripts/gpu_check.sh --cpu-dry-run   # here, without CUDA: every step on CPU with tiny settings
#
# What the machine needs: a CUDA PyTorch (>= 2.4) and the repository. Everything else is optional:
# - wheels in .whl/ (git-ignored; pass ".whl" in the device tool's carry) are installed into /tmp/site first,
#   e.g. PyAV for mp4 output (av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl, 35 MB);
# - the demo clip: $LIA_GPU_DATA, else shared/data/vox, else .gpu-data/ (git-ignored copy of
#   ../shared/data/vox: driving1.mp4 + macron.png, 0.4 MB; pass ".gpu-data" in carry), else ../shared/data/vox
#   (or ../../shared/data/vox from a worktree). To prepare, in the checkout the device tool sends:
#     mkdir -p .gpu-data && cp ../shared/data/vox/driving1.mp4 ../shared/data/vox/macron.png .gpu-data/ &&
#     echo /.gpu-data/ >> .git/info/exclude
# Steps (limits in s, 480 in all): environment 30, pytest-gpu 120, bench 90 (tensorrt/cudagraph/eager, batch 1/8/32),
# bench-compile-cold 90, bench-compile-warm 60, live-bench 40, live-bench-serial 25, animate 50.
# Device tool call (one call, ~9 min of device time with start-up):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl", ".gpu-data"], timeout_s=560)
# Written without a GPU: the CUDA steps have not run yet (see docs/engines.md).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
[ "${1:-}" = "--cpu-dry-run" ] && DRY=1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
START=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export LIA_ENGINE_DIR=${LIA_ENGINE_DIR:-/tmp/lia-gpu-check/engines}

if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

HAS_CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$HAS_CUDA" != 1 ] && [ $DRY = 0 ]; then
  echo "gpu_check: PyTorch sees no CUDA GPU here; run 'bash scripts/gpu_check.sh --cpu-dry-run' to exercise the script on CPU" >&2
  exit 2
fi
OUT=${OUT:-/tmp/lia-gpu-check/out}
mkdir -p "$OUT"
STEPS="$OUT/.steps.tsv"
LOG="$OUT/steps.log"
: >"$STEPS"
: >"$LOG"
DEV=cuda
[ $DRY = 1 ] && DEV=cpu

# step NAME LIMIT_S COMMAND...: runs with a time limit (never past the overall budget), logs, records rc and seconds
step() {
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ $left -lt 15 ]; then
    printf '%s\tskipped\t0\tout of time budget\n' "$name" >>"$STEPS"; return
  fi
  [ $limit -gt $left ] && limit=$left
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  local note=""
  [ $rc = 124 ] || [ $rc = 137 ] && note="timed out after ${limit}s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$note" >>"$STEPS"
  echo "=== $name: rc $rc in ${dt}s $note" | tee -a "$LOG"
}

DATA=""
for d in "${LIA_GPU_DATA:-}" shared/data/vox .gpu-data ../shared/data/vox ../../shared/data/vox; do
  if [ -n "$d" ] && [ -f "$d/driving1.mp4" ] && [ -f "$d/macron.png" ]; then DATA=$d; break; fi
done

if [ $DRY = 1 ]; then
  step environment 30 bash -c "$PY -c 'import torch; print(torch.__version__, torch.cuda.is_available())'"
  step pytest-gpu 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_gpu_live.py
  step bench 300 $PY -m lia_live.cli.bench --device cpu --backends eager --precisions fp32 --batch-sizes 1,2 \
    --frames 1 --warmup 0 --naive-frames 0 --rounds 1 --json "$OUT/bench.json"
else
  step environment 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
    $PY -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
  IND=/tmp/lia-gpu-check/inductor
  step pytest-gpu 120 env TORCHINDUCTOR_CACHE_DIR=$IND-pytest $PY -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_gpu.py tests/test_gpu_live.py
  step bench 90 $PY -m lia_live.cli.bench --device cuda --backends tensorrt,cudagraph,eager \
    --frames 50 --warmup 5 --naive-frames 5 --rounds 5 --json "$OUT/bench.json"
  # compile cold: empty inductor cache; it saves its compiled code into the engine cache ($LIA_ENGINE_DIR) ...
  step bench-compile-cold 90 env TORCHINDUCTOR_CACHE_DIR=$IND-cold $PY -m lia_live.cli.bench --device cuda \
    --backends compile --precisions fp16 --frames 30 --warmup 3 --naive-frames 0 --rounds 3 \
    --json "$OUT/bench_compile.json"
  # ... warm: a new process with another empty inductor cache, so only lia-live's cached bundle can help
  # (target: first frame <= 10 s)
  step bench-compile-warm 60 env TORCHINDUCTOR_CACHE_DIR=$IND-warm $PY -m lia_live.cli.bench --device cuda \
    --backends compile --precisions fp16 --frames 30 --warmup 3 --naive-frames 0 --rounds 3 \
    --json "$OUT/bench_warm.json"
fi

# the live loop on generated input (no camera, fake virtual camera); no mediapipe there: no face tracking
LIVE_ARGS=(--device $DEV --backend auto --frames $([ $DRY = 1 ] && echo 5 || echo 300))
[ $DEV = cuda ] && LIVE_ARGS+=(--precision fp16)
if $PY scripts/live_bench.py --help 2>/dev/null | grep -q -- "--crop"; then LIVE_ARGS+=(--crop none); fi
step live-bench 40 bash -c "$PY scripts/live_bench.py ${LIVE_ARGS[*]} > '$OUT/live_bench.json'"
# the same stages run one after another: what the concurrency gains
step live-bench-serial 25 bash -c "$PY scripts/live_bench.py ${LIVE_ARGS[*]} --serial --frames $([ $DRY = 1 ] && echo 5 || echo 150) \
  > '$OUT/live_bench_serial.json'"

# lia-animate on the real clip: 652 frames 256² → PNG folder (mp4 output needs PyAV)
if [ -n "$DATA" ]; then
  ANIM_ARGS=(--device $DEV --no-progress --overwrite --source "$DATA/macron.png" --driving "$DATA/driving1.mp4"
             --output /tmp/lia-gpu-check/animate_png)
  if $PY -m lia_live.cli.animate --help 2>/dev/null | grep -q -- "--batch-size"; then
    ANIM_ARGS+=(--batch-size $([ $DRY = 1 ] && echo 2 || echo 8))
  fi
  [ $DRY = 1 ] && ANIM_ARGS+=(--max-frames 4)
  step animate 50 $PY -m lia_live.cli.animate "${ANIM_ARGS[@]}"
  N_PNG=$(ls /tmp/lia-gpu-check/animate_png 2>/dev/null | wc -l)
else
  printf 'animate\tskipped\t0\tno demo clip (set LIA_GPU_DATA or carry .gpu-data)\n' >>"$STEPS"
  N_PNG=0
fi

$PY - "$OUT" "$STEPS" "$N_PNG" "$DRY" "$(($(date +%s) - START))" <<'EOF'
import json, pathlib, sys

out, steps_file, n_png, dry, total = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
steps = []
for line in pathlib.Path(steps_file).read_text().splitlines():
    name, rc, secs, note = (line.split("\t") + [""])[:4]
    steps.append({"step": name, "rc": None if rc == "skipped" else int(rc), "seconds": int(secs), "note": note,
                  "ok": rc == "0"})
def load(name):
    p = out / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
bench, cold, warm = load("bench.json"), load("bench_compile.json"), load("bench_warm.json")
live, serial = load("live_bench.json"), load("live_bench_serial.json")
summary = {"dry_run": dry, "total_seconds": total, "steps": steps, "animate_png_frames": n_png,
           "bench": bench, "bench_compile_cold": cold, "bench_compile_warm": warm, "live_bench": live,
           "live_bench_serial": serial}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
md = [f"# gpu_check {'(CPU dry run)' if dry else ''}", "", f"total {total} s", "",
      "| step | ok | rc | s | note |", "|---|---|---|---|---|"]
md += [f"| {s['step']} | {'yes' if s['ok'] else 'NO'} | {s['rc']} | {s['seconds']} | {s['note']} |" for s in steps]
for title, b in (("bench", bench), ("compile, cold", cold), ("compile, warm (cached code)", warm)):
    if not b:
        continue
    md += ["", f"## {title}: {b.get('device')}, torch {b.get('torch')}", "",
           "| backend | prec | batch | ms/frame | fps | set-up s | 1st frame s | peak MB | PSNR dB | note |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in b.get("rows", []):
        md.append(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['frame_ms']:.2f} | {r['fps']:.1f} | "
                  f"{r['setup_s']:.1f} | {r['first_frame_s']:.1f} | {r['peak_mb']:.0f} | {r['psnr_db']:.1f} | {r['note']} |")
for title, lb in (("live bench (pipelined)", live), ("live bench (serial)", serial)):
    if lb:
        md += ["", f"## {title}: {lb.get('gpu') or lb.get('device')}, {lb.get('backend')}, {lb.get('input')} -> "
                   f"{lb.get('output')} {lb.get('compose')}: {lb.get('steady_fps') or 0:.1f} fps steady, latency "
                   f"{lb.get('latency_ms_mean') or 0:.1f} ms, stage sum {lb.get('stage_sum_ms')} ms, "
                   f"stages {lb.get('stage_ms_mean')}, first frame {lb.get('first_frame_ms')}"]
md += ["", f"lia-animate wrote {n_png} PNG frames", ""]
(out / "summary.md").write_text("\n".join(md))
print("\n".join(md))
EOF
rm -f "$STEPS"
