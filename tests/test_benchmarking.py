"""The plain benchmark on real digits with tiny budgets: schema, files, numbers that follow from the runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import synthaug
from synthaug import ExportConfig
from synthaug.benchmarking import LOGREG, stratified_indices
from synthaug.report import format_table

TINY = synthaug.ClassifierRecipe(steps=60, batch_size=64)


def test_benchmark_report_folder(tiny_run, digits_splits, tmp_path):
    syn = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=30), progress=False)
    report = synthaug.benchmark(digits_splits / "train", None, syn, recipe=TINY, ratios=(0.5, 1.0), seeds=2,
                                logreg=True, out=tmp_path / "rep", progress=False, baseline="plain")
    assert set(report["results"]) == {"real", "synthetic", "mixed x0.5", "mixed x1", LOGREG}
    real = report["results"]["real"]
    assert real["train_images"] == 1400 and report["results"]["mixed x0.5"]["train_images"] == 1700
    assert report["results"]["mixed x1"]["train_images"] == 1700  # only 300 synthetic images exist
    assert real["accuracy"] > 0.5 and report["results"][LOGREG]["accuracy"] > 0.85  # both far above chance
    assert real["seeds"] == 2 and [r["seed"] for r in real["runs"]] == [0, 1]
    accs = [r["accuracy"] for r in real["runs"]]
    assert real["accuracy"] == pytest.approx(np.mean(accs)) and real["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert accs[0] != accs[1]  # the seeds train different classifiers
    for r in real["runs"]:  # accuracy is the confusion matrix's diagonal share
        confusion = np.array(r["confusion"])
        assert r["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert report["image_shape"] == [1, 8, 8]
    assert len(real["per_class_recall"]) == 10 and np.array(real["confusion"]).sum() == 2 * 397
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["results"]["real"]["accuracy"] == real["accuracy"] and saved["seeds"] == [0, 1]
    assert {"torch_version", "synthaug_version", "python", "recipe"} <= set(saved)
    for png in ("accuracy_vs_ratio.png", "per_class_recall.png", "confusion.png", "samples.png"):
        with Image.open(tmp_path / "rep" / png) as im:
            assert im.format == "PNG" and im.width > 200, png
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| real | 1400 |" in md and "±" in md and "![samples.png](samples.png)" in md
    assert "| real | 1400 |" in format_table(report)


def test_stratified_fraction_keeps_every_class():
    labels = np.repeat(np.arange(3), [100, 10, 1])
    idx = stratified_indices(labels, 0.1, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 1, 1]
    assert (stratified_indices(labels, 0.1, seed=0) == idx).all()
