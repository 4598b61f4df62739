"""Files that appear complete under their final name or not at all, and file checksums.

Every writer of the project (checkpoints, reports, engines, videos) goes through :func:`atomic_path`
(:func:`atomic_dir` for folders such as PNG frame output): the data is written to a hidden temporary name
beside the target, which is renamed onto the target only when the write finished; on any error (or
signal) the temporary is removed. :func:`check_output_path` refuses, before any work starts, outputs that
exist (without ``--overwrite``), paths below a file, a folder where a file is expected and the reverse,
and folders that cannot be written (read-only mounts, permissions). :func:`os_error_line` turns an
``OSError`` into the one line a user reads (the CLIs print it and exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

PARTIAL_MARK = ".partial-"


def normal_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file made by ``mkstemp`` (0600) the permissions of a normally created file (umask applied)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def temp_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` that keeps its suffix (writers pick formats by suffix)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{PARTIAL_MARK}", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed.

    >>> with atomic_path("out.json") as tmp:
    ...     tmp.write_text("{}")
    """
    target = Path(target)
    if mkdir:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        normal_mode(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``target``; on success it becomes ``target``, on error it is removed.

    With ``overwrite`` an existing ``target`` folder is replaced as a whole (nothing of the old content is
    left), and only once the new one is complete; until then the old folder stays untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL_MARK}", dir=target.parent))
    try:
        yield tmp
        normal_mode(tmp, directory=True)
        replace_dir(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` onto ``target`` (an existing target only with ``overwrite``)."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if not overwrite:
        raise UserError(f"output already exists: {target} (choose another name or allow «overwrite»)")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)  # the old output stays whole until the new one is in place
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def remove_partial(path: Path | None) -> None:
    """Remove a temporary file or folder made by this module (silently if it is already gone)."""
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_bytes_checked(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` and make sure it reached the file system (raises OSError otherwise).

    ``cv2.imwrite`` and friends report failure by a return value that is easy to ignore; encode in memory
    and write through this instead.
    """
    with open(path, "wb") as f:
        n = f.write(data)
        f.flush()
    if n != len(data):
        raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)", str(path))


def _first_existing(path: Path) -> Path:
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path) -> None:
    """Raise OSError when no file can be created in ``folder`` (read-only mount, permissions, full inodes).

    Creating (and removing) a real file is the only test that holds for root and for read-only mounts;
    ``os.access`` says yes to root even on a read-only file system.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".probe{PARTIAL_MARK}", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def check_output_path(path: str | os.PathLike, overwrite: bool = False, what: str = "output",
                      kind: str = "file", create_parents: bool = True) -> Path:
    """Refuse, with one line, an output that cannot or must not be written; returns it as a Path.

    ``kind`` is what will be written there: ``"file"`` or ``"dir"`` (a folder the tool fills). Refused:
    a device node, FIFO or socket (always), an existing output without ``overwrite`` (an existing *empty*
    folder is fine for ``"dir"``), a folder where a file is expected (and the reverse), a path below a file,
    a missing parent folder when ``create_parents`` is false, and a place where nothing can be written.
    Nothing is created.
    """
    p = Path(path)
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if p.exists() and not (p.is_file() or p.is_dir()):
        raise UserError(f"{what} is a device, pipe or other special file, not a regular file: {p} "
                        "(it is never replaced, not even with «overwrite»)")
    if p.exists():
        if kind == "file" and p.is_dir():
            raise UserError(f"{what} is a folder, expected a file name: {p}")
        if kind == "dir" and not p.is_dir():
            raise UserError(f"{what} exists and is not a folder: {p}")
        if not overwrite and not (kind == "dir" and not any(p.iterdir())):
            raise UserError(f"{what} already exists: {p} (choose another name or allow «overwrite»)")
    parent = p.parent
    existing = _first_existing(parent)
    if not existing.is_dir():
        raise UserError(f"{what} cannot be created below a file: {existing} is not a folder ({p})")
    if existing != parent and not create_parents:
        raise UserError(f"{what} folder does not exist: {parent}")
    try:
        probe_writable(existing)
    except OSError as e:
        raise UserError(f"cannot write {what} {p}: {existing} is not writable ({e.strerror or e})") from None
    return p


def os_error_line(e: OSError, what: str = "") -> str:
    """One line for a user from an OSError: what failed, the file and the system's reason."""
    reason = e.strerror or str(e) or type(e).__name__
    name = e.filename if e.filename is not None else ""
    if name and PARTIAL_MARK in os.path.basename(str(name)):
        name = str(Path(str(name)).parent)  # never show a temporary name the user cannot see afterwards
    if e.errno == errno.ENOSPC:
        reason = "no space left on device"
    head = f"{what}: " if what else ""
    return f"{head}{reason}" + (f": {name}" if name else "")


def write_atomic(target: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``target`` atomically."""
    with atomic_path(target) as tmp:
        if isinstance(data, str):
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
    return Path(target)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
