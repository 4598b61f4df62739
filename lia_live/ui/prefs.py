"""The panel's settings that stay, per user: ``$XDG_CONFIG_HOME/lia-live/ui.json`` (default ``~/.config``).

Saved: the lia-live options the panel changes (sources, input, camera mode, motion settings, compose,
virtual camera on/off). At the next start they are the panel's starting state, except for what the command
line gives (the command line wins). :func:`command_line` writes the equivalent ``lia-live`` command.

Uploaded portraits are kept (decoded and re-encoded as PNG, named by their content's hash) in
``$XDG_DATA_HOME/lia-live/sources`` (default ``~/.local/share``), so a saved setting can name them;
recordings go to ``$XDG_VIDEOS_DIR/lia-live`` (default ``~/Videos/lia-live``). Nothing is written anywhere else.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..fsutil import write_atomic
from ..log import log

# the panel's settings: name → (flag, default); booleans are written as their flag when they differ
SETTINGS: dict[str, tuple[str, Any]] = {
    "driving": ("--driving", "0"),
    "camera_size": ("--camera-size", "1280x720"),
    "camera_fps": ("--camera-fps", None),
    "mode": ("--mode", "relative"),
    "motion_power": ("--motion-power", 1.0),
    "ease": ("--ease", 1.0),
    "reference": ("--reference", "first"),
    "compose": ("--compose", "crop"),
    "vcam": ("--no-vcam", True),
}


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lia-live"


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lia-live"


def prefs_path() -> Path:
    return config_dir() / "ui.json"


def sources_dir() -> Path:
    return data_dir() / "sources"


def recordings_dir() -> Path:
    base = os.environ.get("XDG_VIDEOS_DIR") or str(Path.home() / "Videos")
    return Path(base) / "lia-live"


def load() -> dict:
    """The saved settings ({} when none, or when the file is unreadable: said once, never fatal)."""
    path = prefs_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log(f"ui: ignoring the saved panel settings {path}: {e}")
        return {}
    if not isinstance(data, dict):
        log(f"ui: ignoring the saved panel settings {path}: not a JSON object")
        return {}
    known = {k: v for k, v in data.items() if k in SETTINGS or k == "sources"}
    if isinstance(known.get("sources"), list):
        known["sources"] = [s for s in known["sources"] if isinstance(s, str) and Path(s).is_file()]
    return known


def save(settings: dict) -> Path | None:
    """Write the settings atomically; a failure is logged, never fatal (returns the path or None)."""
    path = prefs_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(settings, indent=2, sort_keys=True))
    except OSError as e:
        log(f"ui: cannot save the panel settings to {path}: {e}")
        return None
    return path


def command_line(settings: dict) -> str:
    """The ``lia-live`` command with these settings (only what differs from the defaults)."""
    args = ["lia-live"]
    for s in settings.get("sources", []):
        args += ["--source", str(s)]
    for name, (flag, default) in SETTINGS.items():
        value = settings.get(name, default)
        if value is None or value == default:
            continue
        if isinstance(default, bool):
            args.append(flag)
            continue
        args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(args)
