"""What the control panel costs the pipeline: fps with the panel open in a browser vs without, and how far the
preview runs behind the pipeline's output (docs/ui.md, docs/benchmarks.md).

Runs ``lia-live ui`` (bundled demo model, CPU, a 640×480 clip read as fast as the pipeline takes it:
``--camera-fps 240``, or like a webcam: ``--camera-fps 30``) once, then alternates rounds without a page and
with the page open in headless Chromium, ``--rounds`` times, each ``--seconds`` long after a warm-up. Pipeline
fps = output frames counted by the pipeline / seconds. Then one latency round: the preview stream writes the
loop's publish time into each picture (``stamp=1``) and the page reads it back from the drawn <img> every
4 ms: preview latency = from the loop publishing a frame (after sending it to the outputs) to the page
showing it (same machine, same clock; the sampling itself costs the browser CPU, so it has its own round).

    python scripts/ui_bench.py [--rounds 3] [--seconds 10] [--backend auto] [--preview-rate 15]
                               [--camera-fps 240] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def make_inputs(d: Path) -> tuple[Path, Path]:
    import cv2
    from make_demo_data import write_clip_video  # scripts/ is this script's own folder
    from skimage import data

    face = data.astronaut()
    cv2.imwrite(str(d / "portrait.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    write_clip_video(d / "clip.mp4", "demo", 150, 30)  # make demo's webcam-like 640x480 clip
    return d / "portrait.png", d / "clip.mp4"


def start_panel(d: Path, backend: str, camera_fps: str = "240") -> tuple[subprocess.Popen, str]:
    portrait, clip = make_inputs(d)
    env = {**os.environ, "XDG_CONFIG_HOME": str(d / "cfg"), "XDG_DATA_HOME": str(d / "data"),
           "XDG_VIDEOS_DIR": str(d / "videos"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "lia_live.cli.live", "ui", "--source", str(portrait),
                             "--driving", str(clip), "--camera-fps", camera_fps, "--no-vcam", "--no-browser",
                             "--port", "0", "--backend", backend, "--stats-every", "0"], stdout=subprocess.PIPE,
                            stderr=open(d / "stderr.txt", "w"), text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    for _ in range(1200):
        m = next((re.search(r"(http://\S+)", s) for s in lines if "control panel at" in s), None)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"lia-live ui exited: {(d / 'stderr.txt').read_text()}")
        time.sleep(0.1)
    raise SystemExit("no URL line")


def frames(url: str) -> int:
    return int(state(url)["stats"]["frames"])


def state(url: str, viewer: str = "") -> dict:
    base, token = url.split("/?token=")
    with urllib.request.urlopen(f"{base}/api/state?token={token}&viewer={viewer}") as r:
        return json.loads(r.read())


# reads the stamp (scripts' twin of lia_live.ui.preview.read_stamp) from the drawn <img> every 4 ms for
# `ms` milliseconds; returns, per newly shown picture, how long ago the loop published it
SAMPLE_LATENCY = """(ms) => new Promise((done) => {
  const img = document.getElementById('preview'), c = document.createElement('canvas');
  c.width = 192; c.height = 8; const g = c.getContext('2d', { willReadFrequently: true });
  const out = []; let last = -1; const end = performance.now() + ms;
  const tick = () => {
    const h = img.naturalHeight, y = h - h % 8 - 8;
    if (h >= 8) {
      g.drawImage(img, 0, y, 192, 8, 0, 0, 192, 8);
      const px = g.getImageData(0, 4, 192, 1).data; let v = 0;
      for (let b = 0; b < 24; b++) v = v * 2 + (px[(b * 8 + 4) * 4] > 127 ? 1 : 0);
      if (v !== last) { if (last >= 0) out.push(((Date.now() % 16777216) - v + 16777216) % 16777216); last = v; }
    }
    if (performance.now() < end) setTimeout(tick, 4); else done(out);
  };
  tick();
})"""


def measure(url: str, seconds: float, proc) -> tuple[float, float, float]:
    """(pipeline fps, CPU ms per output frame of the lia-live process, and of the browser's processes)."""
    c0, b0, n0, t0 = _cpu([proc]), _cpu(_browser()), frames(url), time.perf_counter()
    time.sleep(seconds)
    c1, b1, n1, t1 = _cpu([proc]), _cpu(_browser()), frames(url), time.perf_counter()
    n = max(1, n1 - n0)
    return (n1 - n0) / (t1 - t0), 1e3 * (c1 - c0) / n, 1e3 * max(0.0, b1 - b0) / n


def _browser() -> list:
    import psutil

    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "chrom" in p.name().lower()]


def _cpu(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        except Exception:  # noqa: BLE001 - a renderer process may end between listing and reading
            pass
    return total


def run_rounds(url: str, pid: int, rounds: int, seconds: float, rate: str = "0") -> dict:
    import psutil
    from playwright.sync_api import sync_playwright

    proc = psutil.Process(pid)
    without, with_page, preview_fps, cpu_without, cpu_with, cpu_browsers, behind = [], [], [], [], [], [], []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                        viewport={"width": 1280, "height": 900})
        time.sleep(seconds / 2)  # warm-up: the model's first frames, the engine cache
        for r in range(rounds):
            fps, cpu, _ = measure(url, seconds, proc)
            without.append(fps)
            cpu_without.append(cpu)
            page = _open(browser, url, rate)
            viewer = page.evaluate("() => window.liaPanel.viewer")
            sent0, t0 = state(url, viewer)["preview"]["stream"]["sent"], time.perf_counter()
            fps, cpu, cpu_browser = measure(url, seconds, proc)
            stream = state(url, viewer)["preview"]["stream"]
            with_page.append(fps)
            cpu_with.append(cpu)
            cpu_browsers.append(cpu_browser)
            preview_fps.append((stream["sent"] - sent0) / (time.perf_counter() - t0))
            behind.append(stream["behind_ms"] or 0.0)
            page.close()
            print(f"round {r + 1}: without {without[-1]:.2f} fps ({cpu_without[-1]:.1f} CPU ms/frame) | with the page "
                  f"{with_page[-1]:.2f} fps ({cpu_with[-1]:.1f} CPU ms/frame; browser {cpu_browsers[-1]:.1f}), "
                  f"preview {preview_fps[-1]:.2f} fps", flush=True)
        latency = _latency_round(browser, url, rate, seconds)
        browser.close()
    return {"fps_without": [round(v, 2) for v in without], "fps_with_page": [round(v, 2) for v in with_page],
            "preview_fps": [round(v, 2) for v in preview_fps],
            "cpu_ms_per_frame_without": round(statistics.median(cpu_without), 2),
            "cpu_ms_per_frame_with_page": round(statistics.median(cpu_with), 2),
            "browser_cpu_ms_per_frame": round(statistics.median(cpu_browsers), 2),
            "ratio_median": round(statistics.median(with_page) / statistics.median(without), 3),
            "frame_ms_with_page": round(1000 / statistics.median(with_page), 1),
            "sent_behind_ms_last": behind, **latency}


def _open(browser, url: str, rate: str):
    """A page on the panel with its preview capped at ``rate``, once it has shown a few frames."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("() => window.liaPanel && window.liaPanel.frames > 5", timeout=60_000)
    page.select_option("#preview-rate", rate)  # (restarts the preview stream at that rate)
    return page


def _latency_round(browser, url: str, rate: str, seconds: float) -> dict:
    """The drawn preview's delay behind the loop's publish, from the time stamps in the pictures."""
    page = _open(browser, url, rate)
    page.evaluate("() => { window.liaPanel.stamp = true; window.liaPanel.startPreview(); }")
    time.sleep(1.0)
    got = sorted(page.evaluate(SAMPLE_LATENCY, int(1000 * seconds)))
    page.close()
    if not got:
        return {"latency_ms_median": None, "latency_ms_p90": None, "latency_samples": 0}
    print(f"latency: median {statistics.median(got):.1f} ms, p90 {got[int(0.9 * (len(got) - 1))]:.1f} ms "
          f"({len(got)} pictures)", flush=True)
    return {"latency_ms_median": round(statistics.median(got), 1),
            "latency_ms_p90": round(got[int(0.9 * (len(got) - 1))], 1), "latency_samples": len(got)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", type=Path)
    p.add_argument("--camera-fps", default="240", help="the clip's read rate: 240 = as fast as the pipeline "
                   "takes it (the CPU saturated), 30 = like a webcam")
    p.add_argument("--preview-rate", default="15", choices=("15", "30", "0", "5", "1"),
                   help="the page's preview cap: 15 fps (the page's default), 0 the pipeline's rate")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, url = start_panel(Path(d), a.backend, a.camera_fps)
        try:
            result = run_rounds(url, proc.pid, a.rounds, a.seconds, a.preview_rate)
        finally:
            proc.terminate()
            proc.wait(30)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
