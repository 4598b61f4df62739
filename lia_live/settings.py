"""Typed, nested configuration of the tools, declared once; the CLIs are built from these dataclasses.

Each field may carry its command-line face in ``option(...)`` metadata (help text, flag, value range,
choices); :mod:`lia_live.cli.configargs` turns a dataclass into an argument group and back. Runtime code
only ever sees the dataclasses — it never parses arguments and its errors never name a flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def option(default: Any = None, help: str = "", *, flag: str | None = None, range: tuple | None = None,
           choices: tuple | None = None, metavar: str | None = None, negate: str | None = None,
           cli: bool = True, repeat: bool = False, factory: Any = None) -> Any:
    """A dataclass field with its command-line description.

    ``range=(lo, hi)``: finite numbers within it; ``negate="--no-vcam"``: a boolean switched off by that flag;
    ``cli=False``: not a command-line option; ``repeat``: the flag may be given several times (a tuple).
    The help of a ``negate`` field describes that flag.
    """
    meta = {"help": help, "flag": flag, "range": range, "choices": choices, "metavar": metavar,
            "negate": negate, "cli": cli, "repeat": repeat}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Which model runs where: shared by lia-live, lia-animate, lia-eval and the benchmark."""

    checkpoint: Path | None = option(None, "LIA checkpoint (.pt or .safetensors); default checkpoints/vox.pt, "
                                     "then $LIA_CHECKPOINT, then the bundled pipeline-demo model", metavar="FILE")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    backend: str = option("auto", "inference backend: auto = the fastest available here "
                          "(see 'lia-live backends')")
    precision: str | None = option(None, "fp32, fp16 or bf16; default: the backend's own on that device",
                                   choices=("fp32", "fp16", "bf16"))
    backend_options: tuple[str, ...] = option((), "backend option KEY=VALUE (repeatable), e.g. mode=max-autotune "
                                              "for the compile backend", flag="--backend-option",
                                              metavar="KEY=VALUE", repeat=True)


@dataclass(frozen=True)
class CaptureConfig:
    """Where driving frames come from."""

    driving: str = option("0", "camera index, stream URL, video file or frame folder")
    size: tuple[int, int] = option((1280, 720), "requested camera resolution", flag="--camera-size",
                                   metavar="WxH")
    fps: float | None = option(None, "requested camera fps (for a file or folder: its frame rate)",
                               flag="--camera-fps", range=(1, 240))
    mjpg: bool = option(True, "do not ask the camera for MJPG (MJPG is what USB cameras need for 720p at 30 fps)",
                        negate="--no-mjpg")


@dataclass(frozen=True)
class MotionConfig:
    """How the face is tracked and how its motion drives the portrait."""

    crop: str = option("auto", "driving frames: auto = track the face (VoxCeleb-style square); none = centre square",
                       choices=("auto", "none"))
    source_crop: str = option("auto", "source portrait: auto = crop like the training data; none = as is "
                              "(centre square)", choices=("auto", "none"))
    detect_every: int = option(1, "run the face detector every N frames (every frame while the face is lost)",
                               range=(1, 1000), metavar="N")
    mode: str = option("relative", "relative: motion relative to a reference pose (hotkey r retakes it); "
                       "absolute: each frame's own motion", choices=("relative", "absolute"))
    reference: str = option("first", "relative mode's reference pose: first = the first frame with a face; "
                            "auto / landmarks = the frame of the first REFERENCE_WINDOW seconds nearest the "
                            "portrait's pose by motion code / by face-mesh landmarks",
                            choices=("first", "auto", "landmarks"))
    reference_window: float = option(2.0, "seconds of frames --reference auto chooses from", range=(0.1, 60),
                                     metavar="SECONDS")
    motion_power: float = option(1.0, "scale of the relative motion", range=(0, 2))
    ease: float = option(1.0, "when the face is lost, ease back to the neutral pose with this time constant",
                         range=(0, 60), metavar="SECONDS")
    offsets: Path | None = option(None, "load (and on exit save) the live direction offsets from this JSON file",
                                  metavar="FILE")


@dataclass(frozen=True)
class OutputConfig:
    """Where animated frames go and how they are composed."""

    compose: str = option("crop", "crop: the animated head; paste: pasted back into the full source portrait",
                          choices=("crop", "paste"))
    size: tuple[int, int] = option((1280, 720), "output size (aspect kept)", metavar="WxH")
    fps: float | None = option(None, "output fps (default 30; a file output from a video input keeps the "
                               "video's fps)", range=(1, 240))
    vcam: bool = option(True, "do not open a virtual camera", negate="--no-vcam")
    vcam_device: str | None = option(None, "virtual camera device (e.g. /dev/video9)")
    vcam_backend: str | None = option(None, "pyvirtualcam backend (v4l2loopback, obs, unitycapture)")
    preview: bool = option(False, "show input | output with stats; enables hotkeys")
    output: Path | None = option(None, "also record to FILE.mp4 (or a PNG folder)", metavar="FILE.mp4")
    overwrite: bool = option(False, "replace an existing --output, --stats-json or --record-motion file")

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


@dataclass(frozen=True)
class RunConfig:
    """How long to run and what to report."""

    max_frames: int | None = option(None, "stop after N frames", range=(1, 10**9), metavar="N")
    stats_every: float = option(5.0, "print fps and per-stage ms this often (0: only at exit)", range=(0, 3600),
                                metavar="SECONDS")
    stats_json: Path | None = option(None, "write the run's stats as JSON at exit", metavar="FILE")
    record_motion: Path | None = option(None, "record the per-frame motion (α, times, reference) to FILE.npz",
                                        metavar="FILE.npz")
    frame_path: str = option("auto", "where frames are cropped and composed: device = on the model's device "
                             "(uint8 upload, GPU crop/compose, one download), host = OpenCV; auto = device on CUDA",
                             choices=("auto", "host", "device"))
    pipeline: bool = option(True, "run the stages one after another instead of concurrently (track, model and "
                            "compose/send each in its own thread)", negate="--serial")


@dataclass(frozen=True)
class LiveConfig:
    """Everything ``lia-live`` needs, already validated."""

    sources: tuple[Path, ...] = option((), "source portrait; repeat for several (hotkey n switches)",
                                       flag="--source", metavar="IMAGE", repeat=True)
    model: ModelConfig = field(default_factory=ModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def replace(self, **groups: dict) -> LiveConfig:
        """A copy with fields of the named groups changed: ``cfg.replace(run={"max_frames": 5})``."""
        kw = {name: dataclasses.replace(getattr(self, name), **changes) for name, changes in groups.items()}
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v
        return {g: ({k: plain(v) for k, v in dataclasses.asdict(getattr(self, g)).items()}
                    if dataclasses.is_dataclass(getattr(self, g)) else plain(getattr(self, g)))
                for g in ("sources", "model", "capture", "motion", "output", "run")}
