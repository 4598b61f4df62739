"""scripts/gpu_check.sh without running its steps: the plan fits its time budget, in the promised order, and what
the machine lacks is found before anything heavy starts. (The whole ``--cpu-dry-run`` takes one to two minutes
on a busy 2-core box: run by hand, see docs/benchmarks.md.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
ORDER = ["env", "prepare", "bench", "live-paste", "live-serial", "animate", "pytest-gpu", "compile-cold",
         "compile-warm"]


def _run(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": python, "OUT": "/nonexistent-gpu-check-out"})


def _plan(text: str) -> tuple[list[tuple[str, int]], int, int, int]:
    steps = [(m[1], int(m[2])) for m in re.finditer(r"^  (\S+)\s+(\d+) s  ", text, re.M)]
    total = re.search(r"limits total: (\d+) s; no step runs past (\d+) s; whole run within (\d+) s", text)
    assert total, text
    return steps, int(total[1]), int(total[2]), int(total[3])


@pytest.mark.parametrize("dry,whole", [(False, 360), (True, 180)])
def test_plan_fits_the_budget_most_informative_first(dry, whole):
    res = _run("--plan", *(["--cpu-dry-run"] if dry else []))
    assert res.returncode == 0, res.stderr
    steps, total, start_at, said = _plan(res.stdout)
    assert [n for n, _ in steps] == ORDER  # model step per backend, then the live loop, then offline, then compile
    assert sum(s for _, s in steps) == total and said == whole
    assert total <= start_at <= whole - 15  # margin for the kill grace (5 s) and the summary
    assert "missing required: none" in res.stdout  # this venv has torch, numpy and OpenCV
    assert not Path("/nonexistent-gpu-check-out").exists()  # the plan writes nothing


def test_missing_requirements_stop_it_at_once_with_one_reason():
    res = _run("--cpu-dry-run", python=f"{sys.executable} -S")  # -S: no site-packages, so no torch
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "gpu_check: cannot run without: torch,numpy,cv2 (needs python3 with torch, numpy and OpenCV, and timeout)"]
    assert "=== " not in res.stdout  # no step started


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU")
def test_without_a_gpu_it_points_to_the_dry_run():
    res = _run()
    assert res.returncode == 2 and "--cpu-dry-run" in res.stderr and "sees no GPU" in res.stderr


def test_unknown_options_are_refused():
    res = _run("--fast")
    assert res.returncode == 2 and res.stderr.startswith("usage: bash scripts/gpu_check.sh")
