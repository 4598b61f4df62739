"""Helpers for the control panel's tests: a stand-in controller (no model) and raw HTTP requests."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass

import numpy as np

from lia_live.errors import UserError


@dataclass(frozen=True)
class Frame:
    camera: np.ndarray
    box: object | None
    face_found: bool
    face: object | None
    output: np.ndarray | None
    seq: int
    captured: float

    def face_rgb(self):
        return None


class StandInController:
    """The LiveController's front-end side (act/state/stats/messages/preview), recording the actions."""

    def __init__(self):
        self.actions: list[tuple[str, dict]] = []
        self.lines: list[str] = []
        self.running = True
        self.frame: Frame | None = None
        self._lock = threading.Lock()

    def act(self, action: str, **params) -> str:
        if action not in ("set_power", "add_source", "reset_reference"):
            raise UserError(f"unknown action {action!r}")
        with self._lock:
            self.actions.append((action, params))
        return self.say(f"did {action}")

    def say(self, line: str) -> str:
        with self._lock:
            self.lines.append(line)
        return line

    def state(self) -> dict:
        return {"mode": "relative", "power": 1.0, "sources": [], "compose": "crop", "running": self.running}

    def stats(self) -> dict:
        return {"frames": 0, "fps": 0.0, "latency_ms": 0.0, "stage_ms": {}, "dropped": 0, "no_face": 0}

    def messages(self, since: int = 0) -> tuple[int, list[str]]:
        with self._lock:
            return len(self.lines), self.lines[since:]

    def preview(self):
        return self.frame


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            host: str | None = None) -> tuple[int, bytes]:
    """One HTTP request with exactly these headers (Host as given, default the panel's own)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post_action(port: int, token: str, action: str, **params) -> tuple[int, dict]:
    status, body = request(port, "POST", "/api/action", json.dumps({"action": action, "params": params}).encode(),
                           {"X-Lia-Token": token, "Content-Type": "application/json"})
    return status, json.loads(body)
