"""Who may use the control panel: it steers a camera, so only the person who started it.

:class:`Guard` is ASGI middleware in front of every route, HTTP and WebSocket alike:

- the **token**: a random per-run secret (``secrets.token_urlsafe``), given in the printed URL; every request
  carries it as ``?token=`` or the ``X-Lia-Token`` header (compared in constant time);
- the **Host** header must name the address the panel serves (``127.0.0.1:PORT``, ``localhost:PORT`` or the
  ``--host`` given): a DNS-rebinding page reaches us under its own name and is refused;
- an **Origin** header, when present, must be the panel's own (``http://<allowed host>``): a page of another
  site cannot post actions or open the WebSocket, even with the token.

Every refusal is a 403 with a one-line reason and one log line; nothing reaches the pipeline.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs

from ..log import log

TOKEN_HEADER = b"x-lia-token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def machine_names() -> set[str]:
    """This machine's host names and addresses (what a Host header from another machine may say)."""
    import socket

    name = socket.gethostname()
    names = {name.lower(), socket.getfqdn().lower()}
    try:
        names |= {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        pass
    return names


def new_token() -> str:
    """A fresh random per-run token (URL-safe, 128 bits of entropy)."""
    return secrets.token_urlsafe(16)


class Guard:
    """ASGI middleware: token, Host and Origin checks (see the module docstring).

    ``hosts`` is the set of accepted ``host:port`` values; it may be filled after the server has bound its
    port (``--port 0``) with :meth:`allow`.
    """

    def __init__(self, app, token: str, hosts: set[str] | None = None, say: Callable[[str], None] = log):
        self.app = app
        self.token = token
        self.hosts: set[str] = set(hosts or ())
        self.say = say
        self.refused = 0

    def allow(self, host: str, port: int) -> None:
        """Accept ``host:port``: the loopback names too for a loopback address, and this machine's names and
        addresses for a wildcard one (``0.0.0.0``, ``::``), which other machines reach it by."""
        names = {host}
        if host in LOOPBACK or host in WILDCARD:
            names |= {"127.0.0.1", "localhost", "::1"}
        if host in WILDCARD:
            names |= machine_names()
        self.hosts |= {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names - set(WILDCARD)}

    def check(self, scope) -> str | None:
        """Why this request is refused, or None when it may go on."""
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        if host not in self.hosts:
            return f"Host {host or '(none)'!r} is not this panel's address"
        origin = headers.get(b"origin")
        if origin is not None:
            o = origin.decode("latin-1").strip().lower()
            if o not in {f"http://{h}" for h in self.hosts}:
                return f"Origin {o!r} is another site"
        given = headers.get(TOKEN_HEADER, b"").decode("latin-1")
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
        if not given:
            return "no token (open the URL printed at start, with its ?token=...)"
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "wrong token (the token changes at every start: open the URL printed this time)"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.check(scope)
        if why is None:
            await self.app(scope, receive, send)
            return
        self.refused += 1
        self.say(f"ui: refused {scope.get('method', 'WEBSOCKET')} {scope.get('path', '')}: {why}")
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})  # the server answers the handshake 403
                return
            await send({"type": "websocket.http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "websocket.http.response.body", "body": f"forbidden: {why}\n".encode()})
            return
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": f"forbidden: {why}\n".encode()})
