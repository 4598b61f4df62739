"""The GPU first-run bugs (issue 19) shown on the CPU, where their class can be shown there.

No GPU is needed: devices written in two forms (``cpu:0`` vs ``cpu``, as ``cuda`` vs ``cuda:0``), CUDA-graph
capture with stand-ins for the ``torch.cuda`` calls, warm-up order and threads in the live loop, source
features copied only on change, the reduced-precision check and its fp32 fallback, fp16 range in the
modulated convolution, and the pipeline's stage-start hook.
"""

from __future__ import annotations

import contextlib
import copy
import threading

import cv2
import numpy as np
import pytest
import torch
from livedata import Collect, ReplayGraph
from media import face_card

from lia_live.animator import Animator
from lia_live.backends import create_backend
from lia_live.pipeline import END, Handoff, Pipeline
from lia_live.runtime import canonical_device, resolve_device, same_device

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: OpenMP stalls on a busy 2-core box cost more


# ---- helpers --------------------------------------------------------------------------------------------
def _frames(n, events=None):
    """n 160×120 frames with the card moving; ``events`` gets ("read", thread) as each is taken."""
    face = face_card(80)
    for i in range(n):
        if events is not None:
            events.append(("read", threading.get_ident()))
        f = np.full((120, 160, 3), 80, np.uint8)
        x = 40 + int(10 * np.sin(i / 3))
        f[20:100, x:x + 80] = face
        yield f


def _run_live(tmp_path, anim, n=6, compose="crop", frame_path="host", pipeline=True, events=None):
    from lia_live.capture import IterableCapture
    from lia_live.live import LiveConfig, run_live

    src = tmp_path / "card.png"
    cv2.imwrite(str(src), cv2.cvtColor(face_card(), cv2.COLOR_RGB2BGR))
    sink = Collect()
    cfg = LiveConfig(sources=(src,)).replace(
        motion={"crop": "none", "source_crop": "none"},
        output={"size": (160, 120), "vcam": False, "compose": compose},
        run={"stats_every": 0, "frame_path": frame_path, "pipeline": pipeline})
    stats = run_live(cfg, capture=IterableCapture(_frames(n, events), fps=30), animator=anim, extra_outputs=[sink])
    return stats, sink.frames


def _capture(events):
    def capture(fn, inputs, pool, warmup):
        events.append(("capture", threading.get_ident()))
        with torch.no_grad():
            out = fn(*inputs)
        return ReplayGraph(fn, inputs, out), out
    return capture


def _cudagraph(gen, events, precision="fp32", **kw):
    from lia_live.backends.cudagraph import CudaGraphBackend

    return CudaGraphBackend(gen, device="cpu", precision=precision, capture=_capture(events), **kw)


# ---- 1. one device form -----------------------------------------------------------------------------------
def test_devices_resolve_to_the_form_tensors_report(monkeypatch):
    assert torch.device("cpu:0") != torch.zeros(1).device  # the trap itself
    assert canonical_device("cpu:0") == canonical_device("cpu") == torch.zeros(1, device="cpu:0").device
    assert same_device("cpu:0", torch.zeros(1).device) and resolve_device("cpu:0") == resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert canonical_device("cuda") == torch.device("cuda:1") and canonical_device("cuda:0") == torch.device("cuda:0")
    assert same_device("cuda", "cuda:1") and not same_device("cuda", "cuda:0")
    assert resolve_device("cuda") == "cuda:1" and resolve_device("cuda:0") == "cuda:0"
    assert resolve_device("auto") == "cuda:1"


def test_every_module_takes_cpu0_like_cpu(tiny_generator):
    from lia_live.frames import FrameUploader
    from lia_live.output import Compositor
    from lia_live.tracking import center_box

    anim = Animator(tiny_generator, device="cpu:0")
    assert anim.device == anim.backend.device == torch.zeros(1).device
    assert FrameUploader("cpu:0").device == torch.zeros(1).device
    portrait = face_card(120)
    comp, ref = Compositor(160, 120, "paste"), Compositor(160, 120, "paste")
    comp.set_source_tensor(portrait, center_box(portrait), 64, torch.device("cpu:0"))
    ref.set_source_tensor(portrait, center_box(portrait), 64, "cpu")
    face = torch.rand(1, 3, 64, 64) * 2 - 1  # on "cpu", as every CPU tensor
    assert torch.equal(comp.compose_tensor(face, copy=True), ref.compose_tensor(face, copy=True))
    assert comp.passthrough_tensor(torch.from_numpy(portrait)) is comp.passthrough_tensor(torch.from_numpy(portrait))


def test_live_paste_on_the_device_path_with_an_indexed_device(tmp_path, tiny_generator):
    """The paste-mode crash of issue 19 item 1, on the CPU: device path, animator on "cpu:0"."""
    stats, frames = _run_live(tmp_path, Animator(tiny_generator, device="cpu:0"), n=4, compose="paste",
                              frame_path="device")
    assert stats["frames"] == len(frames) == 4 and frames[0].shape == (120, 160, 3)


# ---- 2, 4. capture: thread-local, on the inputs' GPU --------------------------------------------------------
class _FakeCuda:
    """Stand-ins for the torch.cuda calls of capture_cuda_graph, recording what they were called with."""

    def __init__(self):
        self.log, self.current = [], None

    @contextlib.contextmanager
    def device(self, d):
        self.log.append(("device", d))
        prev, self.current = self.current, d
        yield
        self.current = prev

    def Stream(self, d=None):  # noqa: N802 - torch's name
        return _FakeStream(self, d)

    def current_stream(self, d=None):
        return _FakeStream(self, d)

    @contextlib.contextmanager
    def stream(self, s):
        self.log.append(("stream", s.device))
        yield

    def CUDAGraph(self):  # noqa: N802
        return object()

    @contextlib.contextmanager
    def graph(self, g, pool=None, capture_error_mode="global"):
        self.log.append(("graph", pool, capture_error_mode, self.current))
        yield


class _FakeStream:
    def __init__(self, cuda, device):
        self.cuda, self.device = cuda, device

    def wait_stream(self, other):
        pass


def test_capture_is_thread_local_and_on_the_inputs_device(monkeypatch):
    from lia_live.backends import cudagraph

    fake = _FakeCuda()
    for name in ("device", "Stream", "current_stream", "stream", "CUDAGraph", "graph"):
        monkeypatch.setattr(cudagraph.torch.cuda, name, getattr(fake, name))
    calls = []
    x = torch.ones(2)

    def fn(t):
        calls.append(fake.current)
        return t * 2

    pool = object()
    graph, out = cudagraph.capture_cuda_graph(fn, [x], pool, warmup=2)
    assert calls == [x.device] * 3  # two warm-ups and the capture, all with the inputs' device current
    assert fake.log[0] == ("device", x.device)
    assert ("graph", pool, "thread_local", x.device) in fake.log
    torch.testing.assert_close(out, x * 2)


def test_warm_up_runs_inside_the_animators_cuda_device(monkeypatch, tiny_generator):
    import lia_live.animator as animator_mod
    from lia_live.runtime import device_context

    entered = []
    monkeypatch.setattr(torch.cuda, "device", lambda d: entered.append(d) or contextlib.nullcontext())
    with device_context("cuda:1"):
        pass
    assert entered == [torch.device("cuda:1")]
    with device_context("cpu:0"):
        pass
    assert entered == [torch.device("cuda:1")]  # no CUDA call for a CPU device
    anim = Animator(tiny_generator)
    calls = []
    monkeypatch.setattr(anim.backend, "warmup", lambda: calls.append("warmup"))

    @contextlib.contextmanager
    def inside(d):
        calls.append(("enter", d))
        yield
        calls.append(("exit", d))

    monkeypatch.setattr(animator_mod, "device_context", inside)
    monkeypatch.setattr(animator_mod, "synchronize", lambda d: calls.append(("sync", d)))
    anim.warm_up()
    assert calls == [("enter", anim.device), "warmup", ("exit", anim.device), ("sync", anim.device)]


# ---- 2, 3, 5. warm-up before the stages take frames, on the thread that calls --------------------------------
@pytest.mark.parametrize("pipeline", [True, False])
def test_graphs_are_captured_before_the_first_frame_on_the_model_thread(tmp_path, tiny_generator, monkeypatch,
                                                                          pipeline):
    import lia_live.animator as animator_mod

    events: list = []
    monkeypatch.setattr(animator_mod, "synchronize", lambda device: events.append(("sync", threading.get_ident())))
    backend = _cudagraph(tiny_generator, events)
    motion = backend.encode_motion

    def encode_motion(img):
        events.append(("frame", threading.get_ident()))
        return motion(img)

    monkeypatch.setattr(backend, "encode_motion", encode_motion)
    stats, _ = _run_live(tmp_path, Animator(backend), n=5, pipeline=pipeline, events=events)
    kinds = [k for k, _ in events]
    assert stats["frames"] == 5
    # warm-up: one motion call (captures motion b1), then synthesis (captures synthesis b1), then the sync;
    # the first camera frame is read only after all of that, and nothing is captured later
    assert kinds[:4] == ["frame", "capture", "capture", "sync"], kinds
    assert kinds[4] == "read" and kinds.count("capture") == 2 and kinds.count("sync") == 1
    model = {t for k, t in events if k in ("capture", "frame", "sync")}
    assert len(model) == 1  # captured, synchronised and called on one thread
    assert (model == {threading.get_ident()}) is (not pipeline)  # pipelined: the model stage's own thread
    assert sorted(backend.graphs) == [("motion", 1), ("synthesis", 1)]


def test_compiled_model_is_warmed_up_and_called_on_one_thread(tmp_path, tiny_generator, monkeypatch):
    from lia_live.backends import compiled

    monkeypatch.setattr(compiled.torch, "compile", lambda module, **kw: module)  # eager stand-in, same calls
    backend = compiled.CompileBackend(tiny_generator, device="cpu", mode="default", cache=False)
    threads: list = []
    call = backend._call

    def record(kind, fn, *xs):
        threads.append(threading.get_ident())
        return call(kind, fn, *xs)

    monkeypatch.setattr(backend, "_call", record)
    stats, _ = _run_live(tmp_path, Animator(backend), n=4)
    assert stats["frames"] == 4
    assert len(threads) == 2 * (backend.warmup_calls + 4)  # warm-up + frames, motion and synthesis each
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()  # all on the model stage's thread


def test_compiled_cuda_graph_calls_all_run_on_the_backends_own_thread(tmp_path, tiny_generator, monkeypatch):
    """Whoever calls — two live sessions with the same animator (two model-stage threads, as the control panel's
    Stop/Start makes), the main thread, another thread — the compiled code runs on one thread, in the caller's
    autograd mode, and its errors reach the caller."""
    from lia_live.backends import compiled

    calls: list = []

    def fake_compile(module, **kw):
        def run(*xs):
            calls.append((threading.get_ident(), torch.is_inference_mode_enabled()))
            return module(*xs)
        return run

    monkeypatch.setattr(compiled.torch, "compile", fake_compile)
    backend = compiled.CompileBackend(tiny_generator, device="cpu", mode="default", cache=False, one_thread=True)
    anim = Animator(backend)
    for _ in range(2):
        stats, _ = _run_live(tmp_path, anim, n=3)
        assert stats["frames"] == 3
    live = len(calls)
    assert live == 2 * 2 * (backend.warmup_calls + 3)  # two sessions: warm-up + 3 frames, motion + synthesis
    img = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        backend.encode_motion(img)
    other = threading.Thread(target=lambda: backend.encode_motion(img))
    other.start()
    other.join()
    assert {t for t, _ in calls} == {backend.worker.thread.ident} != {threading.get_ident()}
    assert all(inference for _, inference in calls[:live]) and not calls[live][1]  # the caller's mode
    monkeypatch.setattr(backend, "_motion", lambda x: (_ for _ in ()).throw(ValueError("inside the graph")))
    with pytest.raises(ValueError, match="inside the graph"):
        backend.encode_motion(img)


# ---- 7. source features copied only when the source changes --------------------------------------------------
def test_static_source_features_are_copied_only_when_the_source_changes(tiny_generator):
    events: list = []
    anim = Animator(_cudagraph(tiny_generator, events))
    eager = Animator(copy.deepcopy(tiny_generator))
    a, b = face_card(64), np.ascontiguousarray(face_card(64)[:, ::-1])
    drive = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        for src in (a, b, a):
            anim.set_source(src)
            eager.set_source(src)
            for _ in range(3):
                torch.testing.assert_close(anim.render(anim.motion(drive), None),
                                           eager.render(eager.motion(drive), None), rtol=0, atol=0)
        anim.render_latent(anim.latent(None).expand(3, -1))  # batch 3: features expanded (views) per call
        anim.render_latent(anim.latent(None).expand(3, -1))
    synth1, synth3 = anim.backend.graphs[("synthesis", 1)], anim.backend.graphs[("synthesis", 3)]
    n_feats = len(synth1.copies) - 1
    # latents: at the capture and in every call (9); features: once per source (a, b, a), never per call
    assert synth1.copies == [1 + 9] + [3] * n_feats and synth1.replays == 9
    assert synth3.copies == [1 + 2] + [1] * n_feats


# ---- 6. reduced precision checked against fp32 on the source; fp32 when it diverges ---------------------------
def _spoil(fc):
    """Scale the motion encoder's last layer of a backend's reduced-precision copy: its α diverges."""
    with torch.no_grad():
        for p in fc.parameters():
            p.mul_(40)


@pytest.mark.parametrize("kind", ["eager", "cudagraph"])
def test_reduced_precision_that_diverges_falls_back_to_fp32_with_one_line(tiny_generator, kind, capsys):
    events: list = []
    if kind == "eager":
        backend = create_backend("eager", tiny_generator, precision="bf16")
        _spoil(backend.model.enc.fc)
    else:
        backend = _cudagraph(tiny_generator, events, precision="bf16")
        _spoil(backend._motion.fc)
    anim, ref = Animator(backend), Animator(copy.deepcopy(tiny_generator))
    anim.set_source(face_card(64))
    ref.set_source(face_card(64))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"WARNING: {kind} bf16 diverges from fp32" in err[0] and "running fp32" in err[0]
    assert backend.precision == "fp32" and backend.dtype == torch.float32
    drive = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(anim.render(anim.motion(drive)), ref.render(ref.motion(drive)), rtol=0, atol=0)


def test_reduced_precision_that_agrees_is_kept_and_the_check_can_be_turned_off(tiny_generator, capsys):
    ok = create_backend("eager", tiny_generator, precision="bf16")
    Animator(ok).set_source(face_card(64))
    assert ok.precision == "bf16" and ok.validated is not None and all(c.ok for c in ok.validated)
    off = create_backend("eager", tiny_generator, precision="bf16", options={"check": "off"})
    _spoil(off.model.enc.fc)
    Animator(off).set_source(face_card(64))
    assert off.precision == "bf16" and off.validated is None
    assert "WARNING" not in capsys.readouterr().err


# ---- 6. fp16 range: pre-normalised modulated convolution --------------------------------------------------------
@pytest.mark.parametrize("upsample", [False, True])
def test_fp16_modulated_conv_stays_finite_where_the_plain_form_overflows(upsample):
    from lia_live.model.layers import ModulatedConv2d

    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, 3, 4, upsample=upsample).eval()
    with torch.no_grad():
        conv.modulation.bias.fill_(300.0)  # styles of a few hundred, as real weights give
        x, style = torch.randn(2, 16, 8, 8) * 300, torch.randn(2, 4)
        want = conv(x, style)  # fp32
        half = copy.deepcopy(conv).half()
        s = half.modulation(style.half())
        assert not torch.isfinite(x.half() * s[:, :, None, None]).all()  # the plain form's first product overflows
        got = half(x.half(), style).float()
    assert torch.isfinite(got).all()
    assert float((got - want).norm() / want.norm()) < 2e-3  # fp16 rounding (2^-11 per value), no more


# ---- a bare GPU machine: OpenCV, no PyAV ----------------------------------------------------------------------
def test_videos_are_read_with_opencv_when_pyav_is_missing(tmp_path, monkeypatch):
    import builtins

    from lia_live.io.video import open_frames

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    frames = list(_frames(5))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    real_import = builtins.__import__

    def no_av(name, *args, **kw):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_av)
    got = list(open_frames(path))
    assert len(got) == 5 and got[0].shape == (120, 160, 3)
    assert np.abs(got[2].astype(int) - frames[2]).mean() < 8  # mp4v: lossy, but the same picture


# ---- the stage-start hook ---------------------------------------------------------------------------------------
def test_stage_start_hooks_run_on_their_threads_before_any_stage_takes_an_item():
    events: list = []
    pipe = Pipeline()
    n = [0]

    def source(_):
        events.append(("source", threading.get_ident()))
        n[0] += 1
        return n[0] if n[0] <= 3 else END

    def slow_start():
        events.append(("start-model", threading.get_ident()))

    a, b = Handoff(False, name="a"), Handoff(False, name="b")
    pipe.stage("source", source, None, a, on_start=lambda: events.append(("start-source", threading.get_ident())))
    pipe.stage("model", lambda x: events.append(("model", threading.get_ident())) or x * 10, a, b,
               on_start=slow_start)
    pipe.start()
    got = []
    while (item := b.get(pipe.stop, timeout=5)) is not END:
        got.append(item)
    pipe.join()
    pipe.raise_errors()
    assert got == [10, 20, 30]
    kinds = [k for k, _ in events]
    assert sorted(kinds[:2]) == ["start-model", "start-source"] and "start" not in "".join(kinds[2:])
    threads = dict((k, t) for k, t in events)
    assert threads["start-model"] == threads["model"] and threads["start-source"] == threads["source"]
    assert threads["model"] != threads["source"] != threading.get_ident()


def test_a_failing_start_hook_stops_the_pipeline_and_is_raised():
    pipe = Pipeline()
    taken = []
    out = Handoff(False, name="out")

    def boom():
        raise RuntimeError("capture failed")

    pipe.stage("source", lambda _: taken.append(1) or 1, None, Handoff(False, name="a"))
    pipe.stage("model", lambda x: x, Handoff(False, name="in"), out, on_start=boom)
    pipe.start()
    assert out.get(pipe.stop, timeout=5) is END
    pipe.join()
    with pytest.raises(RuntimeError, match="capture failed"):
        pipe.raise_errors()
    assert taken == []  # the source stage never ran: every stage waits for all hooks


def test_start_returns_on_the_callers_stop_while_a_hook_still_works():
    release, stop = threading.Event(), threading.Event()
    pipe = Pipeline()
    out = Handoff(False, name="out")
    pipe.stage("model", lambda x: x, Handoff(False, name="in"), out, on_start=release.wait)
    stop.set()  # e.g. Ctrl-C during a long compile
    pipe.start(stop)  # must not wait for the hook
    assert pipe.stop.is_set() and not release.is_set()
    release.set()
    assert out.get(threading.Event(), timeout=5) is END  # the stage ends without taking an item
    pipe.join()
