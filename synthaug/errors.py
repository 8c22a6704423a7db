"""Errors that carry a one-line message for the user (the CLI prints them without a traceback)."""
from __future__ import annotations


class SynthaugError(Exception):
    """A user-facing problem: bad input, a missing file, an impossible setting."""


class DataError(SynthaugError):
    """A data folder or file that cannot be used as given."""


class CheckpointError(SynthaugError):
    """A run folder or checkpoint that is missing, corrupt or inconsistent."""


class TrainingStopped(SynthaugError):
    """A fit stopped by a signal before its budget was spent; its checkpoint is saved and resumable."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: CUDA's OutOfMemoryError or a CPU allocator's ENOMEM RuntimeError."""
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in ("can't allocate memory",
                                                                                "cannot allocate memory")))
