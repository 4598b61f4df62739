"""``lia-live ui [any lia-live option] [--port N] [--host ADDR] [--no-browser]``: the control panel.

Every lia-live option is the panel's starting state (what is not given comes from the panel's saved
settings, then the defaults); see docs/ui.md.
"""

from __future__ import annotations

import argparse

from ..options import config_from_args
from ..remote.settings import RemoteConfig
from ..settings import LiveConfig
from .common import int_range


def build_ui_parser() -> argparse.ArgumentParser:
    from ..ui.app import DEFAULT_PORT
    from .live import build_parser

    p = build_parser()
    p.prog = "lia-live ui"
    p.description = ("The control panel: a local web page with the live preview, pickers and sliders, served by "
                     "this process (docs/ui.md). Every lia-live option below is its starting state.")
    for action in p._actions:
        if action.dest == "sources":
            action.required = False  # the saved settings or an upload on the page may give it
    g = p.add_argument_group("control panel")
    g.add_argument("--port", type=int_range(0, 65535), default=DEFAULT_PORT, help="port to serve on; 0 = a free one")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (anything but 127.0.0.1 lets other "
                   "machines reach the panel: a warning is printed)")
    g.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    return p


def given_settings(argv: list[str]) -> frozenset[str]:
    """The panel settings the command line gives (they win over the saved ones)."""
    from ..ui.prefs import SETTINGS

    flags = {flag: name for name, (flag, _) in SETTINGS.items()} | {"--vcam": "vcam", "--source": "sources"}
    return frozenset(flags[a.split("=", 1)[0]] for a in argv if a.split("=", 1)[0] in flags)


def main_ui(argv: list[str]) -> int:
    from ..ui.app import PanelOptions, run_panel
    from .live import check_inputs

    p = build_ui_parser()
    a = p.parse_args(argv)
    if a.dry_run:
        p.error("--dry-run is not a control panel option (run lia-live --dry-run ...)")
    cfg = config_from_args(LiveConfig(), a)
    check_inputs(cfg)
    opts = PanelOptions(host=a.host, port=a.port, browser=not a.no_browser, given=given_settings(argv))
    remote = config_from_args(RemoteConfig(), a, "remote")
    if remote.remote is None:
        return run_panel(cfg, opts)
    from ..remote.session import run_remote  # the model on a 'lia-live serve' server: the panel works the same

    stats = run_remote(cfg, remote, run=lambda c, animator: {"exit_code": run_panel(c, opts, animator=animator)})
    return int(stats["exit_code"])
