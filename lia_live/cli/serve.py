"""``lia-live serve``: animate for ``lia-live --remote`` clients (on the machine with the GPU).

    lia-live serve                                  # 127.0.0.1:8765, a new token (printed)
    lia-live serve --host 0.0.0.0 --port 0 --tls-cert cert.pem --tls-key key.pem --token SECRET

Prints exactly one line on stdout, ``lia-live: serving on HOST:PORT, token TOKEN``; everything else (the
model, clients joining and leaving, clients dropped) goes to stderr. Full guide: docs/remote.md.
"""

from __future__ import annotations

import os

from ..options import add_config_args, config_from_args
from ..remote.settings import ServeConfig
from ..settings import ModelConfig
from .common import ArgumentParser, user_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="lia-live serve", description="Animate for 'lia-live --remote HOST:PORT' clients: "
                       "load the model once, serve many callers, batching their frames.",
                       epilog="Full guide: docs/remote.md")
    add_config_args(p, ModelConfig(), "model", into=p.add_argument_group("model"))
    add_config_args(p, ServeConfig(), "serve", into=p.add_argument_group("server"))
    return p


@user_errors("lia-live")
def main(argv=None) -> int:
    from ..remote.server import RemoteServer, new_token, serve_forever, settle_threads
    from ..runtime import make_animator
    from ..templates import model_hash

    a = build_parser().parse_args(argv)
    cfg = config_from_args(ServeConfig(), a, "serve")
    token = cfg.token or os.environ.get("LIA_REMOTE_TOKEN") or new_token()
    anim = make_animator(config_from_args(ModelConfig(), a, "model"))
    model_hash(anim)
    settle_threads(anim)  # after the backend took its own thread count
    server = RemoteServer(anim, cfg, token)

    def announce(host: str, port: int) -> None:
        print(f"lia-live: serving on {host}:{port}, token {token}", flush=True)

    serve_forever(server, announce)
    return 0
