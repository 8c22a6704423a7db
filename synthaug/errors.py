"""Errors that carry a one-line message for the user (the CLI prints them without a traceback)."""
from __future__ import annotations


class SynthaugError(Exception):
    """A user-facing problem: bad input, a missing file, an impossible setting."""


class DataError(SynthaugError):
    """A data folder or file that cannot be used as given."""


class CheckpointError(SynthaugError):
    """A run folder or checkpoint that is missing, corrupt or inconsistent."""
