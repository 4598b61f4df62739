"""Files that appear complete under their final name or not at all, and file checksums.

Every writer of the project (checkpoints, reports, engines, videos) goes through :func:`atomic_path`:
the data is written to a hidden temporary name beside the target, which is renamed onto the target only
when the write finished; on any error the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

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
