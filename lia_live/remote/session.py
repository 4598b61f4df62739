"""``lia-live --remote``: the live loop with a :class:`~lia_live.remote.client.RemoteAnimator` as its model."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from ..errors import UserError
from ..log import log
from .client import RemoteAnimator
from .settings import RemoteConfig

CLIENT_THREADS = 1  # torch threads of a remote client (its model runs on the server; see client_threads)


@contextlib.contextmanager
def client_threads(threads: int | None) -> Iterator[int]:
    """PyTorch's CPU threads while a remote client runs: ``threads`` (``--threads``) or 1, restored afterwards.

    The client runs no model, only small tensor conversions (crop → tensor, animated crop → uint8); with one
    thread per core each of them wakes an OpenMP pool whose threads then spin, burning CPU the tracker (and on
    one machine the server) could use: measured 5.5 against 6.2-6.6 ms of client CPU per frame, 2 cores."""
    import torch

    before = torch.get_num_threads()
    n = threads or CLIENT_THREADS
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def run_remote(cfg, remote: RemoteConfig, run: Callable | None = None) -> dict:
    """``lia-live --remote``: the live loop of :func:`lia_live.live.run_live` with a :class:`RemoteAnimator`."""
    token = remote.remote_token or os.environ.get("LIA_REMOTE_TOKEN")
    if not token:
        raise UserError("remote mode needs the server's token: «remote_token» or $LIA_REMOTE_TOKEN "
                        "('lia-live serve' prints it)")
    runner: Callable[..., dict] = run if run is not None else _run_live()
    assert remote.remote is not None
    anim = RemoteAnimator(remote.remote, token, ca=remote.remote_ca, codec=remote.remote_codec,
                          quality=remote.remote_quality, timeout=remote.remote_timeout,
                          motion_power=cfg.motion.motion_power, inflight=remote.remote_inflight)
    try:
        with client_threads(cfg.model.threads):
            stats = runner(cfg, animator=anim)
        line = anim.line()
    finally:
        anim.close()
    stats["remote"] = s = anim.stats()
    log(f"{line} | {s['round_trips']} round trips, {s['reconnects']} reconnections, "
        f"{s['held_frames']} frames held")
    return stats


def _run_live() -> Callable[..., dict]:
    from ..live import run_live

    return run_live
