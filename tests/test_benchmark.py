"""The downstream benchmark and its protocols on real digits with tiny budgets: schema, files, sane numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import synthaug
from synthaug import ExportConfig
from synthaug import protocols
from synthaug.benchmark import LOGREG, TEACHER, stratified_indices
from synthaug.report import format_table
from synthaug.errors import DataError
from synthaug.report import imbalance_table, low_data_table, write_protocol_report

TINY = synthaug.ClassifierRecipe(steps=60, batch_size=64)
TINY_FIT = {"arch": "mlp", "max_steps": 30, "epochs": 1000, "batch_size": 32}


def test_benchmark_report_folder(tiny_run, digits_splits, tmp_path):
    syn = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=30), progress=False)
    report = synthaug.benchmark(digits_splits / "train", None, syn, recipe=TINY, ratios=(0.5, 1.0), seeds=2,
                                logreg=True, out=tmp_path / "rep", progress=False)
    assert set(report["results"]) == {"real", "synthetic", "mixed x0.5", "mixed x1", LOGREG}
    real = report["results"]["real"]
    assert real["train_images"] == 1400 and report["results"]["mixed x0.5"]["train_images"] == 1700
    assert report["results"]["mixed x1"]["train_images"] == 1700  # only 300 synthetic images exist
    assert real["accuracy"] > 0.5 and report["results"][LOGREG]["accuracy"] > 0.85  # both far above chance
    assert real["seeds"] == 2 and [r["seed"] for r in real["runs"]] == [0, 1] and real["accuracy_std"] >= 0
    assert real["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in real["runs"]]))
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


def test_held_out_split_is_disjoint_per_class_and_bounded():
    labels = np.repeat(np.arange(3), [100, 50, 20])
    keep, held = protocols.held_out_split(labels, 0.1, 2.0, "data")
    assert (keep == stratified_indices(labels, 0.1, seed=0)).all()  # the subset low_data fits its generator on
    assert not set(keep.tolist()) & set(held.tolist()) and len(held) == 2 * len(keep)
    assert np.bincount(labels[held]).tolist() == [20, 10, 4]  # the subset's class proportions, twice over
    with pytest.raises(DataError, match="data: fraction 0.5 at ratio 2 needs 170 held-out images, but only 85 remain"):
        protocols.held_out_split(labels, 0.5, 2.0, "data")


def test_headroom_protocol_mixes_held_out_real_images(digits_splits, tmp_path):
    report = protocols.headroom(digits_splits / "train", None, [0.25], ratios=(0.5, 1.0), recipe=TINY,
                                progress=False)
    row = report["rows"]["0.25"]
    assert row["real_images"] == 350 and row["held_out_images"] == 350
    counts = {name: r["train_images"] for name, r in row["results"].items()}
    assert counts == {"real": 350, "held-out only": 350, "real + held-out x0.5": 525, "real + held-out x1": 700}
    assert all(r["accuracy"] > 0.3 for r in row["results"].values())  # real digits: far above chance (0.1)
    write_protocol_report(report, tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "headroom" in md and "| 0.25 | 350 |" in md


@pytest.mark.slow
def test_low_data_protocol_fits_on_the_fraction_only(digits_splits, tmp_path):
    report = protocols.low_data(digits_splits / "train", None, [0.1, 1.0], tmp_path / "work", fit_settings=TINY_FIT,
                                ratios=(1.0,), recipe=TINY, min_per_class=20, progress=False,
                                mixes=("concat", "finetune"))
    small = report["rows"]["0.1"]
    assert small["real_images"] == 140 and set(small["results"]) == {
        "real", "synthetic", "mixed x1", "mixed x1 finetune", "synthetic (soft labels)", "mixed x1 (soft labels)",
        "mixed x1 finetune (soft labels)", TEACHER}
    syn = synthaug.SyntheticDataset(small["synthetic"])
    assert syn.info.has_soft_labels and syn.info.provenance["teacher_real"].endswith("real-0.1")  # teacher: the fraction
    subset = tmp_path / "work" / "real-0.1"
    assert sum(1 for _ in subset.rglob("*.png")) == 140 and next(subset.rglob("*.png")).is_symlink()
    cfg = json.loads((tmp_path / "work" / "gan-0.1" / "run" / "config.json").read_text())
    assert cfg["data"]["num_images"] == 140  # the generator saw the fraction, nothing more
    assert report["rows"]["1"]["real_images"] == 1400
    write_protocol_report(report, tmp_path / "rep")
    assert "| 0.1 | 140 |" in low_data_table(report) and (tmp_path / "rep" / "report.md").is_file()
    again = protocols.low_data(digits_splits / "train", None, [0.1], tmp_path / "work", fit_settings=TINY_FIT,
                               ratios=(1.0,), recipe=TINY, min_per_class=20, progress=False, labels="hard")
    assert again["rows"]["0.1"]["results"]["real"]["accuracy"] == small["results"]["real"]["accuracy"]


@pytest.mark.slow
def test_imbalance_protocol_tops_up_the_rare_classes(digits_splits, tmp_path):
    report = protocols.imbalance(digits_splits / "train", None, ["digit3", "digit8"], tmp_path / "work",
                                 keep_fraction=0.05, fit_settings=TINY_FIT, recipe=TINY, progress=False)
    assert report["class_counts"][3] == 7 and report["class_counts"][8] == 7 and report["class_counts"][0] == 140
    assert set(report["results"]) == {"imbalanced real", "imbalanced + class-weighted loss",
                                      "imbalanced + synthetic top-up"}
    top = report["results"]["imbalanced + synthetic top-up"]
    assert top["train_images"] == 1400  # every class topped up to 140
    assert all(0 <= r["rare_recall"] <= 1 for r in report["results"].values())
    write_protocol_report(report, tmp_path / "rep")
    assert "recall digit3" in imbalance_table(report)
    assert (tmp_path / "rep" / "per_class_recall.png").is_file()
    with pytest.raises(synthaug.SynthaugError, match="no class"):
        protocols.imbalance(digits_splits / "train", None, ["cat"], tmp_path / "w2", progress=False)


def test_rare_classes_are_those_under_half_the_largest():
    assert protocols.rare_classes([140, 20, 140, 69, 70]) == [1, 3]
    assert protocols.rare_classes([10, 10]) == []


@pytest.mark.slow
def test_top_up_tops_a_folders_own_rare_classes_up(tmp_path):
    from conftest import write_digits

    train = write_digits(tmp_path / "uneven" / "train", per_class=60)
    write_digits(tmp_path / "uneven" / "test", offset=140)
    for name, keep in (("digit3", 10), ("digit8", 20)):  # a folder that came uneven
        for png in sorted((train / name).glob("*.png"))[keep:]:
            png.unlink()
    run = synthaug.fit(train, tmp_path / "run", **TINY_FIT, progress=False)
    report = protocols.top_up(run, None, None, tmp_path / "work", recipe=TINY, progress=False)
    assert report["rare"] == ["digit3", "digit8"] and report["class_counts"][3] == 10
    assert report["results"]["imbalanced + synthetic top-up"]["train_images"] == 600  # every class at 60
    assert report["results"]["imbalanced real"]["train_images"] == 510
    assert all(0 <= r["rare_recall"] <= 1 and r["rare_recall_std"] >= 0 for r in report["results"].values())
    write_protocol_report(report, tmp_path / "rep")
    assert "top-up benchmark" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(synthaug.SynthaugError, match="no class holds under 0.5"):
        protocols.top_up(run, tmp_path / "uneven" / "test", None, tmp_path / "w2", progress=False)
