"""The control panel in a real browser: `lia-live ui` in a subprocess, the page in headless Chromium (Debian's
package, driven by Playwright), the bundled demo model on a 640×480 clip. One server and one browser for the
whole module; the tests run in file order and build on each other (upload, then record, then stop).

Without Chromium or Playwright these tests are skipped on a developer's machine, and fail in CI (CI=true).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from livedata import make_scene
from media import count_video_frames, write_video
from uihelp import request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("LIA_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
URL_LINE = re.compile(r"^lia-live: control panel at (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))$")


def _require_browser():
    why = None
    if not Path(CHROMIUM).exists():
        why = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "Playwright for Python is not installed (pip install playwright)"
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {why}")
        pytest.skip(why)


def _wait(what: str, fn, timeout: float = 30.0, every: float = 0.1):
    """Poll ``fn`` until it returns something truthy (the test's deadline, not its verdict)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Panel:
    def __init__(self, proc, url, port, token, stderr, home, page):
        self.proc, self.url, self.port, self.token, self.stderr, self.home, self.page = (
            proc, url, port, token, stderr, home, page)

    def state(self) -> dict:
        status, body = request(self.port, "GET", f"/api/state?token={self.token}")
        assert status == 200, body
        return json.loads(body)

    def frames(self) -> int:
        return int(self.state()["stats"]["frames"])

    def log(self) -> str:
        return self.stderr.read_text()


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("media")
    cv2.imwrite(str(d / "portrait.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    second = np.ascontiguousarray(astronaut[:, ::-1])
    second = np.clip(second.astype(np.int16) + (60, -40, -40), 0, 255).astype(np.uint8)  # redder, mirrored
    cv2.imwrite(str(d / "second.png"), cv2.cvtColor(second, cv2.COLOR_RGB2BGR))
    write_video(d / "clip.mp4", make_scene(astronaut, n=60, gaps=()).frames(), 30.0)
    return d


@pytest.fixture(scope="module")
def pw():
    """Playwright, once for the module (its sync API cannot be started twice at a time)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@contextlib.contextmanager
def launched(pw, home: Path, *argv: str):
    """``lia-live ui ARGV --no-vcam --no-browser --port 0`` in a subprocess and its page in headless Chromium."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
           "XDG_VIDEOS_DIR": str(home / "videos"), "PYTHONUNBUFFERED": "1"}
    stderr = home / "stderr.txt"
    with open(stderr, "w") as err:
        argv = ("ui", *argv, "--no-vcam", "--no-browser", "--port", "0", "--stats-every", "0")
        proc = subprocess.Popen([sys.executable, "-m", "lia_live.cli.live", *argv], stdout=subprocess.PIPE, stderr=err,
                                text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    browser = None
    try:
        m = _wait("the URL line", lambda: next((URL_LINE.match(s.strip()) for s in lines), None) or
                  (proc.poll() is not None and pytest.fail(f"lia-live ui exited: {stderr.read_text()}")), 120)
        browser = pw.chromium.launch_persistent_context(str(home / "chromium-profile"), executable_path=CHROMIUM,
                                                        headless=True, args=ARGS,
                                                        viewport={"width": 1280, "height": 900})
        page = browser.new_page()
        page.goto(m.group(1))
        yield Panel(proc, m.group(1), int(m.group(2)), m.group(3), stderr, home, page)
    finally:
        if browser is not None:
            browser.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def panel(media, pw, tmp_path_factory):
    with launched(pw, tmp_path_factory.mktemp("home"), "--source", str(media / "portrait.png"), "--driving",
                  str(media / "clip.mp4"), "--backend", "eager") as p:
        yield p


def _canvas(page) -> np.ndarray:
    """The picture the preview <img> shows now, as RGB (H, W, 3) at its own size."""
    data = page.evaluate("""() => { const i = document.getElementById('preview'), c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        return {w: c.width, h: c.height, px: Array.from(g.getImageData(0, 0, c.width, c.height).data)}; }""")
    return np.array(data["px"], np.uint8).reshape(data["h"], data["w"], 4)[..., :3]


def _tile(page, label: str) -> np.ndarray:
    head = page.evaluate("() => window.liaPanel.stream")
    x = 0
    for t in head["tiles"]:
        if t["label"] == label:
            return _canvas(page)[:, x:x + t["width"]]
        x += t["width"]
    raise AssertionError(f"no {label} tile in {head['tiles']}")


def _seq(page) -> int:
    return int(page.evaluate("() => window.liaPanel.seq"))


def test_page_shows_the_session(panel):
    page = panel.page
    assert page.title() == "lia-live control panel"
    _wait("the first preview frame", lambda: _seq(page) >= 0)
    _wait("running", lambda: page.inner_text("#run-state") == "running")
    assert page.inner_text("#info") == (f"eager · cpu · fp32 · "
                                        f"{Path('lia_live/assets/demo_generator.safetensors').resolve()}")
    assert page.locator("#offsets input[type=range]").count() == len(panel.state()["state"]["offsets"])
    assert [t["label"] for t in page.evaluate("() => window.liaPanel.stream.tiles")] == ["camera", "animated"]


def test_preview_moves(panel):
    page = panel.page
    first_seq, first = _seq(page), _canvas(page)
    _wait("newer frames", lambda: _seq(page) >= first_seq + 5)
    later = _canvas(page)
    assert first.shape == later.shape and np.abs(first.astype(int) - later.astype(int)).mean() > 1.0
    assert int(page.inner_text("#frames")) > 0 and float(page.inner_text("#fps")) > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-panel.png"), full_page=True)  # the running panel, to look at


def test_power_slider_drives_the_controller(panel):
    page = panel.page
    page.locator("#power").fill("0.5")
    _wait("the controller's power", lambda: panel.state()["state"]["power"] == 0.5)
    _wait("the page's power", lambda: page.inner_text("#power-value") == "0.50")
    assert "motion power 0.5" in panel.log()


def test_reference_now(panel):
    page = panel.page
    page.click("#reference-now")
    _wait("the line on the page", lambda: "reference pose: taken again" in page.inner_text("#messages"))
    _wait("the reference taken", lambda: panel.state()["state"]["reference_taken"])


def test_upload_a_source_changes_the_output(panel, media):
    page = panel.page
    before = _tile(page, "animated").astype(np.float64)
    page.set_input_files("#upload", str(media / "second.png"))
    _wait("the second source in use", lambda: panel.state()["state"]["source_index"] == 1, 60)
    _wait("two thumbnails", lambda: page.locator("#thumbs img").count() == 2)
    seq = _seq(page)
    _wait("frames of the new source", lambda: _seq(page) >= seq + 5)
    after = _tile(page, "animated").astype(np.float64)
    red_gain = (after[..., 0].mean() - after[..., 2].mean()) - (before[..., 0].mean() - before[..., 2].mean())
    assert red_gain > 10, red_gain  # the second portrait is redder (measured: 20)
    kept = Path(panel.state()["state"]["sources"][1])
    assert kept.parent == panel.home / "data" / "lia-live" / "sources" and kept.is_file()
    page.screenshot(path=str(ARTIFACTS / "ui-panel-two-sources.png"), full_page=True)


def test_record_video_and_motion(panel):
    page = panel.page
    page.click("#record-video")
    page.click("#record-motion")
    # each button shows its new state at once (a status sent before the pipeline applied it cannot undo it)
    assert (page.inner_text("#record-video"), page.inner_text("#record-motion")) == ("Stop recording",
                                                                                 "Stop motion recording")
    _wait("recording", lambda: panel.state()["devices"]["recording"] and panel.state()["devices"]["motion_recording"])
    n = panel.frames()
    _wait("frames recorded", lambda: panel.frames() >= n + 8)
    page.click("#record-video")  # at once: the second click stops what the first started, whatever the status
    page.click("#record-motion")
    dev = _wait("the files", lambda: (d := panel.state()["devices"])["last_recording"] and d["last_motion"] and d)
    video, motion = Path(dev["last_recording"]), Path(dev["last_motion"])
    assert video.parent == motion.parent == panel.home / "videos" / "lia-live"
    assert count_video_frames(video) >= 8
    with np.load(motion) as z:
        assert z["alpha"].shape[0] >= 8
    _wait("where the file went, on the page", lambda: f"saved: {video}" in page.inner_text("#video-state"))


def test_settings_saved_and_command_line(panel, media):
    page = panel.page
    page.click("#show-command")
    command = page.inner_text("#command")
    assert command.startswith(f"lia-live --source {media / 'portrait.png'} --source ")
    assert f"--driving {media / 'clip.mp4'}" in command and "--motion-power 0.5" in command
    assert command.endswith("--no-vcam")
    saved = json.loads((panel.home / "config" / "lia-live" / "ui.json").read_text())
    assert saved["motion_power"] == 0.5 and len(saved["sources"]) == 2 and saved["vcam"] is False


def test_refused_requests_leave_the_pipeline_running(panel):
    port, token = panel.port, panel.token
    refused = [request(port, "GET", "/api/state"),
               request(port, "GET", f"/api/state?token={token}", host=f"evil.example:{port}"),
               request(port, "POST", "/api/action", b'{"action": "set_power", "params": {"value": 2}}',
                       {"X-Lia-Token": token, "Origin": "http://evil.example"}),
               request(port, "POST", "/api/source", b"x" * (17 << 20), {"X-Lia-Token": token}),
               request(port, "POST", "/api/source", b"definitely not an image", {"X-Lia-Token": token}),
               request(port, "POST", "/api/action", b"{oops", {"X-Lia-Token": token})]
    assert [s for s, _ in refused] == [403, 403, 403, 413, 400, 400]
    n = panel.frames()
    _wait("frames after the refusals", lambda: panel.frames() >= n + 3)
    assert panel.state()["state"]["power"] == 0.5 and panel.proc.poll() is None
    assert panel.log().count("lia-live: ui: refused") == 3


def test_stop_and_start(panel):
    page = panel.page
    page.click("#stop")
    _wait("stopped", lambda: not panel.state()["devices"]["running"])
    _wait("the page says so", lambda: page.inner_text("#run-state") == "stopped")
    page.click("#start")
    _wait("running again", lambda: panel.state()["devices"]["running"], 60)
    n = panel.frames()
    _wait("frames again", lambda: panel.frames() >= n + 3)
    st = panel.state()["state"]
    assert st["power"] == 0.5 and len(st["sources"]) == 2  # the session's settings survive a stop


def test_no_source_yet_then_upload_start_and_sigterm(media, tmp_path):
    """No portrait given or saved: the panel waits for one; an upload and Start run the loop; Stop; SIGTERM
    then ends the program (exit 143, as lia-live). No browser needed."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_VIDEOS_DIR": str(tmp_path / "videos")}
    argv = ["ui", "--driving", str(media / "clip.mp4"), "--no-vcam", "--no-browser", "--port", "0", "--backend",
            "eager", "--stats-every", "0"]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lia_live.cli.live", *argv], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
    try:
        m = URL_LINE.match(proc.stdout.readline().strip())
        assert m is not None
        port, token = int(m.group(2)), m.group(3)

        def state():
            return json.loads(request(port, "GET", f"/api/state?token={token}")[1])

        _wait("the request for a portrait", lambda: "add a source portrait on the page, then press Start"
              in (tmp_path / "stderr.txt").read_text(), 120)
        assert not state()["devices"]["running"]
        png = cv2.imencode(".png", cv2.imread(str(media / "portrait.png")))[1].tobytes()
        status, body = request(port, "POST", "/api/source", png, {"X-Lia-Token": token, "X-File-Name": "me.png"})
        assert status == 200 and b"used when the pipeline starts" in body
        status, _ = request(port, "POST", "/api/action", b'{"action": "start"}', {"X-Lia-Token": token})
        assert status == 200
        _wait("frames", lambda: state()["stats"]["frames"] >= 3, 120)
        assert len(state()["state"]["sources"]) == 1
        status, _ = request(port, "POST", "/api/action", b'{"action": "stop"}', {"X-Lia-Token": token})
        _wait("stopped", lambda: status == 200 and not state()["devices"]["running"], 60)
        proc.send_signal(signal.SIGTERM)  # while stopped: the panel's own handler
        assert proc.wait(60) == 143
        assert "SIGTERM: closing the control panel" in (tmp_path / "stderr.txt").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_remote_mode_panel(media, pw, tmp_path):
    """`lia-live ui --remote`: the model runs on a `lia-live serve` server (in this process, a tiny model); the
    page works the same: the preview moves, the round trip and the server's time are among the stage times,
    and the power slider reaches the controller."""
    from remotedata import TOKEN, address, serving, tiny_generator

    with serving(tiny_generator()) as server, launched(
            pw, tmp_path, "--source", str(media / "portrait.png"), "--driving", str(media / "clip.mp4"),
            "--remote", address(server), "--remote-token", TOKEN) as p:
        page = p.page
        _wait("the preview", lambda: _seq(page) >= 0, 60)
        first_seq, first = _seq(page), _tile(page, "animated").astype(int)
        _wait("newer frames", lambda: _seq(page) >= first_seq + 5)
        # the served animation moves (the tiny model's face changes a little each frame: measured 0.9 after 5)
        _wait("the animated face to move", lambda: np.abs(first - _tile(page, "animated").astype(int)).mean() > 1.0)
        _wait("the round trip in the stage table", lambda: "rtt" in page.inner_text("#stages")
              and "server" in page.inner_text("#stages"))
        assert p.state()["stats"]["stage_ms"]["rtt"] > 0
        page.locator("#power").fill("0.5")
        _wait("the controller's power", lambda: p.state()["state"]["power"] == 0.5)
        assert f"cpu on ws://{address(server)}" in page.inner_text("#info") and len(server.sessions) == 1
