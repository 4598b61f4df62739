"""``lia-live ui``: the control panel's server in a thread, the live loop in the caller's (main) thread.

There is one live loop (:func:`lia_live.live.run_live`) and one holder of its state (the
:class:`~lia_live.live.LiveController`): the page and the OpenCV hotkeys are two views of it. The panel
hands the loop a :class:`~lia_live.ui.devices.SwitchingInput` as its capture and a
:class:`~lia_live.ui.devices.SwitchingOutputs` as an extra output, so input, virtual camera and recording
change at frame boundaries without a restart. Stop ends the loop (recordings finalised); Start runs it again
with the session's current settings and the model already loaded. 'q' in the preview window, a closed
window, Ctrl-C or SIGTERM end the program.
"""

from __future__ import annotations

import dataclasses
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..live import LiveController, run_live
from ..log import log
from ..runtime import make_animator
from ..settings import LiveConfig
from ..signals import Stopper
from . import prefs
from .devices import Devices, InputChoice, SwitchingInput, SwitchingOutputs
from .panel import Panel
from .security import LOOPBACK, new_token
from .server import PanelServer

DEFAULT_PORT = 8780


@dataclass(frozen=True)
class PanelOptions:
    """The panel's own options; ``given``: the saved settings' names that the command line set (those win)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    browser: bool = True
    given: frozenset[str] = frozenset()


def host_warning(host: str) -> str | None:
    """The warning printed when the panel listens beyond this machine."""
    if host in LOOPBACK:
        return None
    return (f"warning: the control panel listens on {host}: anyone who can reach this address and has the token "
            f"can steer your camera (the default, 127.0.0.1, keeps it on this machine)")


def starting_config(cfg: LiveConfig, saved: dict, given: frozenset[str], say: Callable[[str], None] = log
                    ) -> LiveConfig:
    """``cfg`` with the saved panel settings filled in where the command line did not give them."""
    groups: dict[str, dict] = {"capture": {}, "motion": {}, "output": {}}
    where = {"driving": ("capture", "driving"), "camera_fps": ("capture", "fps"), "mode": ("motion", "mode"),
             "motion_power": ("motion", "motion_power"), "ease": ("motion", "ease"),
             "reference": ("motion", "reference"), "compose": ("output", "compose"), "vcam": ("output", "vcam")}
    for name, (group, field) in where.items():
        if name in saved and name not in given and saved[name] is not None:
            groups[group][field] = saved[name]
    size = saved.get("camera_size")
    if "camera_size" not in given and isinstance(size, str) and "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit():
            groups["capture"]["size"] = (int(w), int(h))
    try:
        out = cfg.replace(**{g: v for g, v in groups.items() if v})
    except (TypeError, ValueError) as e:
        say(f"ui: ignoring the saved panel settings: {e}")
        out = cfg
    if "sources" not in given and not cfg.sources and saved.get("sources"):
        out = dataclasses.replace(out, sources=tuple(Path(s) for s in saved["sources"]))
    return out


def session_config(cfg: LiveConfig, ctrl: LiveController, devices: Devices, first: bool) -> LiveConfig:
    """The configuration of the next run: the session's current settings; the panel owns the virtual camera
    and the recordings (a command-line «output» and «record_motion» are kept for the first run only)."""
    st = ctrl.state()
    sources = tuple(Path(s) for s in st.get("sources") or cfg.sources) + tuple(devices.pending_sources)
    devices.pending_sources.clear()
    motion = {k: st[s] for k, s in (("mode", "mode"), ("motion_power", "power"), ("ease", "ease"),
                                    ("reference", "reference")) if s in st}
    output = {"vcam": False, "output": cfg.output.output if first else None}
    if "compose" in st:
        output["compose"] = st["compose"]
    run = {} if first else {"record_motion": None}
    return dataclasses.replace(cfg.replace(motion=motion, output=output, run=run), sources=sources)


def run_panel(cfg: LiveConfig, opts: PanelOptions, animator=None, out=sys.stdout, window=None) -> int:
    """Serve the panel and run the live loop until the user quits; returns the exit code. ``animator`` and
    ``window`` (a preview window: ``show(rgb) -> key``, ``open``, ``close()``) may be injected, as for
    :func:`~lia_live.live.run_live`."""
    saved = prefs.load()
    cfg = starting_config(cfg, saved, opts.given)
    ctrl = LiveController()
    c = cfg.capture
    inp = SwitchingInput(InputChoice(c.driving, c.size[0], c.size[1], c.fps), say=ctrl.say)
    o = cfg.output
    outs = SwitchingOutputs(o.size, o.fps or 30.0, o.vcam, o.vcam_device, o.vcam_backend, say=ctrl.say)
    devices = Devices(inp, outs, ctrl, say=ctrl.say)
    panel = Panel(ctrl, devices, {**saved, **{"sources": [str(s) for s in cfg.sources]}})
    server = PanelServer(panel, new_token(), opts.host, opts.port, say=ctrl.say)
    warning = host_warning(opts.host)
    if warning:
        log(warning)
    server.start()
    panel.preview.start()
    try:
        print(f"lia-live: control panel at {server.url}", file=out, flush=True)
        if opts.browser:
            _open_browser(server.url)
        anim = animator or make_animator(cfg.model, cfg.motion.motion_power)
        return _serve(cfg, ctrl, devices, inp, outs, anim, window)
    finally:
        panel.preview.stop()
        server.stop()


def _serve(cfg: LiveConfig, ctrl: LiveController, devices: Devices, inp: SwitchingInput,
           outs: SwitchingOutputs, anim, window=None) -> int:
    """Run the loop whenever it is wanted; between runs a signal (Ctrl-C, SIGTERM) closes the panel."""
    first = True
    with Stopper("closing the control panel", say=ctrl.say) as idle:
        while True:
            if not devices.want_running:
                if idle.requested:
                    return idle.exit_code or 0
                devices.wait_for_start(0.5)
                continue
            run_cfg = session_config(cfg, ctrl, devices, first)
            if not run_cfg.sources:
                ctrl.say("add a source portrait on the page, then press Start")
                devices.want_running = False
                continue
            try:  # run_live's own Stopper takes the signals while it runs
                stats = run_live(run_cfg, capture=inp, animator=anim, extra_outputs=[outs], controller=ctrl,
                                 window=window)
            except UserError as e:  # kept in the controller's messages by run_live: shown on the page
                log(f"error: {e}")
                devices.want_running = False
                continue
            finally:
                first = False
            if not devices.stop_requested:
                return int(stats.get("exit_code", 0))
            devices.stop_requested = False


def _open_browser(url: str) -> None:
    try:
        if not webbrowser.open(url):
            log("no browser found: open the address above yourself")
    except webbrowser.Error as e:
        log(f"cannot open a browser ({e}): open the address above yourself")
