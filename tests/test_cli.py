"""The command line end to end, with click's runner and as a real subprocess; errors are one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from synthaug_cli.main import cli


def test_fit_export_inspect_benchmark(digits_splits, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(cli, ["fit", str(digits_splits), "--out", str(run), "--arch", "mlp", "--max-steps", "4",
                            "--batch-size", "32", "--ema", "--mode-seeking", "0.5", "--quiet"])
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["root"].endswith("train") and config["model"]["ema"] is True  # mlp's own default: False
    assert config["train"]["mode_seeking"] == 0.5  # mlp's own default: 0
    assert "mode_seeking" in json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    out = tmp_path / "s.h5"
    r = runner.invoke(cli, ["export", "--run", str(run), "--per-class", "5", "--out", str(out), "--quiet"])
    assert r.exit_code == 0 and "wrote 50 images" in r.output, r.output
    r = runner.invoke(cli, ["inspect", str(out)])
    assert json.loads(r.output)["images"] == 50
    r = runner.invoke(cli, ["benchmark", "--synthetic", str(out), "--steps", "5", "--ratios", "0.02",
                            "--out", str(tmp_path / "rep"), "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    tag = f" + {report['baseline']}" if report["baseline"] else ""  # the best baseline, chosen on validation
    assert report["baseline_choice"]["how"] == "chosen on validation"
    assert f"| synthetic{tag} | 50 |" in r.output and f"| mixed x0.02{tag} | 1428 |" in r.output  # --real/--test
    assert report["results"][f"synthetic{tag}"]["train_images"] == 50 and "best baseline" in r.output


def test_benchmark_protocol_fits_the_chosen_architecture(digits_splits, tmp_path):
    r = CliRunner().invoke(cli, ["benchmark", "--real", str(digits_splits / "train"), "--real-fraction", "0.5",
                                 "--ratios", "1", "--steps", "5", "--fit-minutes", "0.02", "--fit-arch", "mlp",
                                 "--fit-ema", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "rep"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    model = json.loads((tmp_path / "work" / "gan-0.5" / "run" / "config.json").read_text())["model"]
    assert model["arch"] == "mlp" and model["ema"] is True  # the protocol's default would be sngan
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["fit_settings"]["arch"] == "mlp" and "0.5" in report["rows"]


def test_benchmark_headroom_needs_a_fraction_and_writes_its_report(digits_splits, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["benchmark", "--real", str(digits_splits / "train"), "--headroom"])
    assert r.exit_code == 2 and "--headroom needs --real-fraction" in r.output
    r = runner.invoke(cli, ["benchmark", "--real", str(digits_splits / "train"), "--real-fraction", "0.25",
                            "--headroom", "--ratios", "1", "--steps", "5", "--out", str(tmp_path / "rep"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "| 0.25 | 350 |" in r.output and "real + held-out x1" in r.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["protocol"] == "headroom"


def test_errors_are_one_line_without_traceback(tmp_path):
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "empty").mkdir()
    for args, needle in [(["fit", str(tmp_path / "empty")], "no class folders"),
                         (["fit", str(tmp_path / "nope")], "no such folder"),
                         (["export", "--run", str(tmp_path / "empty"), "--per-class", "3", "--out", "x.h5"],
                          "has no generator.pt"),
                         (["inspect", str(tmp_path / "nope.h5")], "no such HDF5 file")]:
        p = subprocess.run([sys.executable, "-m", "synthaug_cli", *args], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
        assert p.returncode == 1, p.stderr
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_datasets_fashion_mnist_from_idx_files(tmp_path):
    import gzip

    source = tmp_path / "idx"
    source.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        with gzip.open(source / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes())
        with gzip.open(source / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())
    runner = CliRunner()
    r = runner.invoke(cli, ["datasets", "fashion-mnist", str(tmp_path / "fm"), "--source", str(source)])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "fm" / "train" / "Trouser").glob("*.png"))) == 3
    assert len(list((tmp_path / "fm" / "test").rglob("*.png"))) == 20
    r = runner.invoke(cli, ["datasets", "fashion-mnist", str(tmp_path / "fm2"), "--source", str(tmp_path / "none")])
    assert r.exit_code == 1 and "apt-get install dataset-fashion-mnist" in r.output
