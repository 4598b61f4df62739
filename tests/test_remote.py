"""Remote mode on loopback: `lia-live serve` (RemoteServer) and `lia-live --remote` (RemoteAnimator).

Tiny generator (64², 8 directions) served from a background thread; the live loop runs unchanged with the
remote animator. Security cases talk to the server with a raw WebSocket (or raw TCP) client.
"""

import socket
import threading
import time

import cv2
import numpy as np
import pytest
import torch
from livedata import Collect
from remotedata import TOKEN, address, driving, portraits, psnr, serving, tiny_generator
from remotedata import live_cfg as _cfg
from remotedata import paced_run as _paced_run
from remotedata import start_server as _start_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lia_live.animator import Animator
from lia_live.capture.base import IterableCapture
from lia_live.errors import UserError
from lia_live.imaging import resize
from lia_live.live import run_live
from lia_live.remote import RemoteAnimator
from lia_live.remote.protocol import encode_image, pack, unpack

pytestmark = pytest.mark.usefixtures("one_thread")
N = 24


@pytest.fixture(scope="module")
def gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def faces(astronaut):
    return portraits(astronaut)


@pytest.fixture(scope="module")
def portrait_png(tmp_path_factory, faces):
    p = tmp_path_factory.mktemp("remote") / "face.png"
    cv2.imwrite(str(p), cv2.cvtColor(faces[0], cv2.COLOR_RGB2BGR))
    return p


def _run(cfg, frames, anim):
    out = Collect()
    stats = run_live(cfg, capture=IterableCapture(iter(frames), fps=30), animator=anim, extra_outputs=[out])
    return out.frames, stats


@pytest.mark.parametrize("codec,quality,min_psnr", [("png", 90, None), ("jpeg", 90, 28.0)])
def test_remote_frames_match_the_local_run(gen, faces, portrait_png, codec, quality, min_psnr):
    """Same file, same settings: PNG is bit-exact; JPEG q90 stays within its compression error (PSNR of the
    output frames vs the local run; measured 30.0-30.3 dB with this tiny 64² model's noisy crops)."""
    frames = driving(faces[0], N)
    local, _ = _run(_cfg(portrait_png), frames, Animator(gen))
    with serving(gen) as server:
        anim = RemoteAnimator(address(server), TOKEN, codec=codec, quality=quality)
        try:
            remote, stats = _run(_cfg(portrait_png), frames, anim)
        finally:
            anim.close()
    assert len(local) == len(remote) == N == stats["frames"]
    values = [psnr(a, b) for a, b in zip(local, remote)]
    if min_psnr is None:
        assert all(np.array_equal(a, b) for a, b in zip(local, remote))
    else:
        assert min(values) >= min_psnr, values
        assert not all(np.array_equal(a, b) for a, b in zip(local, remote))  # JPEG really was in the path
    s = anim.stats()
    # one round trip per frame, plus one when the reference is taken (frame 2 switches to the stored one), plus
    # one for each crop the tracking thread had already sent ahead (at most 4, with the old plan) by then
    assert N + 1 <= s["round_trips"] <= N + 1 + 4 and s["reconnects"] == 0 and s["rtt_ms"] >= s["server_ms"] > 0
    assert s["sent_ahead"] == N  # every crop went up from the tracking thread, claimed by its own frame


def test_four_clients_get_their_own_portraits_batched(gen, faces):
    """Four clients stepping at once, batched by the server: each gets its own portrait animated exactly as a
    local animator would (no cross-talk), and the server did run batches of more than one frame."""
    frames = driving(faces[0], 8, width=64)
    crops = [torch.from_numpy(f[:, 8:56]).permute(2, 0, 1)[None].float() for f in frames]
    crops = [torch.nn.functional.interpolate(c, size=64, mode="area") / 127.5 - 1 for c in crops]
    results: dict[int, list] = {}
    errors: list = []
    with serving(gen, batch_window=200, max_batch=4) as server:
        clients = [RemoteAnimator(address(server), TOKEN, codec="png") for _ in range(4)]
        for c, face in zip(clients, faces):
            c.set_source(face)
        barrier = threading.Barrier(4)

        def drive(k: int) -> None:
            try:
                out = []
                for x in crops:
                    barrier.wait(timeout=20)
                    a = clients[k].motion(x)
                    out.append(clients[k].render(a, None, 1.0, None))
                results[k] = out
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=drive, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batches = list(server.worker.batches)
        for c in clients:
            c.close()
    assert not errors, errors
    assert max(batches) > 1, batches
    for k, face in enumerate(faces):
        local = Animator(gen)
        local.set_source(face)
        for x, got in zip(crops, results[k]):
            q = torch.from_numpy(_from(x)).permute(2, 0, 1)[None].float() / 127.5 - 1  # the crop as sent (uint8)
            want = local.render(local.motion(q), None).clamp(-1, 1)
            assert (got - want).abs().max().item() <= 2.5 / 127.5  # batched conv rounding + uint8 transfer
            others = [results[j][0] for j in range(4) if j != k]
            assert all((results[k][0] - o).abs().mean().item() > 0.05 for o in others)


def _from(x: torch.Tensor) -> np.ndarray:
    from lia_live.imaging import from_tensor

    return from_tensor(x)[0]


def test_wrong_token_and_full_server_are_one_line_user_errors(gen):
    with serving(gen, max_clients=1) as server:
        with pytest.raises(UserError, match="refused the token"):
            RemoteAnimator(address(server), "wrong")
        first = RemoteAnimator(address(server), TOKEN)
        with pytest.raises(UserError, match="maximum of clients"):
            RemoteAnimator(address(server), TOKEN)
        first.close()
        assert _until(lambda: server.connections == 0)
        with connect(f"ws://{address(server)}"):  # a connection that has not said hello yet counts too
            assert _until(lambda: server.connections == 1)
            with pytest.raises(UserError, match="maximum of clients"):
                RemoteAnimator(address(server), TOKEN)


def _until(cond, limit: float = 10.0) -> bool:
    """Poll ``cond`` until it holds (True) or ``limit`` seconds pass (False)."""
    end = time.perf_counter() + limit
    while not cond():
        if time.perf_counter() > end:
            return False
        time.sleep(0.005)
    return True


def test_cli_wrong_token_exits_2_with_one_line(gen, portrait_png, tmp_path, capsys):
    from lia_live.cli.live import main

    folder = tmp_path / "drive"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((48, 64, 3), 100, np.uint8))
    with serving(gen) as server:
        capsys.readouterr()
        rc = main(["--source", str(portrait_png), "--driving", str(folder), "--no-vcam", "--output",
                   str(tmp_path / "o.mp4"), "--remote", address(server), "--remote-token", "nope"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lia-live: error")]
    assert rc == 2 and len(err) == 1 and "refused the token" in err[0] and "--remote-token" in err[0]
    assert not (tmp_path / "o.mp4").exists()


def _hello(ws) -> str:
    ws.send(pack({"t": "hello", "token": TOKEN}))
    header, _ = unpack(ws.recv(timeout=5))
    assert header["t"] == "welcome"
    return header["session"]


def _closed_code(ws) -> int | None:
    with pytest.raises(ConnectionClosed) as e:
        for _ in range(3):
            ws.recv(timeout=10)
    return e.value.rcvd.code if e.value.rcvd is not None else None


def _still_serves(server, face) -> None:
    anim = RemoteAnimator(address(server), TOKEN)
    try:
        src = anim.set_source(face)
        assert src.id is not None and anim.step(face).shape == (64, 64, 3)
    finally:
        anim.close()


def test_another_clients_session_id_drops_only_the_offender(gen, faces, capsys):
    with serving(gen) as server:
        victim = RemoteAnimator(address(server), TOKEN)
        victim.set_source(faces[0])
        with connect(f"ws://{address(server)}") as ws:
            _hello(ws)
            ws.send(pack({"t": "source", "session": victim.session}, encode_image(faces[1], "png")))
            assert _closed_code(ws) == 1008
        assert victim.step(faces[0]).shape == (64, 64, 3) and victim.stats()["connected"]
        assert len(victim._sources) == 1 and len(next(iter(server.sessions)).sources) == 1  # nothing was added
        victim.close()
    assert "message names another session" in capsys.readouterr().err


@pytest.mark.parametrize("payload", [b"\x00\x00\x00\x05{\"t\":", b"\xff" * 64, "text, not binary",
                                     b"\x00\x00\x00\x0e{\"t\":\"step\"}\x00"])
def test_garbage_messages_drop_the_client_not_the_server(gen, faces, payload, capsys):
    with serving(gen) as server:
        with connect(f"ws://{address(server)}") as ws:
            session = _hello(ws)
            if isinstance(payload, bytes) and payload.startswith(b"\x00\x00\x00\x0e"):
                payload = pack({"t": "step", "session": session, "seq": 1}, b"not an image")
            ws.send(payload)
            assert _closed_code(ws) == 1008
        _still_serves(server, faces[0])
    assert "dropped 127.0.0.1" in capsys.readouterr().err


def test_raw_garbage_bytes_and_a_100mb_message(gen, faces, capsys):
    with serving(gen) as server:
        host, port = server.address
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes() + b"\r\n\r\n")
            s.settimeout(10)
            reply = s.recv(4096)  # not a WebSocket handshake: refused (closed, or an HTTP error first)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
        with connect(f"ws://{address(server)}", max_size=None) as ws:
            session = _hello(ws)
            with pytest.raises(ConnectionClosed):
                ws.send(pack({"t": "step", "session": session, "seq": 1}, bytes(100 * 1024 * 1024)))
                ws.recv(timeout=10)
        _still_serves(server, faces[0])
    assert "a message over the 4194304-byte limit" in capsys.readouterr().err


def test_silent_and_idle_clients_are_dropped(gen, faces, capsys):
    with serving(gen, hello_timeout=1.5, idle_timeout=1.5) as server:
        with connect(f"ws://{address(server)}") as silent:
            assert _closed_code(silent) == 1008
        with connect(f"ws://{address(server)}") as idle:
            _hello(idle)
            assert _closed_code(idle) == 1008
        _still_serves(server, faces[0])
    err = capsys.readouterr().err
    assert "said nothing for 1.5 s" in err and "sent nothing for 1.5 s" in err


def test_a_frozen_client_does_not_hold_up_stopping_the_server(gen, capsys):
    """A client that joined and then reads and answers nothing (a frozen laptop, a half-open connection): the
    server stops within its close timeout (1 s), not websockets' default 10 s; a second stop does nothing."""
    import base64
    import os
    import struct
    import time

    from lia_live.remote.server import CLOSE_TIMEOUT

    def masked(payload: bytes) -> bytes:  # one client-to-server binary frame (clients mask theirs)
        mask = os.urandom(4)
        n = len(payload)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        return b"\x82" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    with serving(gen) as server:
        host, port = server.address
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            s.sendall(masked(pack({"t": "hello", "v": 1, "token": TOKEN, "codec": "jpeg", "quality": 90})))
            got = b""
            while b"welcome" not in got:  # the handshake's answer, then the welcome: joined
                got += s.recv(65536)
            t0 = time.perf_counter()
            server.stop()  # the client reads nothing from here on
            took = time.perf_counter() - t0
        server.stop()
    assert CLOSE_TIMEOUT <= 1.0 and took < 5.0, took  # websockets' own default would make this ≥ 10 s
    assert "joined (1 connected)" in capsys.readouterr().err


@pytest.mark.slow  # two server processes start (torch import): ~10 s on 2 idle cores
@pytest.mark.parametrize("inflight", [1, 2])
def test_server_killed_and_restarted_mid_run(gen, faces, portrait_png, tmp_path, capsys, inflight):
    """SIGKILL the server mid-run, start it again on the same port: the client never crashes, no output frame
    is black (the last animated frame is held), it says so once, reconnects by itself and animates again."""

    from remotedata import PacedCapture

    from lia_live.model.checkpoint import save_generator

    ckpt = save_generator(gen, tmp_path / "tiny.safetensors")
    proc, port = _start_server(ckpt, 0)
    cap = PacedCapture(driving(faces[0], 40), period=0.01)
    out = Collect()
    anim = RemoteAnimator(f"127.0.0.1:{port}", TOKEN, timeout=1.0, inflight=inflight)
    marks: dict = {}
    procs = [proc]

    def until(cond) -> bool:
        return _until(cond, 60.0)

    def chaos() -> None:
        try:
            assert until(lambda: len(out.frames) >= 15)
            proc.kill()
            proc.wait()
            assert until(lambda: not anim.stats()["connected"])
            marks["lost"] = len(out.frames)
            procs.append(_start_server(ckpt, port)[0])
            assert until(lambda: anim.reconnects >= 1)
            marks["back"] = len(out.frames)
            assert until(lambda: len(out.frames) >= marks["back"] + 15)
        finally:
            cap.end()

    helper = threading.Thread(target=chaos)
    helper.start()
    try:
        stats = run_live(_cfg(portrait_png), capture=cap, animator=anim, extra_outputs=[out])
    finally:
        helper.join(90)
        anim.close()
        for p in procs:
            p.kill()
            p.wait()
    assert stats["exit_code"] == 0 and "lost" in marks and "back" in marks, marks
    assert len(out.frames) >= marks["back"] + 15
    assert min(float(f.mean()) for f in out.frames) > 20  # never black
    assert anim.held_frames > 0 and anim.reconnects == 1
    after = out.frames[marks["back"] + 2:]
    assert any(not np.array_equal(a, b) for a, b in zip(after, after[1:]))  # animating again, not held
    err = capsys.readouterr().err
    assert err.count("remote: lost the server") == 1 and err.count("is back; animating again") == 1


def test_tls_with_a_given_certificate(gen, faces, tmp_path):
    import shutil
    import subprocess

    from lia_live.remote import RemoteServer, ServeConfig

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = RemoteServer(Animator(gen), ServeConfig(port=0, tls_cert=cert, tls_key=key), TOKEN)
    host, port = server.start()
    try:
        anim = RemoteAnimator(f"{host}:{port}", TOKEN, ca=cert)
        assert anim.uri.startswith("wss://")
        anim.set_source(faces[0])
        assert anim.step(faces[0]).shape == (64, 64, 3)
        anim.close()
        with pytest.raises(UserError, match="cannot reach"):  # plain ws:// to a TLS server
            RemoteAnimator(f"{host}:{port}", TOKEN, timeout=1.0)
    finally:
        server.stop()
    with pytest.raises(UserError, match="TLS needs both tls_cert and tls_key"):
        RemoteServer(Animator(gen), ServeConfig(port=0, tls_cert=cert), TOKEN)


def test_stats_show_round_trip_and_server_time(gen, faces, portrait_png, capsys):
    with serving(gen) as server:
        anim = RemoteAnimator(address(server), TOKEN)
        try:
            _, stats = _run(_cfg(portrait_png).replace(run={"stats_every": 0.01}), driving(faces[0], 8), anim)
        finally:
            anim.close()
    remote = stats["remote_ms_mean"]
    assert set(remote) == {"rtt", "server"} and remote["rtt"] >= remote["server"] > 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "| remote ms: rtt " in ln]
    assert lines and " server " in lines[-1]


def test_every_render_plan_matches_the_local_animator(gen, faces):
    """The speculative one-trip plan and every explicit fallback (power changed, reference = this frame,
    a stored reference, absolute, the neutral pose, offsets) give the local animator's image (PNG: exact up
    to the uint8 transfer), with one round trip per step once the arguments settle."""
    crops = [torch.from_numpy(f[:, 12:84]).permute(2, 0, 1)[None].float() for f in driving(faces[0], 10)]
    crops = [torch.nn.functional.interpolate(c, size=64, mode="area").round() / 127.5 - 1 for c in crops]
    local = Animator(gen)
    local.set_source(faces[1])
    off = torch.zeros(1, 8)
    off[0, 2] = 0.4
    with serving(gen) as server:
        anim = RemoteAnimator(address(server), TOKEN, codec="png")
        anim.set_source(faces[1])
        ref_r = ref_l = None
        for i, x in enumerate(crops):
            a, la = anim.motion(x), local.motion(x)
            assert torch.equal(a, la)
            if i == 0:
                ref_r, ref_l = a, la
            args = [(a, a, 1.0, None), (a, a, 0.5, None), (a, ref_r, 1.0, None), (a, ref_r, 1.0, None),
                    (a, None, 1.0, None), (None, ref_r, 1.0, off), (a, ref_r, 1.5, off), (a, ref_r, 1.5, off),
                    (a, ref_r, 1.5, off), (a, a, 1.0, None)][i]
            largs = tuple(la if v is a else ref_l if v is ref_r else v for v in args)
            got = anim.render(*args)
            want = local.render(*largs).clamp(-1, 1)
            assert (got - want).abs().max().item() <= 1.01 / 127.5, i
        trips = anim.stats()["round_trips"]
        anim.close()
    # steps 0, 3, 7, 8 hit the speculative plan (1 trip); the others needed an explicit render (2 trips)
    assert trips == 10 + 6


def test_delay_40ms_rtt_through_a_user_space_relay(gen, faces, portrait_png):
    """40 ms RTT (a relay adding 20 ms each way; no loss: see the netem test): every frame arrives, each round
    trip takes at least the RTT, and the frames are exactly those of a run without delay (PNG)."""
    from lia_live.remote.netsim import DelayProxy

    frames = driving(faces[0], 20)
    with serving(gen) as server:
        direct = RemoteAnimator(address(server), TOKEN, codec="png")
        try:
            want, _ = _paced_run(portrait_png, direct, frames, period=0.0)
        finally:
            direct.close()
        proxy = DelayProxy(server.address, 0.020)
        port = proxy.start()
        try:
            anim = RemoteAnimator(f"127.0.0.1:{port}", TOKEN, codec="png")
            try:
                out, stats = _paced_run(portrait_png, anim, frames, period=0.0)
            finally:
                anim.close()
        finally:
            proxy.stop()
    assert stats["frames"] == len(out.frames) == len(want.frames) == len(frames)
    assert min(anim.rtt_ms) >= 40.0 and stats["remote_ms_mean"]["rtt"] >= 40.0
    assert all(np.array_equal(a, b) for a, b in zip(want.frames, out.frames))
    assert anim.stats()["reconnects"] == 0


def test_serve_on_a_busy_port_is_one_line_exit_2(gen, tmp_path, capsys):
    from lia_live.cli.live import main
    from lia_live.model.checkpoint import save_generator

    ckpt = save_generator(gen, tmp_path / "tiny.safetensors")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["serve", "--checkpoint", str(ckpt), "--device", "cpu", "--backend", "eager", "--port", str(port),
                   "--token", TOKEN])
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if "error" in ln]
    assert rc == 2 and captured.out == "" and len(errors) == 1
    assert errors[0] == f"lia-live: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_two_frames_in_flight_lag_one_frame_exactly(gen, faces, portrait_png):
    """``inflight=2`` (for slow links): frame i shows what the local run showed for frame i − 1 (PNG: exactly),
    the first frame shows the portrait itself, nothing is black, and no extra round trips are made."""
    frames = driving(faces[0], 12)
    local, _ = _run(_cfg(portrait_png), frames, Animator(gen))
    with serving(gen) as server:
        anim = RemoteAnimator(address(server), TOKEN, codec="png", inflight=2)
        try:
            remote, stats = _run(_cfg(portrait_png), frames, anim)
        finally:
            anim.close()
    assert len(remote) == len(local) == stats["frames"] == 12
    assert all(np.array_equal(remote[i], local[i - 1]) for i in range(1, 12))
    assert not np.array_equal(remote[0], local[0]) and float(remote[0].mean()) > 20
    # 11 replies read (the 12th frame's never is), and two explicit renders when the reference is stored:
    # the frame already in flight then was sent with the old plan
    assert anim.stats()["round_trips"] == 11 + 2


def test_a_crop_sent_ahead_stands_in_for_a_dropped_frame(gen, faces):
    """A live camera's newest-frame hand-off may drop a frame whose crop the tracking thread already sent: the
    next frame, not sent ahead (one crop ahead at most), takes that crop's result (ready sooner) instead of a
    new round trip, and no reply is left behind. A crop the tracking thread never cut (a reference frame)
    goes on its own."""
    crops = [torch.from_numpy(f[:, 12:84]).permute(2, 0, 1)[None].float() for f in driving(faces[0], 4)]
    crops = [torch.nn.functional.interpolate(c, size=64, mode="area").round() / 127.5 - 1 for c in crops]
    local = Animator(gen)
    local.set_source(faces[1])
    with serving(gen) as server:
        anim = RemoteAnimator(address(server), TOKEN, codec="png")
        anim.set_source(faces[1])
        anim.prefetch(crops[0])
        anim.prefetch(crops[1])  # one already waits: not sent
        a = anim.motion(crops[1])  # the model stage took frame 1 (frame 0 was dropped)
        assert torch.equal(a, local.motion(crops[0])) and anim.stats()["sent_ahead"] == 1
        want = local.render(local.motion(crops[0]), None, 1.0, None).clamp(-1, 1)
        assert (anim.render(a, None, 1.0, None) - want).abs().max().item() <= 1.01 / 127.5
        anim.prefetch(crops[2])
        assert torch.equal(anim.motion(crops[3]), local.motion(crops[3]))  # a crop cut later: never stands in
        assert torch.equal(anim.motion(crops[2]), local.motion(crops[2]))  # ... its reply was kept for it
        trips = anim.stats()["round_trips"]
        assert torch.equal(anim.motion(crops[0]), local.motion(crops[0]))  # long forgotten: sent again
        assert anim.stats()["round_trips"] == trips + 1 == 5 and not anim._early and not anim._sent
        anim.close()


def test_the_server_reads_requests_ahead_each_with_its_own_state(gen, faces):
    """Two steps sent back to back, each storing its own reference: the server reads the second while the first
    is still queued (the model step is held back until it has: checked), yet each is rendered with the
    reference it stored, and the replies come in order."""
    x = torch.from_numpy(driving(faces[0], 1)[0][:, 12:84]).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=64, mode="area").round() / 127.5 - 1
    local = Animator(gen)
    local.set_source(faces[1])
    alpha = local.motion(x)
    refs = [torch.zeros_like(alpha), alpha * 0.5]
    with serving(gen) as server, connect(f"ws://{address(server)}") as ws:
        ws.send(pack({"t": "hello", "token": TOKEN, "codec": "png"}))  # replies in PNG: exact
        session = unpack(ws.recv(timeout=5))[0]["session"]
        assert _until(lambda: len(server.sessions) == 1, 10.0)  # added just after the welcome is sent
        client = next(iter(server.sessions))
        steps, seen = server.worker._steps, []

        def held_back(jobs):  # the model thread: wait until the reader has read (and stored) the second ref
            deadline = time.monotonic() + 10
            while client.ref is not None and not torch.equal(client.ref, refs[1]) and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(None if client.ref is None else client.ref.clone())
            steps(jobs)

        server.worker._steps = held_back
        portrait = resize(faces[1], 64)  # as RemoteAnimator.set_source sends it
        ws.send(pack({"t": "source", "session": session, "seq": 1}, encode_image(portrait, "png")))
        assert unpack(ws.recv(timeout=10))[0]["seq"] == 1
        data = encode_image(np.round((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8), "png")
        for seq, ref in ((2, refs[0]), (3, refs[1])):
            ws.send(pack({"t": "step", "session": session, "seq": seq, "source": 0, "set_ref": ref[0].tolist(),
                          "render": {"alpha": "frame", "ref": "stored", "power": 1.0, "offset": None}}, data))
        for seq, ref in ((2, refs[0]), (3, refs[1])):
            header, payload = unpack(ws.recv(timeout=10))
            got = cv2.cvtColor(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            want = local.render(alpha, ref, 1.0, None).clamp(-1, 1)[0].permute(1, 2, 0).numpy()
            assert header["seq"] == seq and np.abs(got / 127.5 - 1 - want).max() <= 1.01 / 127.5, seq
    assert len(seen) == 2 and all(torch.equal(r, refs[1]) for r in seen)  # the session had moved on both times


def test_images_are_checked_from_their_header_before_decoding():
    import io

    from PIL import Image

    from lia_live.remote.protocol import ProtocolError, decode_image

    ok = np.full((64, 64, 3), 7, np.uint8)
    assert np.array_equal(decode_image(encode_image(ok, "png"), 64), ok)
    with pytest.raises(ProtocolError, match="image is 65x64, expected 64x64"):
        decode_image(encode_image(np.zeros((64, 65, 3), np.uint8), "jpeg"), 64)
    bmp = io.BytesIO()
    Image.fromarray(ok).save(bmp, format="BMP")
    with pytest.raises(ProtocolError, match="image format BMP is not allowed"):
        decode_image(bmp.getvalue(), 64)
    for side, why in ((6000, "image is 6000x6000"), (20000, r"not an image \(DecompressionBombError\)")):
        with pytest.raises(ProtocolError, match=why):  # 45 bytes that claim a huge picture: refused from the header
            decode_image(_png_header(side, side), 64)
    with pytest.raises(ProtocolError, match="not an image"):
        decode_image(b"\xff\xd8garbage", 64)


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR chunk (8-bit RGB) and IEND: the header of a picture with no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")



def test_cli_remote_with_the_token_from_the_environment(gen, faces, portrait_png, tmp_path, capsys, monkeypatch):
    import json

    from lia_live.cli.live import main

    folder = tmp_path / "drive"
    folder.mkdir()
    for i, f in enumerate(driving(faces[0], 6)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    args = ["--source", str(portrait_png), "--driving", str(folder), "--no-vcam", "--output", str(tmp_path / "o"),
            "--crop", "none", "--source-crop", "none", "--stats-json", str(tmp_path / "s.json")]
    with serving(gen) as server:
        monkeypatch.delenv("LIA_REMOTE_TOKEN", raising=False)
        assert main([*args, "--remote", address(server)]) == 2
        assert "remote mode needs the server's token: --remote-token or $LIA_REMOTE_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("LIA_REMOTE_TOKEN", TOKEN)
        assert main([*args, "--remote", address(server)]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 6 and set(stats["remote_ms_mean"]) == {"rtt", "server"}
    assert len(list((tmp_path / "o").glob("*.png"))) == 6
    assert "round trips, 0 reconnections, 0 frames held" in capsys.readouterr().err


def test_a_remote_client_runs_torch_on_one_thread_unless_told(gen, faces, portrait_png, monkeypatch):
    """The client runs no model: one torch thread (no OpenMP pool spinning beside the tracker), ``--threads``
    when given; the caller's setting is back afterwards."""
    from lia_live.remote import RemoteConfig, run_remote

    monkeypatch.setenv("LIA_REMOTE_TOKEN", TOKEN)
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with serving(gen) as server:
            for threads in (None, 2):
                cfg = _cfg(portrait_png).replace(model={"threads": threads})
                run_remote(cfg, RemoteConfig(remote=address(server)),
                           run=lambda c, animator: seen.append(torch.get_num_threads()) or {})
                seen.append(torch.get_num_threads())
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 3, 2, 3]


@pytest.mark.parametrize("device,backend,want", [("cpu", "onnxruntime", 1), ("cpu", "tensorrt", 1),
                                                 ("cuda", "eager", 1), ("cpu", "eager", 3)])
def test_serve_runs_torch_on_one_thread_when_torch_does_not_run_the_model(device, backend, want):
    """``lia-live serve`` after loading the model: one torch thread unless a CPU backend runs the model in torch
    (no OpenMP pool spinning beside onnxruntime's own threads or a GPU's work)."""
    from types import SimpleNamespace

    from lia_live.remote.server import settle_threads

    anim = SimpleNamespace(device=torch.device(device), backend=SimpleNamespace(name=backend))
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert settle_threads(anim) == want == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
