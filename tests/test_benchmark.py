"""The downstream benchmark on real digits with tiny budgets: schema and sane numbers."""
from __future__ import annotations

import json

import synthaug
from synthaug.benchmark import format_table


def test_benchmark_report(tiny_run, digits_splits, tmp_path):
    syn = synthaug.export(tiny_run, tmp_path / "s.h5", per_class=20, progress=False)
    recipe = synthaug.ClassifierRecipe(steps=60, batch_size=64)
    report = synthaug.benchmark(digits_splits / "train", None, syn, recipe=recipe, ratios=(0.5,),
                                out=tmp_path / "b.json", progress=False)
    assert set(report["results"]) == {"real", "synthetic", "mixed x0.5"}
    real = report["results"]["real"]
    assert real["train_images"] == 1400 and report["results"]["mixed x0.5"]["train_images"] == 1600
    assert real["accuracy"] > 0.5  # 60 steps on real digits already beat chance by far
    assert len(real["per_class_recall"]) == 10 and len(real["confusion"]) == 10
    assert json.loads((tmp_path / "b.json").read_text())["results"]["real"]["accuracy"] == real["accuracy"]
    assert "| real | 1400 |" in format_table(report)
