"""The examples run as a user would run them, on tiny budgets over real digits."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import synthaug
from synthaug import ExportConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(args, tmp_path):
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)


@pytest.mark.slow
def test_quickstart(digits_splits, tmp_path):
    p = _run([str(EXAMPLES / "quickstart.py"), "--data", str(digits_splits), "--work", str(tmp_path / "w"),
              "--arch", "mlp", "--minutes", "0.05", "--per-class", "20", "--steps", "20", "--teacher-steps", "20"],
             tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "a synthetic batch: (200, 1, 8, 8)" in p.stdout
    assert re.search(r"\| real \| 1400 \| \d+\.\d+% \|", p.stdout)
    assert re.search(r"tune: (no synthetic data: the best baseline|.+ synthetic per real)", p.stdout)
    report = json.loads((tmp_path / "w" / "report" / "report.json").read_text())
    advice = json.loads((tmp_path / "w" / "run" / "sampling.json").read_text())["search"]["advice"]
    assert report["baseline_choice"]["how"] == "tune's advice for the run"
    assert report["ratios"] == [(advice["synthetic"] or {"ratio": 1.0})["ratio"]]
    assert (tmp_path / "w" / "report" / "report.json").is_file()


def test_train_with_synthetic(tiny_run, digits_splits, tmp_path):
    syn = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=10), progress=False)
    p = _run([str(EXAMPLES / "train_with_synthetic.py"), "--real", str(digits_splits / "train"), "--test",
              str(digits_splits / "test"), "--synthetic", str(syn), "--max-batches", "3"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "on 1500 images (1400 real)" in p.stdout
    assert re.search(r"test accuracy on real images: \d+\.\d+%", p.stdout)


@pytest.mark.slow
def test_imbalanced_topup(digits_splits, tmp_path):
    p = _run([str(EXAMPLES / "imbalanced_topup.py"), "--data", str(digits_splits), "--rare", "digit3,digit8",
              "--keep", "0.05", "--minutes", "0.05", "--arch", "mlp", "--steps", "15", "--work", str(tmp_path / "w")],
             tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "'digit3': 7" in p.stdout and "| real + synthetic top-up" in p.stdout
    assert (tmp_path / "w" / "report" / "report.md").is_file()
