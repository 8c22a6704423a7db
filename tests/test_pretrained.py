"""The shipped Fashion-MNIST generator exports in seconds on a fresh machine."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import synthaug
from synthaug_cli.main import cli

SHIPPED = ["fashion-mnist", "fashion-mnist-sngan"]  # the best generator, and the default recipe's


def test_both_are_shipped():
    assert set(SHIPPED) <= set(synthaug.list_pretrained())


@pytest.mark.parametrize("name", SHIPPED)
def test_export_pretrained(tmp_path, name):
    gen = synthaug.load_generator(synthaug.pretrained_path(name))
    assert gen.image_shape == (1, 28, 28) and "Sneaker" in gen.class_names
    out = tmp_path / "fm.h5"
    r = CliRunner().invoke(cli, ["export", "--pretrained", name, "--per-class", "50", "--out", str(out),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    with h5py.File(out) as f:
        assert f["images"].shape == (500, 1, 28, 28)
        assert np.bincount(f["labels"][()]).tolist() == [50] * 10
        assert 10 < f["images"][()].mean() < 200  # images, not a blank or saturated tensor
