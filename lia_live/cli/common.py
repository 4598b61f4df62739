"""What every command line shares, from :mod:`lia_live.options` (which ``train`` and the scripts use too):
the exit-2 contract for user errors, the argument parser, and the number parsers that refuse nan, inf and
out-of-range values at parse time."""

from __future__ import annotations

from ..options import ArgumentParser, float_range, int_range, user_errors

__all__ = ["ArgumentParser", "float_range", "int_range", "user_errors"]
