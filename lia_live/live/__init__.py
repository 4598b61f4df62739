"""The live pipeline behind ``lia-live``: the one place that wires the stages together.

    capture ─► [track + preprocess] ─► [motion + synthesis] ─► [compose + send + preview]
                 thread "track"          thread "model"          the caller's thread (UI)

The three stages run concurrently (:mod:`lia_live.pipeline`), joined by bounded hand-offs: newest-only for
live cameras (a slow stage always works on the newest frame; stale ones are dropped and counted), in order
for files (every frame exactly once). ``--serial`` runs the same stage functions one after another.

The modules, by job:
- :mod:`.controller` — :class:`LiveController`, the single holder of the session's state (motion controls,
  sources, pass-through, compose mode, running) that hotkeys, the control panel and remote mode drive;
- :mod:`.stages` — :class:`LiveStages`, the per-frame work of each stage (no devices, so tests drive it);
- :mod:`.sources` — the source portraits (read once, cropped, encoded once);
- :mod:`.loop` — the pipelined and serial loops and the sink (outputs, preview, stats lines);
- :mod:`.outputs` — file / virtual camera / preview outputs, their checks and their release;
- :mod:`.preview` — the OpenCV preview's picture, a view of the controller;
- :mod:`.session` — :func:`run_live`: opens everything, runs a loop, always cleans up, reports.
The frame paths (host / device) live in :mod:`lia_live.frames`, the motion policy in :mod:`lia_live.motion`.
"""

from ..frames import DeviceFrames, HostFrames, frame_path
from ..settings import LiveConfig
from ..stats import STAGES
from .controller import ACTIONS, HOTKEY_HELP, KEYMAP, LiveController, NewSource, PreviewFrame
from .outputs import EncodingOutput, check_outputs, close_all, open_outputs
from .session import build_stages, finish_run, run_live
from .sources import SourceEntry, load_sources, make_source, read_sources
from .stages import LiveStages, Work

__all__ = ["ACTIONS", "HOTKEY_HELP", "KEYMAP", "STAGES", "DeviceFrames", "EncodingOutput", "HostFrames",
           "LiveConfig", "LiveController", "LiveStages", "NewSource", "PreviewFrame", "SourceEntry", "Work",
           "build_stages", "check_outputs", "close_all", "finish_run", "frame_path", "load_sources",
           "make_source", "open_outputs", "read_sources", "run_live"]
