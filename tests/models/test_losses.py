"""Loss pairs against hand-computed values, and the registry that names them."""
from __future__ import annotations

import math

import pytest
import torch

from synthaug.errors import SynthaugError
from synthaug.losses import LOSSES, d_bce, d_hinge, d_lsgan, g_bce, g_hinge, g_lsgan, get_loss, list_losses

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.0, 3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bce_pair_matches_hand_computation():
    # BCE with logits: target t gives t*softplus(-x) + (1-t)*softplus(x); smoothing puts real targets at 0.9
    real = sum(0.9 * softplus(-x) + 0.1 * softplus(x) for x in (2.0, -1.0)) / 2
    fake = sum(softplus(x) for x in (0.0, 3.0)) / 2
    assert d_bce(REAL, FAKE, 0.9).item() == pytest.approx(real + fake, rel=1e-6)
    assert g_bce(FAKE).item() == pytest.approx(sum(softplus(-x) for x in (0.0, 3.0)) / 2, rel=1e-6)


def test_hinge_pair_matches_hand_computation():
    # mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + 2)/2 + (1 + 4)/2
    assert d_hinge(REAL, FAKE).item() == pytest.approx(1.0 + 2.5)
    assert g_hinge(FAKE).item() == pytest.approx(-1.5)


def test_lsgan_pair_matches_hand_computation():
    # 0.5 * mean((real - 1)^2) + 0.5 * mean(fake^2) = 0.5 * (1 + 4)/2 + 0.5 * (0 + 9)/2
    assert d_lsgan(REAL, FAKE).item() == pytest.approx(1.25 + 2.25)
    assert g_lsgan(FAKE).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_registry_of_losses():
    assert list_losses() == ["bce", "hinge", "lsgan"] == LOSSES.names()
    assert get_loss("lsgan").d_loss is d_lsgan and get_loss("lsgan").uses_smoothing
    assert not get_loss("hinge").uses_smoothing
    with pytest.raises(SynthaugError, match="unknown loss 'wgan'; choose one of bce, hinge, lsgan"):
        get_loss("wgan")
    with pytest.raises(ValueError, match="already registered"):
        LOSSES.add("bce", get_loss("bce"))


def test_the_lsgan_path_trains(digits_dir, tmp_path):
    import synthaug
    from synthaug.config import load_run_config
    from synthaug.runs import load_safe

    run = synthaug.fit(digits_dir, tmp_path / "ls", arch="conv", loss="lsgan", epochs=1, max_steps=4, batch_size=16,
                       progress=False)
    assert load_run_config(run).train.loss == "lsgan"
    rows = [r for r in map(__import__("json").loads, (run / "log.jsonl").read_text().splitlines())]
    assert rows and all(math.isfinite(r["d_loss"]) and r["d_loss"] >= 0 for r in rows)  # a sum of squares
    assert load_safe(run / "checkpoint.pt")["step"] == 4
