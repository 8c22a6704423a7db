"""A real Fashion-MNIST smoke run through the command line (when Debian's dataset-fashion-mnist is installed)."""
from __future__ import annotations


import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from synthaug.data.fashion_mnist import CLASS_NAMES, DEFAULT_SOURCE, load_fashion_mnist
from synthaug_cli.main import cli

pytestmark = pytest.mark.skipif(not (DEFAULT_SOURCE / "train-images-idx3-ubyte.gz").is_file(),
                                reason="apt-get install dataset-fashion-mnist")


def test_idx_files_hold_the_full_data_set():
    images, labels = load_fashion_mnist("train")
    assert images.shape == (60000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28)


@pytest.mark.slow
def test_fashion_mnist_smoke(tmp_path):
    runner = CliRunner()
    data = tmp_path / "fashion"
    assert runner.invoke(cli, ["datasets", "fashion-mnist", str(data), "--limit", "600"]).exit_code == 0
    assert sorted(p.name for p in (data / "train").iterdir()) == sorted(CLASS_NAMES)
    run = tmp_path / "run"
    r = runner.invoke(cli, ["fit", str(data), "--out", str(run), "--max-steps", "5", "--batch-size", "16", "--quiet"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "s.h5"
    r = runner.invoke(cli, ["export", "--run", str(run), "--per-class", "8", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (80, 1, 28, 28)
    r = runner.invoke(cli, ["benchmark", "--synthetic", str(out), "--steps", "10", "--baseline", "plain", "--out",
                            str(tmp_path / "b.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "| real | 600 |" in r.output
