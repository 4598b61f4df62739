"""The cameras this machine has, for the panel's picker: index, name and resolutions where the OS says.

Linux: ``/sys/class/video4linux`` gives each device's name without opening it (capture devices only:
``index`` 0 of each card); resolutions come from ``v4l2-ctl --list-formats-ext`` when it is installed.
Elsewhere nothing is probed (opening a camera to ask would take it from the app using it): indices 0–3 are
offered with the common resolutions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

COMMON = ["640x480", "1280x720", "1920x1080"]
SYSFS = Path("/sys/class/video4linux")


def list_cameras(sysfs: Path = SYSFS) -> list[dict]:
    """``[{"index": 0, "name": "...", "resolutions": ["1280x720", ...]}, ...]``."""
    if not sys.platform.startswith("linux"):
        return [{"index": i, "name": f"camera {i}", "resolutions": COMMON} for i in range(4)]
    out = []
    for dev in sorted(sysfs.glob("video*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        index = int(re.sub(r"\D", "", dev.name) or 0)
        if _read(dev / "index", "0") != "0":
            continue  # a card's metadata node, not a capture node
        out.append({"index": index, "name": _read(dev / "name", f"camera {index}"),
                    "resolutions": _resolutions(f"/dev/{dev.name}") or COMMON})
    return out


def _read(path: Path, default: str) -> str:
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


def _resolutions(device: str) -> list[str]:
    tool = shutil.which("v4l2-ctl")
    if tool is None:
        return []
    try:
        text = subprocess.run([tool, "--list-formats-ext", "-d", device], capture_output=True, text=True,
                              timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    sizes = {m.group(1) for m in re.finditer(r"Size: Discrete (\d+x\d+)", text)}
    return sorted(sizes, key=lambda s: tuple(int(v) for v in s.split("x")))
