"""The settings of remote mode, declared once (the CLIs are built from them, like :mod:`lia_live.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings import option

DEFAULT_PORT = 8765
CODEC_CHOICES = ("jpeg", "webp", "png")


@dataclass(frozen=True)
class ServeConfig:
    """``lia-live serve``: where to listen, who may connect, and the limits that protect the server."""

    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface; use a token and TLS then)")
    port: int = option(DEFAULT_PORT, "port to listen on (0: a free port, printed)", range=(0, 65535))
    token: str | None = option(None, "the clients' token (default: a new random one, printed; also $LIA_REMOTE_TOKEN)")
    tls_cert: Path | None = option(None, "TLS certificate (PEM): serve wss:// instead of ws://", metavar="FILE")
    tls_key: Path | None = option(None, "TLS private key (PEM) of --tls-cert", metavar="FILE")
    max_clients: int = option(8, "most clients served at once (more are refused)", range=(1, 1024), metavar="N")
    max_message: int = option(4 * 1024 * 1024, "largest message accepted, in bytes (a larger one drops the client)",
                              range=(64 * 1024, 256 * 1024 * 1024), metavar="BYTES")
    max_sources: int = option(16, "most source portraits per client", range=(1, 1024), metavar="N")
    hello_timeout: float = option(5.0, "drop a client that has not said hello (with its token) within this time",
                                  range=(0.05, 600), metavar="SECONDS")
    idle_timeout: float = option(60.0, "drop a client that sends nothing for this long", range=(0.05, 86400),
                                 metavar="SECONDS")
    batch_window: float = option(8.0, "wait at most this long for other active clients' frames to batch them into "
                                 "one model step (0: no batching)", range=(0, 1000), metavar="MS")
    max_batch: int = option(8, "most frames in one batched model step", range=(1, 256), metavar="N")


@dataclass(frozen=True)
class RemoteConfig:
    """``lia-live --remote``: the server to animate on (everything else stays on this machine)."""

    remote: str | None = option(None, "animate on a 'lia-live serve' server at HOST:PORT (or ws:// / wss:// URL); "
                                "camera, tracking, preview, recording and the virtual camera stay here",
                                metavar="HOST:PORT")
    remote_token: str | None = option(None, "the server's token (default: $LIA_REMOTE_TOKEN)", metavar="TOKEN")
    remote_ca: Path | None = option(None, "trust this CA/self-signed certificate (PEM) for a wss:// server",
                                    metavar="FILE")
    remote_codec: str = option("jpeg", "how face crops travel (png: lossless, largest)", choices=CODEC_CHOICES)
    remote_quality: int = option(90, "JPEG/WebP quality of the face crops", range=(1, 100), metavar="Q")
    remote_timeout: float = option(2.0, "a reply later than this counts as a lost server (the last frame is held "
                                   "while reconnecting)", range=(0.05, 60), metavar="SECONDS")
    remote_inflight: int = option(1, "1: each face crop is sent as soon as it is cut, so the server always has the "
                                  "next frame and every frame shows its own animation; 2+: the model stage keeps N "
                                  "frames in flight, the output then N-1 frames behind (a fast camera over a long "
                                  "round trip)", range=(1, 4), metavar="N")
