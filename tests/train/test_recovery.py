"""The recovery unit on its own: out-of-memory halving and the one-time non-finite restore."""
from __future__ import annotations

import pytest
import torch

from synthaug.errors import SynthaugError
from synthaug.recovery import Recovery


class Step:
    """A training step over real tensors that runs out of memory at batches larger than `fits`."""

    def __init__(self, fits: int):
        self.fits, self.seen = fits, []

    def __call__(self, real: torch.Tensor, labels: torch.Tensor, want: bool) -> dict:
        if real.shape[0] > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {real.shape[0]} images")
        self.seen.append((real.shape[0], want))
        return {"n": real.shape[0], "mean": float(real.mean())}


def test_out_of_memory_once_trains_every_later_batch_as_two_halves():
    rec = Recovery(torch.device("cpu"))
    step = Step(fits=8)
    real, labels = torch.arange(16.0).view(16, 1), torch.zeros(16, dtype=torch.long)
    with pytest.warns(UserWarning, match="each batch now trains as two updates on 8 images"):
        out = rec.step(step, real, labels, want=True)
    assert rec.halves and out == {"n": 8, "mean": 11.5}  # the second half's statistics
    rec.step(step, real, labels, want=False)
    assert step.seen == [(8, False), (8, True), (8, False), (8, False)]


def test_a_second_out_of_memory_stops_with_one_line():
    real, labels = torch.zeros(16, 1), torch.zeros(16, dtype=torch.long)
    rec = Recovery(torch.device("cpu"))
    with pytest.warns(UserWarning):
        with pytest.raises(SynthaugError, match="out of memory at batch 16 on cpu even as two halves"):
            rec.step(Step(fits=4), real, labels, want=False)  # the halves do not fit either
    rec = Recovery(torch.device("cpu"))
    with pytest.warns(UserWarning):
        rec.step(Step(fits=8), real, labels, want=False)
    with pytest.raises(SynthaugError, match="out of memory at batch 32 on cpu; resume with a smaller --batch-size"):
        rec.step(Step(fits=8), torch.zeros(32, 1), torch.zeros(32, dtype=torch.long), want=False)  # already halving


def test_other_errors_pass_through():
    def broken(real, labels, want):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Recovery(torch.device("cpu")).step(broken, torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), False)


def test_non_finite_loss_restores_and_halves_the_learning_rates_once():
    net = torch.nn.Linear(2, 1)
    opts = [torch.optim.Adam(net.parameters(), lr=1e-3), torch.optim.SGD(net.parameters(), lr=0.5)]
    restored = []
    rec = Recovery(torch.device("cpu"))
    with pytest.warns(UserWarning, match="restoring the last checkpoint with halved learning rates"):
        rec.nonfinite(7, {"d_loss": float("nan")}, lambda: restored.append(True), opts)
    assert restored == [True] and rec.lr_halved
    assert [o.param_groups[0]["lr"] for o in opts] == [5e-4, 0.25]
    with pytest.raises(SynthaugError, match="training diverged at step 9"):
        rec.nonfinite(9, {"d_loss": float("inf")}, lambda: restored.append(True), opts)
    assert restored == [True]
    with pytest.raises(SynthaugError, match="training diverged at step 1"):
        Recovery(torch.device("cpu")).nonfinite(1, {}, None, opts)  # nothing to restore from
