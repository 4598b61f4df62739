"""Where the live loop's frames go: a file (encoded in its own thread), a virtual camera, a preview window;
the checks made before anything opens, and the release of everything at the end."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import UserError
from ..log import log
from ..output import FileOutput, PreviewWindow, VirtualCamera
from ..paths import check_live_places
from ..pipeline import BackgroundSink
from ..settings import LiveConfig


class EncodingOutput:
    """A file output whose encoding runs in its own thread, so it is a pipeline stage of its own."""

    def __init__(self, output):
        self.output = output
        self.sink = BackgroundSink(output.send, "encode", capacity=4)

    def send(self, rgb: np.ndarray) -> None:
        self.sink.put(rgb)  # output frames are fresh arrays, never written to after they are sent

    def close(self) -> None:
        try:
            self.sink.finish()
        except BaseException:
            self.output.abort()  # a failed write: nothing is kept under the name
            raise
        self.output.close()

    def abort(self) -> None:
        self.sink.cancel()
        self.output.abort()


def check_outputs(cfg: LiveConfig) -> None:
    """Refuse, before anything is opened, outputs that cannot be written, would replace a user's file without
    «overwrite», name the same file as another output or as an input (:func:`lia_live.paths.check_places`)."""
    check_live_places(cfg)


def open_outputs(cfg: LiveConfig, out_fps: float, say: Callable[[str], None] = log) -> list:
    """The outputs asked for; a missing virtual camera is fatal only when it is the only output."""
    o = cfg.output
    outputs: list = []
    if o.output is not None:
        outputs.append(EncodingOutput(FileOutput(o.output, out_fps, overwrite=o.overwrite)))
    if o.vcam:
        fps = o.fps or 30.0
        try:
            cam = VirtualCamera(o.width, o.height, fps, device=o.vcam_device, backend=o.vcam_backend)
            say(f"virtual camera: {cam.device} ({o.width}×{o.height} @ {fps:g} fps)")
            outputs.append(cam)
        except UserError as e:
            if o.output is None and not o.preview:
                close_all(outputs)
                raise
            say(f"warning: {e}; going on without it")
    return outputs


def open_preview(cfg: LiveConfig, resources: list):
    """The preview window when asked for (added to ``resources``), else None."""
    if not cfg.output.preview:
        return None
    window = PreviewWindow("lia-live")
    resources.append(window)
    return window


def close_all(resources: list, abort: bool = False, say: Callable[[str], None] = log) -> None:
    """Release in reverse order of opening; one failing release never blocks the others. A recording that
    cannot be finalised (a full disk...) is reported as the run's error once everything is released; with
    ``abort`` (a second Ctrl-C) recordings are dropped instead of finalised."""
    failed: UserError | None = None
    for r in reversed(resources):
        try:
            if abort and hasattr(r, "abort"):
                r.abort()
            else:
                r.close()
        except UserError as e:
            failed = failed or e
        except Exception as e:  # noqa: BLE001 - a broken device must not stop the others' release
            say(f"warning: closing {type(r).__name__} failed: {e}")
    if failed is not None:
        raise failed
