"""Errors a user can cause and fix: the CLIs print them as one line and exit with code 2."""


class UserError(Exception):
    """A problem with the user's input or environment (missing file, no face, no camera...)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be loaded (missing, truncated, foreign, unsafe)."""
