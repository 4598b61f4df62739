"""Errors a user can cause and fix: the CLIs print them as one line and exit with code 2.

Library code names a setting in a message as ``«setting_name»`` (the config field). ``str(error)`` shows the
setting's name (what a Python caller passes); a command-line tool shows its flag instead
(``error.render(as_flag)``: ``«source_crop»`` → ``--source-crop``, ``«pipeline»`` → ``--serial``), so runtime
code never needs to know which flags exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .settings import flag_for

_SETTING = re.compile(r"«([a-z_.]+)»")


def as_flag(name: str) -> str:
    """The command-line spelling of a setting, as its config field declares it (:func:`settings.flag_for`)."""
    return flag_for(name)


def render_flags(text: str) -> str:
    """``text`` with every ``«setting»`` written as its command-line flag (for scripts that print messages)."""
    return _SETTING.sub(lambda m: as_flag(m.group(1)), text)


class UserError(Exception):
    """A problem with the user's input or environment (missing file, no face, no camera...)."""

    def render(self, name: Callable[[str], str] = lambda s: s) -> str:
        """The message with every ``«setting»`` written by ``name`` (default: the setting's own name)."""
        return _SETTING.sub(lambda m: name(m.group(1)), super().__str__())

    def __str__(self) -> str:
        return self.render()


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be loaded (missing, truncated, foreign, unsafe)."""
