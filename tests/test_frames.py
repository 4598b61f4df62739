"""The tensor frame path (lia_live.frames, Compositor.*_tensor) against the numpy/OpenCV path it replaces.

Tolerances come from measurements on skimage's astronaut (see docs/live.md, "GPU-resident frame path"):
bilinear crops differ from cv2.warpAffine by ≤ 0.26 grey levels on average and ≤ 3.3 at sharp edges (cv2
quantises sample positions to 1/32 px and rounds to uint8; the tensor path does neither); area crops agree
to float rounding (≤ 0.51 before rounding); the compositor agrees within 0.2 grey levels on average over the
pasted region (≤ 3 max) and exactly outside it.
"""

import numpy as np
import pytest
import torch

from lia_live.frames import (
    DeviceFrames,
    FrameDownloader,
    FrameUploader,
    HostFrames,
    _HostBuffer,
    check_frame,
    crop_to_model,
    face_to_255,
    frame_path,
    resize_hwc,
    to_model,
)
from lia_live.imaging import from_tensor, resize, to_tensor
from lia_live.output import Compositor
from lia_live.tracking import CropBox, center_box, crop_square

MEAN_TOL = 0.4  # grey levels, mean |tensor − cv2| over a crop (measured ≤ 0.26)
MAX_TOL = 4.0  # grey levels, worst pixel (measured ≤ 3.3)


@pytest.fixture(scope="module")
def frames(astronaut):
    """640×480 and 1280×720 frames covered edge to edge by the astronaut (texture at every border)."""
    import cv2

    out = {}
    for w, h in [(640, 480), (1280, 720)]:
        big = cv2.resize(astronaut, (w, w), interpolation=cv2.INTER_AREA if w < 512 else cv2.INTER_CUBIC)
        out[(w, h)] = np.ascontiguousarray(big[(w - h) // 2:(w - h) // 2 + h])  # (h, w, 3)
    return out


def _grey(x: torch.Tensor) -> np.ndarray:
    """(1, 3, S, S) in [-1, 1] → float64 (S, S, 3) in grey levels, unrounded."""
    return ((x.double() + 1) * 127.5)[0].permute(1, 2, 0).numpy()


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.mean()), float(d.max())


BOXES = [  # (frame size, box, S, path crop_square takes)
    ((640, 480), CropBox(300.3, 210.7, 240.0), 256, "linear"),  # upscale
    ((640, 480), CropBox(320.0, 230.0, 370.0), 256, "linear"),  # mild downscale, just under the area switch
    ((640, 480), CropBox(25.5, 30.2, 300.0), 256, "linear"),  # partly outside (top-left)
    ((640, 480), CropBox(610.0, 470.0, 180.5), 128, "linear"),  # partly outside (bottom-right)
    ((640, 480), CropBox(-300.0, 240.0, 150.0), 128, "linear"),  # wholly outside: replicated edge
    ((640, 480), CropBox(320.0, 240.0, 420.0), 256, "area"),
    ((640, 480), CropBox(40.0, 400.0, 500.0), 128, "area"),  # partly outside, 3.9× downscale
    ((1280, 720), CropBox(640.4, 330.8, 600.0), 256, "area"),
    ((1280, 720), CropBox(640.0, 360.0, 1100.0), 128, "area"),  # heavy (8.6×) downscale, beyond the frame
    ((1280, 720), CropBox(1250.0, 20.0, 330.0), 256, "linear"),  # partly outside (top-right)
]


@pytest.mark.parametrize("size, box, s, path", BOXES)
def test_crop_to_model_matches_crop_square(frames, one_thread, size, box, s, path):
    frame = frames[size]
    assert (box.side > 1.5 * s) == (path == "area")
    ref = crop_square(frame, box, s)  # (S, S, 3) uint8
    x = crop_to_model(torch.from_numpy(frame), box, s)  # (1, 3, S, S)
    assert x.shape == (1, 3, s, s) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    mean, worst = _diff(_grey(x), ref)
    assert mean <= MEAN_TOL and worst <= MAX_TOL, (mean, worst)
    if path == "area":  # exact up to the uint8 rounding of the reference
        assert worst <= 0.6  # 0.5 rounding + float32 running sums
    # and so close to the model input that the old path gave
    assert (x - to_tensor(ref)).abs().max() <= MAX_TOL / 127.5


def test_crop_to_model_detects_a_shift(frames, one_thread):
    """The tolerance is tight enough to catch a half-pixel misplacement of the box."""
    frame = frames[(640, 480)]
    box = CropBox(300.3, 210.7, 240.0)
    moved = CropBox(box.cx + 0.5, box.cy, box.side)
    mean, _ = _diff(_grey(crop_to_model(torch.from_numpy(frame), moved, 256)), crop_square(frame, box, 256))
    assert mean > 2 * MEAN_TOL


def test_crop_to_model_dtype(frames, one_thread):
    x = crop_to_model(torch.from_numpy(frames[(640, 480)]), CropBox(300, 200, 200), 64, dtype=torch.float16)
    assert x.dtype == torch.float16 and x.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("shape, s", [((480, 640), 256), ((256, 256), 256), ((300, 200), 256), ((720, 1280), 128)])
def test_to_model_is_the_centre_square(astronaut, one_thread, shape, s):
    import cv2

    h, w = shape
    frame = np.ascontiguousarray(cv2.resize(astronaut, (w, h), interpolation=cv2.INTER_AREA))
    ref = to_tensor(crop_square(frame, center_box(frame), s))  # the --crop none path of live.py
    x = to_model(torch.from_numpy(frame), s)
    mean, worst = _diff(_grey(x), _grey(ref))
    assert mean <= MEAN_TOL and worst <= MAX_TOL, (mean, worst)
    if (h, w) == (s, s):
        assert worst < 1e-3  # identity: no resampling at all


@pytest.mark.parametrize("src, dst", [((420, 420), (256, 256)), ((512, 512), (128, 128)), ((480, 640), (360, 480)),
                                      ((100, 150), (200, 300))])
def test_resize_hwc_matches_imaging_resize(astronaut, one_thread, src, dst):
    import cv2

    img = np.ascontiguousarray(cv2.resize(astronaut, src[::-1], interpolation=cv2.INTER_AREA))
    ref = resize(img, dst[::-1])  # area when shrinking, cubic when enlarging
    out = resize_hwc(torch.from_numpy(img).float(), *dst).clamp(0, 255).numpy()  # (h, w, 3)
    mean, worst = _diff(out, ref)
    assert out.shape == ref.shape and mean <= 0.3 and worst <= 2.0, (mean, worst)


# ---- compositor -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face(astronaut):
    """A model-like face: float (1, 3, 128, 128) in [-1, 1], and its uint8 (128, 128, 3) rounding."""
    x = crop_to_model(torch.from_numpy(astronaut), CropBox(225.0, 110.0, 180.0), 128)  # (1, 3, S, S)
    x = x + 0.3 * torch.sin(torch.arange(128.0) / 3)  # not exactly a crop of the portrait
    return x, from_tensor(x)[0]


@pytest.mark.parametrize("out_w, out_h", [(1280, 720), (360, 640), (96, 96)])
def test_compose_tensor_crop_matches_numpy(face, one_thread, out_w, out_h):
    x, u8 = face
    comp = Compositor(out_w, out_h, "crop")
    ref = comp.compose(u8)
    for f in (x, torch.from_numpy(u8)):
        out = comp.compose_tensor(f)
        assert out.dtype == torch.uint8 and out.shape == (out_h, out_w, 3)
        mean, worst = _diff(out.numpy(), ref)
        assert mean <= 0.2 and worst <= 1, (mean, worst)


@pytest.mark.parametrize("box, clipped", [(CropBox(225.0, 110.0, 180.0), False), (CropBox(30.0, 20.0, 250.0), True),
                                          (CropBox(480.0, 500.0, 300.0), True), (CropBox(256.0, 256.0, 512.0), False)])
@pytest.mark.parametrize("out_w, out_h", [(1280, 720), (360, 640)])
def test_compose_tensor_paste_matches_numpy(astronaut, face, one_thread, box, clipped, out_w, out_h):
    x, u8 = face
    comp = Compositor(out_w, out_h, "paste")
    comp.set_source(astronaut, box, 128)
    ref = comp.compose(u8)
    comp.set_source_tensor(astronaut, box, 128, "cpu")
    x0, y0, x1, y1 = comp._paste.roi
    m = box.matrix(128)
    k = min(out_w / 512, out_h / 512) / m[0, 0]  # crop → output scale
    assert (k * 128 > min(x1 - x0, y1 - y0) + 2) == clipped  # the pasted square is cut by the portrait's edge
    for f in (x, torch.from_numpy(u8)):
        out = comp.compose_tensor(f).numpy()
        mean, worst = _diff(out[y0:y1, x0:x1], ref[y0:y1, x0:x1])
        assert mean <= 0.3 and worst <= MAX_TOL, (mean, worst)  # measured ≤ 0.2, ≤ 3
        outside = np.ones(out.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(out[outside], ref[outside])  # the portrait and bars, untouched
    assert np.array_equal(comp.compose(u8), ref)  # the numpy path still works after the tensor path ran


def test_compose_tensor_reuses_its_canvas(astronaut, face):
    x, u8 = face
    comp = Compositor(320, 180, "paste")
    comp.set_source_tensor(astronaut, CropBox(225.0, 110.0, 180.0), 128, "cpu")
    a = comp.compose_tensor(x)
    first = a.clone()
    b = comp.compose_tensor(torch.zeros_like(torch.from_numpy(u8)))
    assert b.data_ptr() == a.data_ptr() and not torch.equal(a, first)  # overwritten, as documented
    c = comp.compose_tensor(x, copy=True)
    assert c.data_ptr() != a.data_ptr() and torch.equal(c, first)
    p = comp.passthrough_tensor(torch.from_numpy(astronaut))
    assert p.data_ptr() != a.data_ptr()  # pass-through has its own canvas


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (1080, 1920), (500, 500)])
def test_passthrough_tensor_matches_numpy(astronaut, one_thread, shape):
    import cv2

    frame = np.ascontiguousarray(cv2.resize(astronaut, shape[::-1], interpolation=cv2.INTER_CUBIC))
    comp = Compositor(1280, 720)
    mean, worst = _diff(comp.passthrough_tensor(torch.from_numpy(frame)).numpy(), comp.passthrough(frame))
    assert mean <= 0.05 and worst <= 1, (mean, worst)


def test_compose_tensor_errors(astronaut, face):
    x, u8 = face
    with pytest.raises(RuntimeError, match="set_source_tensor"):
        Compositor(64, 64, "paste").compose_tensor(x)
    comp = Compositor(64, 64, "paste")
    comp.set_source_tensor(astronaut, CropBox(225.0, 110.0, 180.0), 128, "cpu")
    with pytest.raises(ValueError, match="128"):
        comp.compose_tensor(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="meta.*cpu"):  # a face on another device than the source
        comp.compose_tensor(torch.zeros(1, 3, 128, 128, device="meta"))
    with pytest.raises(ValueError, match=r"\(1, 3, S, S\)"):
        comp.compose_tensor(torch.zeros(3, 128, 128))
    with pytest.raises(ValueError, match=r"\(S, S, 3\)"):
        comp.compose_tensor(torch.zeros(3, 128, 128, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 or floating"):
        comp.compose_tensor(torch.zeros(1, 3, 128, 128, dtype=torch.int32))
    with pytest.raises(TypeError, match="numpy"):
        comp.set_source_tensor(torch.from_numpy(astronaut), CropBox(225.0, 110.0, 180.0), 128, "cpu")


def test_face_to_255_clamps_like_from_tensor():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5).expand(1, 3, 5, 5)
    y = face_to_255(x)
    assert y[0, 0, 0].tolist() == [0.0, 0.0, 127.5, 255.0, 255.0]


# ---- host ↔ device ------------------------------------------------------------------------------------------
def test_cpu_upload_download_round_trip(astronaut):
    up, down = FrameUploader("cpu"), FrameDownloader()
    t = up.upload(astronaut)
    assert t.dtype == torch.uint8 and t.shape == (512, 512, 3) and t.device.type == "cpu"
    assert np.shares_memory(t.numpy(), astronaut)  # no copy on the CPU
    a = down.download(t)
    assert np.shares_memory(a, astronaut)  # shared, as documented
    b = down.download(t, copy=True)
    assert not np.shares_memory(b, astronaut) and np.array_equal(b, astronaut)
    flipped = astronaut[:, ::-1]  # a non-contiguous view (e.g. a mirrored camera)
    assert np.array_equal(down.download(up.upload(flipped)), flipped)


def test_host_buffer_is_reused_until_the_shape_changes():
    buf = _HostBuffer(pin=False)
    a, _ = buf.get((4, 6, 3))
    assert buf.get((4, 6, 3))[0] is a and buf.allocations == 1
    b, b_array = buf.get((8, 6, 3))
    assert b is not a and b.shape == (8, 6, 3) and buf.allocations == 2
    assert np.shares_memory(b_array, b.numpy())


@pytest.mark.parametrize("bad, err, msg", [(np.zeros((4, 4, 3), np.float32), TypeError, "uint8"),
                                           (np.zeros((4, 4), np.uint8), ValueError, r"\(H, W, 3\)"),
                                           (np.zeros((4, 4, 4), np.uint8), ValueError, r"\(H, W, 3\)"),
                                           ([[0, 0, 0]], TypeError, "numpy")])
def test_upload_rejects_bad_frames(bad, err, msg):
    with pytest.raises(err, match=msg):
        FrameUploader("cpu").upload(bad)


@pytest.mark.parametrize("bad, err, msg", [(torch.zeros(4, 4, 3), TypeError, "uint8"),
                                           (torch.zeros(3, 4, 4, dtype=torch.uint8), ValueError, r"\(H, W, 3\)"),
                                           (np.zeros((4, 4, 3), np.uint8), TypeError, "torch.Tensor")])
def test_tensor_functions_reject_bad_frames(bad, err, msg):
    with pytest.raises(err, match=msg):
        check_frame(bad)
    with pytest.raises(err, match=msg):
        crop_to_model(bad, CropBox(2, 2, 4), 8)
    with pytest.raises(err, match=msg):
        FrameDownloader().download(bad)
    with pytest.raises(err, match=msg):
        Compositor(8, 8).passthrough_tensor(bad)


def test_crop_to_model_rejects_bad_sizes():
    frame = torch.zeros(8, 8, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="size"):
        crop_to_model(frame, CropBox(4, 4, 8), 0)
    with pytest.raises(ValueError, match="side"):
        crop_to_model(frame, CropBox(4, 4, 0), 8)


def _texture(h: int, w: int) -> np.ndarray:
    """A deterministic textured RGB uint8 image (no scikit-image needed: the GPU machine may lack it)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(x / 7.3 + y / 11.1), 128 + 90 * np.cos(x / 13.7 - y / 5.9),
                    (x * 255 / w + y * 255 / h) / 2], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (not run on a GPU yet)")
def test_cuda_path_matches_cpu():
    """The whole path on CUDA gives what it gives on the CPU (pinned buffers, side stream, events)."""
    portrait = _texture(512, 512)
    up, down = FrameUploader("cuda"), FrameDownloader()
    for i in range(3):  # reused pinned buffer, one copy in flight at a time
        frame = np.ascontiguousarray(np.roll(portrait, 17 * i, axis=1))
        t = up.upload(frame)
        assert t.is_cuda and t.dtype == torch.uint8 and torch.equal(t.cpu(), torch.from_numpy(frame))
    for box in (CropBox(225.0, 110.0, 180.0), CropBox(30.0, 480.0, 420.0), CropBox(256.0, 256.0, 1000.0)):
        x_cpu = crop_to_model(torch.from_numpy(frame), box, 128)
        x_gpu = crop_to_model(t, box, 128)
        assert x_gpu.is_cuda and (x_gpu.cpu() - x_cpu).abs().max() < 2e-3
    x = x_gpu
    for mode in ("crop", "paste"):
        cpu, gpu = Compositor(320, 180, mode), Compositor(320, 180, mode)
        cpu.set_source_tensor(portrait, CropBox(225.0, 110.0, 180.0), 128, "cpu")
        gpu.set_source_tensor(portrait, CropBox(225.0, 110.0, 180.0), 128, "cuda")
        ref = down.download(cpu.compose_tensor(x.cpu()), copy=True)
        out = down.download(gpu.compose_tensor(x))
        assert out.shape == (180, 320, 3) and np.abs(out.astype(int) - ref).max() <= 1
    ref = Compositor(320, 180).passthrough_tensor(torch.from_numpy(frame)).numpy()
    out = down.download(Compositor(320, 180).passthrough_tensor(t), copy=True)
    assert np.abs(out.astype(int) - ref).max() <= 1
    small = down.download(up.upload(portrait[:100, :60]), copy=True)  # new shapes re-allocate both buffers
    assert np.array_equal(small, portrait[:100, :60])


def test_frame_path_choice_and_the_two_paths_agree_on_the_model_input(astronaut):
    cpu = torch.device("cpu")
    assert type(frame_path("auto", cpu)) is HostFrames and type(frame_path("host", cpu)) is HostFrames
    assert type(frame_path("device", cpu)) is DeviceFrames  # on CPU tensors: what the CUDA path runs
    frame = np.ascontiguousarray(astronaut[:300, :400])
    box = center_box(frame)
    host = HostFrames(cpu).model_input(frame, box, 64)  # (1, 3, 64, 64)
    dev = DeviceFrames(cpu).model_input(frame, box, 64)
    assert host.shape == dev.shape == (1, 3, 64, 64)
    assert float((host - dev).abs().max()) <= 2 / 127.5 + 1e-6  # the host path rounds its crop to uint8
