"""Recovering a training run from the two faults that need not end it: a batch that runs out of memory (train on
as two half batches) and a non-finite loss (restore the last checkpoint with halved learning rates, once)."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from synthaug.errors import SynthaugError, is_out_of_memory


class Recovery:
    """The recovery state of one run: whether batches now train as halves, whether the learning rates were halved."""

    def __init__(self, device: torch.device, lr_halved: bool = False):
        self.device = device
        self.halves = False
        self.lr_halved = lr_halved

    def step(self, train_step: Callable[[torch.Tensor, torch.Tensor, bool], dict[str, Any]], real: torch.Tensor,
             labels: torch.Tensor, want: bool) -> dict[str, Any]:
        """One training step; out of memory, every batch from then on trains as two half batches (with a warning).
        A second failure, or one at batch 1, stops with one line (the last checkpoint is intact)."""
        try:
            return self._step(train_step, real, labels, want)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
        # Retried here, not inside `except`: the live exception's traceback would keep the activations allocated.
        if self.halves or real.shape[0] < 2:
            raise SynthaugError(f"out of memory at batch {real.shape[0]} on {self.device}; "
                                f"resume with a smaller --batch-size")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.halves = True
        warnings.warn(f"out of memory on {self.device} at batch {real.shape[0]}: each batch now trains as two "
                      f"updates on {real.shape[0] // 2} images", stacklevel=3)
        try:
            return self._step(train_step, real, labels, want)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
        raise SynthaugError(f"out of memory at batch {real.shape[0]} on {self.device} even as two halves; "
                            f"resume with a smaller --batch-size")

    def _step(self, train_step: Callable[[torch.Tensor, torch.Tensor, bool], dict[str, Any]], real: torch.Tensor,
              labels: torch.Tensor, want: bool) -> dict[str, Any]:
        """The step on the whole batch, or on its two halves once a batch has run out of memory."""
        if self.halves and real.shape[0] > 1:
            h = real.shape[0] // 2
            train_step(real[:h], labels[:h], False)
            return train_step(real[h:], labels[h:], want)
        return train_step(real, labels, want)

    def nonfinite(self, step: int, row: dict[str, float], restore: Callable[[], None] | None,
                  optimizers: list[torch.optim.Optimizer]) -> None:
        """A non-finite loss: `restore` the last checkpoint and halve the learning rates once, else stop."""
        if self.lr_halved or restore is None:
            raise SynthaugError(f"training diverged at step {step} (losses {row}); "
                                f"lower the learning rates or try another --loss")
        warnings.warn(f"non-finite loss at step {step}; restoring the last checkpoint with halved learning rates",
                      stacklevel=3)
        restore()
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        self.lr_halved = True
