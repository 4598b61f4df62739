"""The control panel's server refuses whoever is not the person who started it (no model, no browser).

Every refusal is checked with its status, its log line, and that nothing reached the controller.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
from uihelp import StandInController, request

from lia_live.ui import prefs
from lia_live.ui.devices import Devices, InputChoice, SwitchingInput, SwitchingOutputs
from lia_live.ui.panel import Panel
from lia_live.ui.security import Guard
from lia_live.ui.server import PanelServer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        ctrl = StandInController()
        lines: list[str] = []
        inp = SwitchingInput(InputChoice("0"), say=lines.append)
        outs = SwitchingOutputs((64, 64), 30.0, vcam=False, say=lines.append)
        devices = Devices(inp, outs, ctrl, say=lines.append)
        panel = Panel(ctrl, devices, {}, say=lines.append, max_upload=200_000)
        server = PanelServer(panel, "secret-token", "127.0.0.1", 0, say=lines.append)
        server.start()
        server.panel = panel  # for the preview stream's test
        panel.preview.start()
        try:
            yield server, ctrl, lines, home
        finally:
            panel.preview.stop()
            server.stop()


def _png(h=80, w=64) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)  # BGR red on the left
    return cv2.imencode(".png", img)[1].tobytes()


def test_binds_loopback_only(served):
    server = served[0]
    assert server.sock.getsockname()[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/?token=secret-token"


@pytest.mark.parametrize("path", ["/", "/api/state", "/static/panel.js", "/api/cameras"])
def test_token_required_on_every_request(served, path):
    server, ctrl, lines, _ = served
    n = len(lines)
    assert request(server.port, "GET", path)[0] == 403
    status, body = request(server.port, "GET", path + "?token=wrong-token")
    assert status == 403 and b"wrong token" in body
    assert request(server.port, "GET", path + "?token=secret-token")[0] == 200
    assert len(lines) == n + 2 and all(f"refused GET {path}" in ln for ln in lines[n:])


def test_page_carries_the_token(served):
    server = served[0]
    status, body = request(server.port, "GET", "/?token=secret-token")
    assert status == 200 and b"static/panel.js?token=secret-token" in body and b"{{TOKEN}}" not in body


def test_other_host_header_refused(served):
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example:PORT."""
    server, ctrl, lines, _ = served
    n = len(ctrl.actions)
    for host in (f"evil.example:{server.port}", "127.0.0.1:1", ""):
        status, body = request(server.port, "GET", "/api/state?token=secret-token", host=host)
        assert status == 403 and b"not this panel's address" in body
    status, _ = request(server.port, "POST", "/api/action", json.dumps({"action": "set_power", "params": {"value": 1}})
                        .encode(), {"X-Lia-Token": "secret-token"}, host=f"evil.example:{server.port}")
    assert status == 403 and len(ctrl.actions) == n
    assert request(server.port, "GET", "/api/state?token=secret-token", host=f"localhost:{server.port}")[0] == 200


def test_other_origin_refused(served):
    server, ctrl, lines, _ = served
    n = len(ctrl.actions)
    body = json.dumps({"action": "set_power", "params": {"value": 0.5}}).encode()
    status, text = request(server.port, "POST", "/api/action", body,
                           {"X-Lia-Token": "secret-token", "Origin": "http://evil.example"})
    assert status == 403 and b"another site" in text and len(ctrl.actions) == n
    assert "Origin 'http://evil.example' is another site" in lines[-1]
    status, text = request(server.port, "POST", "/api/action", body,
                           {"X-Lia-Token": "secret-token", "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200 and json.loads(text) == {"message": "did set_power"}
    assert ctrl.actions[-1] == ("set_power", {"value": 0.5})


def test_websocket_needs_token_and_own_origin(served):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    server = served[0]
    base = f"ws://127.0.0.1:{server.port}/ws"
    for url, origin in ((base, None), (base + "?token=nope", None),
                        (base + "?token=secret-token", "http://evil.example")):
        with pytest.raises(InvalidStatus) as e:
            connect(url, origin=origin, open_timeout=5).close()
        assert e.value.response.status_code == 403
    with connect(base + "?token=secret-token", origin=f"http://127.0.0.1:{server.port}", open_timeout=5) as ws:
        status = json.loads(ws.recv(timeout=5))
    assert status["type"] == "status" and status["state"]["mode"] == "relative"


def test_preview_stream_needs_token_and_sane_parameters(served):
    """The MJPEG stream: refused without the token or with bad parameters (400 and a log line); with them it
    streams the newest frames as multipart parts, and the stream's numbers land in the page's status."""
    import http.client
    import time

    from uihelp import Frame

    from lia_live.tracking import CropBox
    from lia_live.ui.preview import BOUNDARY, OPENING

    server, ctrl, lines, _ = served
    assert request(server.port, "GET", "/api/preview.mjpg")[0] == 403
    for query, text in (("rate=fast", "rate: expected"), ("rate=-1", "rate: expected"), ("rate=1000", "rate: expected"),
                        ("viewer=../x", "viewer: expected")):
        n = len(lines)
        status, body = request(server.port, "GET", f"/api/preview.mjpg?token=secret-token&{query}")
        assert status == 400 and text in json.loads(body)["error"] and len(lines) == n + 1 and text in lines[-1]
    ctrl.frame = Frame(np.zeros((48, 64, 3), np.uint8), CropBox(32.0, 24.0, 20.0), True, None, None, 7,
                       time.perf_counter())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/api/preview.mjpg?token=secret-token&rate=0&viewer=page-1")
        resp = conn.getresponse()
        kind = resp.getheader("Content-Type")
        assert resp.status == 200 and kind == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        data = b""
        while data.count(OPENING) < 2:  # the opening, one picture, the next part's boundary and headers
            data += resp.read1(65536)
    finally:
        conn.close()
    jpeg = data[len(OPENING):data.index(b"\r\n" + OPENING)]
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert data.startswith(OPENING) and picture.shape == (240, 320, 3)  # the camera tile at the preview's height
    state = json.loads(request(server.port, "GET", "/api/state?token=secret-token&viewer=page-1")[1])
    stream = state["preview"]["stream"]
    assert stream["sent"] >= 1 and stream["seq"] == 7 and [t["label"] for t in stream["tiles"]] == ["camera"]
    deadline = time.monotonic() + 10  # the page went away: its stream stops waiting for frames
    while server.panel.preview._ready and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.panel.preview._ready == 0
    assert request(server.port, "GET", "/api/state?token=secret-token")[0] == 200  # still serving


def test_malformed_requests_get_4xx_and_a_log_line(served):
    server, ctrl, lines, _ = served
    hdr = {"X-Lia-Token": "secret-token", "Content-Type": "application/json"}
    cases = [(b"not json", 400, "not JSON"), (b"[1, 2]", 400, "not a JSON object"),
             (b'{"action": 3}', 400, "expected"), (b'{"action": "explode"}', 400, "unknown action 'explode'"),
             (b'{"action": "set_power", "params": {"value": "big"}}', 400, "value must be float"),
             (b'{"action": "set_power", "params": {"value": 1, "x": 2}}', 400, "no parameter 'x'"),
             (b"x" * 70_000, 413, "too large")]
    for body, want, text in cases:
        n = len(lines)
        status, answer = request(server.port, "POST", "/api/action", body, hdr)
        assert status == want, body[:40]
        assert text in json.loads(answer)["error"]
        assert len(lines) == n + 1 and text in lines[-1]
    assert request(server.port, "GET", "/api/thumb/7?token=secret-token")[0] == 404
    assert request(server.port, "GET", "/api/state?token=secret-token")[0] == 200  # still serving


def test_uploads_checked_and_kept_in_the_users_folder(served):
    server, ctrl, lines, home = served
    hdr = {"X-Lia-Token": "secret-token", "X-File-Name": "../../etc/passwd"}
    n = len(ctrl.actions)
    status, body = request(server.port, "POST", "/api/source", b"x" * 200_001, hdr)
    assert status == 413 and b"too large" in body
    status, body = request(server.port, "POST", "/api/source", b"GIF89a not really an image" * 10, hdr)
    assert status == 400 and b"not an image" in body
    status, body = request(server.port, "POST", "/api/source", _png(20, 20), hdr)
    assert status == 400 and b"20\xc3\x9720" in body
    assert len(ctrl.actions) == n  # nothing refused reached the controller
    status, body = request(server.port, "POST", "/api/source", _png(), hdr)
    assert status == 200, body
    action, params = ctrl.actions[-1]
    assert action == "add_source" and params["image"].shape == (80, 64, 3)
    assert params["image"].dtype == np.uint8 and tuple(params["image"][0, 0]) == (255, 0, 0)  # RGB
    kept = Path(params["name"])
    assert kept.parent == prefs.sources_dir() and kept.parent.is_relative_to(home / "data")
    written = sorted(p.relative_to(home) for p in home.rglob("*") if p.is_file())
    assert written == [kept.relative_to(home)]  # the stand-in has no session: no settings learnt yet


def test_guard_allows_exactly_the_served_names():
    g = Guard(None, "t")
    g.allow("127.0.0.1", 8780)
    assert g.hosts == {"127.0.0.1:8780", "localhost:8780", "[::1]:8780"}
    g2 = Guard(None, "t")
    g2.allow("192.168.1.5", 9000)
    assert g2.hosts == {"192.168.1.5:9000"}
    g3 = Guard(None, "t")
    g3.allow("0.0.0.0", 9000)  # every interface: this machine's names, never a foreign one
    assert {"127.0.0.1:9000", "localhost:9000", f"{socket.gethostname().lower()}:9000"} <= g3.hosts
    assert "0.0.0.0:9000" not in g3.hosts and "evil.example:9000" not in g3.hosts


def test_port_taken_is_one_line():
    from lia_live.errors import UserError
    from lia_live.ui.server import bind

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=r"cannot serve the control panel on 127\.0\.0\.1:\d+ .*; port 0 picks"):
            bind("127.0.0.1", port)
