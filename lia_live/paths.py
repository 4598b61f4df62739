"""One rule for every path a tool touches: outputs against outputs and inputs, files read back checked first.

Before any work a tool lists what it writes and what it reads as :class:`Place` values and calls
:func:`check_places` once (its ``--dry-run`` runs the same call):

- every output passes the writer checks of :mod:`lia_live.fsutil` (an existing file without «overwrite»,
  a device node, FIFO or socket — never replaced —, a folder where a file is expected, a folder nothing can
  be written to: a real file is created and removed there, so a dry run finds it);
- no two outputs name the same file, after resolving symlinks, ``..`` and hard links, and no output lies
  inside an output folder (a PNG folder is replaced whole);
- no output is one of the inputs, nor a folder holding one, not even with «overwrite» (the input would be
  gone). A file that is read and saved back (``--offsets``) is one place, both input and output.

Files the tool reads back (motion templates, offsets, run records it resumes from) go through
:func:`regular_file` / :func:`read_capped` / :func:`read_json`: a regular file (``/dev/zero`` or a FIFO
would be read forever), no larger than a cap checked *before* reading, and one line naming the file
on any problem.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import check_output_path

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Place:
    """A path a tool touches. ``setting``: its setting name (the CLIs show the flag); ``kind``:

    - outputs: ``"file"``, ``"dir"`` (a folder the tool fills), ``"writer"`` (``.mp4`` file or PNG folder,
      see :func:`lia_live.io.check_writer_path`), ``"update"`` (a file read and saved back, e.g. offsets);
    - inputs: anything (a file or a folder; the kind is not checked here).
    """

    setting: str
    path: str | os.PathLike | None
    kind: str = "file"
    what: str = ""

    @property
    def words(self) -> str:
        return self.what or f"«{self.setting}»"

    @property
    def flag(self) -> str:
        return f"«{self.setting}»"


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(p)))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path, or the same inode (hard links)."""
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return False


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` lies somewhere below ``folder`` (resolved paths)."""
    p, f = _real(path), _real(folder)
    return p != f and f in p.parents


def _check_output(place: Place, overwrite: bool) -> str:
    """The writer checks for one output; returns its kind on disk ("file" or "dir")."""
    if place.kind == "writer":
        from .io.video import VIDEO_EXTS, check_writer_path  # here: lia_live.io imports this module

        check_writer_path(place.path, overwrite)  # type: ignore[arg-type]
        return "file" if Path(place.path).suffix.lower() in VIDEO_EXTS else "dir"  # type: ignore[arg-type]
    if place.kind in ("file", "update"):
        check_output_path(place.path, overwrite or place.kind == "update", place.words)  # type: ignore[arg-type]
        return "file"
    if place.kind == "dir":
        check_output_path(place.path, overwrite, place.words, "dir")  # type: ignore[arg-type]
        return "dir"
    raise ValueError(f"unknown output kind {place.kind!r}")


def check_places(outputs: Iterable[Place], inputs: Iterable[Place] = (), overwrite: bool = False) -> None:
    """Refuse, with one line and before any work, outputs that cannot be written or that collide (see the
    module docstring). Places whose path is None are skipped. Nothing is created."""
    outs = [(p, _check_output(p, overwrite)) for p in outputs if p.path is not None]
    ins = [p for p in inputs if p.path is not None]
    for i, (a, kind_a) in enumerate(outs):
        for b, kind_b in outs[i + 1:]:
            if same_file(a.path, b.path):  # type: ignore[arg-type]
                raise UserError(f"{a.flag} and {b.flag} name the same file ({a.path}): give each output "
                                "its own name")
            for (x, kx), y in (((a, kind_a), b), ((b, kind_b), a)):
                if kx == "dir" and inside(y.path, x.path):  # type: ignore[arg-type]
                    raise UserError(f"{y.flag} {y.path} lies inside the {x.flag} folder {x.path}, which is "
                                    "written as a whole: choose a place outside it")
        for inp in ins:
            if inp.setting == a.setting and a.kind == "update":
                continue  # read, then saved back: one place
            if same_file(a.path, inp.path):  # type: ignore[arg-type]
                raise UserError(f"{a.flag} {a.path} is also the {inp.flag} input: writing it would destroy "
                                "the input (even with «overwrite»); choose another name")
            if kind_a == "dir" and inside(inp.path, a.path):  # type: ignore[arg-type]
                raise UserError(f"the {a.flag} folder {a.path} holds the {inp.flag} input {inp.path}: "
                                "writing the folder would destroy it; choose another folder")


# ---- files read back ------------------------------------------------------------------------------------
def regular_file(path: str | os.PathLike, what: str, limit: int | None = None) -> os.stat_result:
    """``path``'s stat when it is a regular file of at most ``limit`` bytes; one-line UserError otherwise
    ("not found", "is a folder", "is a device or pipe", "is too large")."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {p}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} is a folder, expected a file: {p}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} is a device, pipe or other special file, not a regular file: {p}")
    if limit is not None and st.st_size > limit:
        raise UserError(f"{what} {p} is too large ({_size(st.st_size)}; at most {_size(limit)} expected)")
    return st


def read_capped(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a file growing while read is cut off too)."""
    regular_file(path, what, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise UserError(f"{what} {path} is too large (more than {_size(limit)})")
    return data


def read_json(path: str | os.PathLike, what: str, limit: int = MIB) -> Any:
    """A JSON document from a regular file of at most ``limit`` bytes (one line naming the file otherwise)."""
    data = read_capped(path, what, limit)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a text (UTF-8 JSON) file") from None
    except ValueError as e:
        raise UserError(f"{what} {path} is not valid JSON ({e})") from None


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def live_places(cfg: Any) -> tuple[list[Place], list[Place]]:
    """(outputs, inputs) of a ``lia-live`` run (a :class:`~lia_live.settings.LiveConfig`)."""
    o, r, m = cfg.output, cfg.run, cfg.motion
    outputs = [Place("output", o.output, "writer"), Place("stats_json", r.stats_json, what="stats file"),
               Place("record_motion", r.record_motion, what="motion recording"),
               Place("offsets", m.offsets, "update", what="offsets file")]
    driving = str(cfg.capture.driving)
    camera = driving.isdigit() or "://" in driving
    inputs = [*(Place("source", s) for s in cfg.sources), Place("driving", None if camera else driving),
              Place("checkpoint", cfg.model.checkpoint), Place("offsets", m.offsets)]
    return outputs, inputs


def check_live_places(cfg: Any) -> None:
    """:func:`check_places` for a ``lia-live`` run: before anything is opened, and by ``--dry-run``."""
    outputs, inputs = live_places(cfg)
    check_places(outputs, inputs, cfg.output.overwrite)


def check_animate_places(cfg: Any) -> None:
    """:func:`check_places` for a ``lia-animate`` run (an :class:`~lia_live.settings.AnimateConfig`)."""
    check_places([Place("output", cfg.output, "writer"),
                  Place("record_motion", cfg.record_motion, what="motion recording")],
                 [Place("source", cfg.source), Place("driving", cfg.driving), Place("template", cfg.template),
                  Place("checkpoint", cfg.model.checkpoint)], cfg.overwrite)
