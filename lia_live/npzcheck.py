"""Reading ``.npz`` files a user hands back, field by field, without trusting them.

:class:`NpzReader` opens the zip itself and reads each member's ``.npy`` header before its data: dtype
(never objects: nothing is unpickled), shape and the byte count the header promises are checked against
the member's size first, and per-frame arrays can be read up to a row limit only (a template of two
million frames replayed for five reads five rows). :class:`FieldCheck` checks values: finite, in range,
frame indices in order. Every problem is one :class:`~lia_live.errors.UserError` line naming the file and
the field.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

KINDS = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean", "U": "text", "S": "text"}


class NpzReader:
    """Context manager over an ``.npz`` file: ``scalar(name, kinds, range)``, ``rows(name)`` and
    ``array(name, kinds, shape, rows)``; ``name in reader`` tells whether a field is there."""

    def __init__(self, path: str | os.PathLike, what: str, max_bytes: int):
        self.path, self.what, self.max_bytes = Path(path), what, max_bytes
        try:
            self.zip = zipfile.ZipFile(self.path)
            self.members = {i.filename[:-4]: i for i in self.zip.infolist() if i.filename.endswith(".npy")}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise UserError(f"{self.path} is not a {what} (.npz archive): {e}") from None
        if sum(i.file_size for i in self.members.values()) > max_bytes:
            self.close()
            raise UserError(f"{what} {self.path} is too large once unpacked (more than {max_bytes >> 20} MiB)")
        self._headers: dict[str, tuple[tuple[int, ...], bool, np.dtype, int]] = {}

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def _fail(self, name: str, problem: str) -> UserError:
        return UserError(f"{self.what} {self.path}: field {name!r} {problem}")

    def header(self, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        """(shape, fortran_order, dtype, data offset) of a member, checked against its stored size."""
        if name in self._headers:
            return self._headers[name]
        info = self.members.get(name)
        if info is None:
            raise UserError(f"{self.what} {self.path} lacks the field {name!r}")
        try:
            with self.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in read:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = read[version](f)
                offset = f.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as e:
            raise self._fail(name, f"is not a readable array ({e})") from None
        if dtype.hasobject:
            raise self._fail(name, "holds Python objects (refused: nothing is unpickled)")
        need = math.prod(shape) * dtype.itemsize
        if offset + need != info.file_size:
            raise self._fail(name, f"is damaged: its header promises {need} bytes of data, the file holds "
                             f"{max(info.file_size - offset, 0)}")
        self._headers[name] = (tuple(shape), bool(fortran), dtype, offset)
        return self._headers[name]

    def rows(self, name: str) -> int:
        """The length of a member's first axis (0 for a scalar)."""
        shape = self.header(name)[0]
        return shape[0] if shape else 0

    def _read(self, name: str, rows: int | None) -> np.ndarray:
        shape, fortran, dtype, offset = self.header(name)
        if rows is not None and shape and not fortran:
            shape = (min(rows, shape[0]), *shape[1:])
        count = math.prod(shape)
        try:
            with self.zip.open(self.members[name]) as f:
                f.read(offset)
                data = f.read(count * dtype.itemsize)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:  # a CRC error, a cut archive
            raise self._fail(name, f"cannot be read ({e})") from None
        if len(data) != count * dtype.itemsize:
            raise self._fail(name, "is cut short (a truncated file?)")
        a = np.frombuffer(data, dtype=dtype, count=count)
        if fortran:
            a = a.reshape(shape[::-1]).transpose()
            return a[:rows] if rows is not None and a.ndim else a
        return a.reshape(shape)

    def _kinds(self, name: str, a: np.ndarray, kinds: str) -> None:
        if a.dtype.kind not in kinds:
            want = " or ".join(dict.fromkeys(KINDS[k] for k in kinds))
            raise self._fail(name, f"has type {a.dtype}, expected {want}")

    def scalar(self, name: str, kinds: str, limits: tuple[float, float] | None = None) -> Any:
        """A 0-d field of one of ``kinds`` (numpy dtype kinds), within ``limits`` when given."""
        if self.header(name)[0] != ():
            raise self._fail(name, f"has shape {self.header(name)[0]}, expected a single value")
        a = self._read(name, None)
        self._kinds(name, a, kinds)
        v = a.item()
        if limits is not None and not (math.isfinite(v) and limits[0] <= v <= limits[1]):
            raise self._fail(name, f"is {v!r}, expected a finite number in [{limits[0]:g}, {limits[1]:g}]")
        return v

    def array(self, name: str, kinds: str, shape: tuple[int | None, ...], rows: int | None = None) -> np.ndarray:
        """A field of one of ``kinds`` and ``shape`` (None: any length), its first ``rows`` rows only."""
        have = self.header(name)[0]
        if len(have) != len(shape) or any(w is not None and h != w for h, w in zip(have, shape)):
            want = "(" + ", ".join("N" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "")
            raise self._fail(name, f"has shape {have}, expected {want})")
        a = self._read(name, rows)
        self._kinds(name, a, kinds)
        return a


class FieldCheck:
    """Value checks of arrays read from ``path``; each failure is one line naming the file and the field."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what

    def _fail(self, name: str, problem: str) -> UserError:
        return UserError(f"{self.what} {self.path}: field {name!r} {problem}")

    def within(self, name: str, a: np.ndarray, limits: tuple[float, float] | None) -> None:
        """All values finite (and within ``limits``)."""
        bad = ~np.isfinite(a)
        if bad.any():
            raise self._fail(name, f"holds {int(bad.sum())} non-finite values (NaN or Inf)")
        if limits is not None and a.size and (a.min() < limits[0] or a.max() > limits[1]):
            raise self._fail(name, f"holds values outside [{limits[0]:g}, {limits[1]:g}] "
                             f"(from {float(a.min()):g} to {float(a.max()):g})")

    def finite_rows(self, name: str, a: np.ndarray, limit: float) -> None:
        """Rows are either all NaN (no face) or all finite within ±``limit``; Inf is never allowed."""
        nan = np.isnan(a)
        partial = nan.any(axis=1) & ~nan.all(axis=1)
        if partial.any():
            raise self._fail(name, f"row {int(np.argmax(partial))} is partly NaN (a row is all NaN: no face, "
                             "or all numbers)")
        self.within(name, a[~nan.all(axis=1)], (-limit, limit))

    def frames(self, name: str, idx: np.ndarray, n: int) -> None:
        """Frame indices: within [0, n) and strictly increasing."""
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise self._fail(name, f"holds frame numbers outside [0, {n - 1}]")
        if idx.size > 1 and not (np.diff(idx) > 0).all():
            raise self._fail(name, "is not strictly increasing")
