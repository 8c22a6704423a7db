"""The protocols on real digits with tiny budgets: what each trains on, what it reports, what it refuses."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

import synthaug
from conftest import write_rgb_digits
from synthaug import protocols
from synthaug.benchmarking import TEACHER, stratified_indices
from synthaug.config import FitSettings
from synthaug.errors import DataError
from synthaug.protocols import HeadroomOptions, ImbalanceOptions, LowDataOptions, TopUpOptions
from synthaug.report import imbalance_table, low_data_table, write_protocol_report

TINY = synthaug.ClassifierRecipe(steps=60, batch_size=64)
TINY_FIT = FitSettings(arch="mlp", max_steps=30, epochs=1000, batch_size=32)


def test_held_out_split_is_disjoint_per_class_and_bounded():
    labels = np.repeat(np.arange(3), [100, 50, 20])
    keep, held = protocols.held_out_split(labels, 0.1, 2.0, "data")
    assert (keep == stratified_indices(labels, 0.1, seed=0)).all()  # the subset low_data fits its generator on
    assert not set(keep.tolist()) & set(held.tolist()) and len(held) == 2 * len(keep)
    assert np.bincount(labels[held]).tolist() == [20, 10, 4]  # the subset's class proportions, twice over
    with pytest.raises(DataError, match="data: fraction 0.5 at ratio 2 needs 170 held-out images, but only 85 remain"):
        protocols.held_out_split(labels, 0.5, 2.0, "data")


def test_headroom_protocol_mixes_held_out_real_images(digits_splits, tmp_path):
    report = protocols.headroom(HeadroomOptions(real=str(digits_splits / "train"), fractions=(0.25,),
                                                ratios=(0.5, 1.0), recipe=TINY, baseline=None), progress=False)
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
    options = LowDataOptions(real=str(digits_splits / "train"), fractions=(0.1, 1.0), work=str(tmp_path / "work"),
                             fit=TINY_FIT, ratios=(1.0,), recipe=TINY, min_per_class=20, mixes=("concat", "finetune"),
                             baseline=None)
    report = protocols.low_data(options, progress=False)
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
    again = protocols.low_data(dataclasses.replace(options, fractions=(0.1,), labels="hard"), progress=False)
    assert again["rows"]["0.1"]["results"]["real"]["accuracy"] == small["results"]["real"]["accuracy"]


@pytest.mark.slow
def test_imbalance_protocol_tops_up_the_rare_classes_against_the_baseline_and_the_ceiling(digits_splits, tmp_path):
    options = ImbalanceOptions(real=str(digits_splits / "train"), rare=("digit3", "digit8"), keep=0.05,
                               fit=dataclasses.replace(TINY_FIT, class_balance=True), recipe=dataclasses.replace(TINY, steps=30),
                               work=str(tmp_path / "work"), baseline="logit-adjusted", teacher_steps=40,
                               translated=True)
    report = protocols.imbalance(options, progress=False)
    assert report["class_counts"][3] == 7 and report["class_counts"][8] == 7 and report["class_counts"][0] == 140
    rows = dict(report["rows"])
    tuned = rows.pop("tuned top-up")
    assert rows.pop("translated top-up") == "real + translated top-up + logit-adjusted loss"
    assert rows == {"real": "real", "baseline": "real + logit-adjusted loss",
                    "top-up": "real + synthetic top-up + logit-adjusted loss",
                    "ceiling": "real + held-out real top-up + logit-adjusted loss"}
    assert tuned.startswith("real + tuned synthetic top-up + logit-adjusted loss")
    assert set(report["results"]) == set(report["rows"].values())
    choice = report["top_up_choice"]
    assert choice["trials"][0]["shape"] is None  # the baseline alone, scored on validation first
    if choice["shape"]["classes"]:  # kept only where it beat the baseline alone on validation
        assert choice["val_balanced_accuracy"] > choice["baseline_val_balanced_accuracy"]
        assert set(choice["shape"]["classes"]) <= {3, 8}
    else:  # refused: the row trains on the real images alone, exactly like the baseline row
        assert report["results"][tuned]["accuracy"] == report["results"]["real + logit-adjusted loss"]["accuracy"]
    top = report["results"]["real + synthetic top-up + logit-adjusted loss"]
    ceiling = report["results"]["real + held-out real top-up + logit-adjusted loss"]
    translated = report["results"]["real + translated top-up + logit-adjusted loss"]
    assert top["train_images"] == ceiling["train_images"] == translated["train_images"] == 1400  # all at 140
    assert set(report["translation"]["per_class"]) == {"digit3", "digit8"}
    assert report["translation"]["classifier_loss"] == "logit-adjusted"  # the baseline's remedy, not plain
    assert_rare_recall_follows_from_the_runs(report, [3, 8])
    adjusted = report["results"]["real + logit-adjusted loss"]["runs"][0]
    assert adjusted["confusion"] != report["results"]["real"]["runs"][0]["confusion"]  # the loss changed training
    kept = json.loads((tmp_path / "work" / "top-up-choice.json").read_text())  # a rerun neither searches nor trains
    assert kept["choice"]["shape"] == json.loads(json.dumps(choice["shape"])) and kept["for"]["rare"] == [3, 8]
    assert len(json.loads((tmp_path / "work" / "runs.json").read_text())) == len(report["rows"])  # one seed each
    write_protocol_report(report, tmp_path / "rep")
    table = imbalance_table(report)
    assert "recall digit3" in table and "synthetic top-up vs real + logit-adjusted loss" in table
    assert "translated top-up vs real + logit-adjusted loss" in table
    gap = ceiling["rare_recall"] - report["results"]["real + logit-adjusted loss"]["rare_recall"]
    assert ("gap to the real-image ceiling" in table) == (gap > 0)
    assert (tmp_path / "rep" / "per_class_recall.png").is_file()
    with Image.open(tmp_path / "rep" / "rare_samples.png") as im:  # real, synthetic, translated per rare class
        assert im.format == "PNG" and im.height > 150
    saved = report["translation"]["saved"]
    assert saved == str(tmp_path / "work" / "translated.npz") and Path(saved).is_file()
    mtime = Path(saved).stat().st_mtime_ns
    again = protocols.imbalance(options, progress=False)  # resumes: journal, top-up choice and translation reused
    assert Path(saved).stat().st_mtime_ns == mtime and again["translation"]["per_class"] == report["translation"][
        "per_class"]
    assert "rare_samples.png" in (tmp_path / "rep" / "report.md").read_text()
    # the ceiling's images are the cut ones: never in the training folder, and of the rare classes only
    held_train = {p.resolve() for p in (tmp_path / "work" / "real-imbalanced").rglob("*.png")}
    assert len(held_train) == 8 * 140 + 2 * 7
    auto = protocols.imbalance(dataclasses.replace(options, baseline="auto"), progress=False)
    assert auto["baseline_choice"]["how"] == "chosen on validation" and auto["rows"]["baseline"] in auto["results"]
    with pytest.raises(synthaug.SynthaugError, match="no class"):
        protocols.imbalance(dataclasses.replace(options, rare=("cat",), work=str(tmp_path / "w2")), progress=False)


def assert_rare_recall_follows_from_the_runs(report: dict, rare_ids: list[int]) -> None:
    """Each condition's rare recall is the mean over seeds of the rare classes' recall in its confusion matrices."""
    for name, r in report["results"].items():
        per_run = []
        for run in r["runs"]:
            confusion = np.array(run["confusion"])
            per_run.append(np.mean([confusion[c, c] / confusion[c].sum() for c in rare_ids]))
        assert r["rare_recall"] == pytest.approx(np.mean(per_run)), name
        assert r["rare_recall_std"] == pytest.approx(np.std(per_run)), name


def test_rare_classes_are_those_under_half_the_largest():
    assert protocols.rare_classes([140, 20, 140, 69, 70]) == [1, 3]
    assert protocols.rare_classes([10, 10]) == []


@pytest.mark.slow
def test_top_up_tops_a_folders_own_rare_classes_up(tmp_path):
    from conftest import write_digits

    full = write_digits(tmp_path / "full", per_class=60)
    labels = np.repeat(np.arange(10), 60)
    keep = np.flatnonzero((labels != 3) & (labels != 8) | (np.arange(600) % 60 < np.where(labels == 3, 10, 20)))
    train = protocols.subset_folder(full, tmp_path / "uneven" / "train", keep)  # digit3 at 10, digit8 at 20
    write_digits(tmp_path / "uneven" / "test", offset=140)
    run = synthaug.fit(train, tmp_path / "run", TINY_FIT, progress=False)
    options = TopUpOptions(synthetic=str(run), recipe=TINY, work=str(tmp_path / "work"), teacher_steps=40,
                           baseline="weighted")  # the search has tests of its own
    report = protocols.top_up(options, progress=False)
    assert report["rare"] == ["digit3", "digit8"] and report["class_counts"][3] == 10
    assert "ceiling" not in report["rows"]  # a folder's own imbalance has no held-out images of its rare classes
    assert report["results"][report["rows"]["top-up"]]["train_images"] == 600  # every class at 60
    held = protocols.images_not_in(full, train)  # the ceiling's pool: the folder's images minus those in train
    assert sorted(held.tolist()) == sorted(set(range(600)) - set(keep.tolist()))
    ceiling = protocols.top_up(dataclasses.replace(options, held_out=str(full)), progress=False,
                               rows=("baseline", "ceiling"))
    assert ceiling["results"][ceiling["rows"]["ceiling"]]["train_images"] == 600  # topped up with the 90 held out
    with pytest.raises(DataError, match="every image is also in"):
        protocols.images_not_in(train, train)
    assert report["results"]["real"]["train_images"] == 510
    assert_rare_recall_follows_from_the_runs(report, [3, 8])
    top_up = synthaug.SyntheticDataset(tmp_path / "work" / "top-up.h5")
    assert np.bincount(top_up.targets, minlength=10).tolist() == [0, 0, 0, 50, 0, 0, 0, 0, 40, 0]  # the gaps only
    write_protocol_report(report, tmp_path / "rep")
    assert "top-up benchmark" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(synthaug.SynthaugError, match="no class holds under 0.5"):
        protocols.top_up(dataclasses.replace(options, real=str(tmp_path / "uneven" / "test"),
                                             work=str(tmp_path / "w2")), progress=False)


@pytest.mark.slow
def test_every_condition_sees_real_images_at_the_generators_shape(tmp_path):
    """A folder of 64-px RGB images, a run at 16 px: the comparison and the top-up both decode at 16 px."""
    data = tmp_path / "big"
    train = write_rgb_digits(data / "train", {0: 40, 1: 40, 2: 10})
    write_rgb_digits(data / "test", {0: 10, 1: 10, 2: 10}, offset=100)
    run = synthaug.fit(train, tmp_path / "run", FitSettings(arch="mlp", resolution=16, max_steps=4, batch_size=16),
                       progress=False)
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    for name, extra in (("compare", ["--ratios", "1", "--no-logreg"]),
                        ("top-up", ["--top-up", "--work", str(tmp_path / "work")])):
        p = subprocess.run([sys.executable, "-m", "synthaug_cli", "benchmark", "--synthetic", str(run), "--steps", "3",
                            "--baseline", "plain", "--teacher-steps", "6", "--out", str(tmp_path / name), "--quiet",
                            *extra],
                           capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["image_shape"] == [3, 16, 16], name
    assert report["rare"] == ["digit2"] and report["results"][report["rows"]["top-up"]]["train_images"] == 120
    kept = json.loads((tmp_path / "work" / "top-up-choice.json").read_text())
    assert kept["for"]["teacher_steps"] == 6  # the top-up search's teacher took --teacher-steps, not 500 steps


@pytest.mark.parametrize("args, flag, protocol", [
    (["--imbalance", "digit3", "--mix-recipe", "finetune"], "--mix-recipe", "imbalance"),
    (["--imbalance", "digit3", "--min-confidence", "0.5"], "--min-confidence", "imbalance"),
    (["--real-fraction", "0.5", "--headroom", "--fit-steps", "5"], "--fit-steps", "headroom"),
    (["--real-fraction", "0.5", "--headroom", "--labels", "soft"], "--labels", "headroom"),
    (["--top-up", "--synthetic", "fashion-mnist", "--logreg"], "--logreg", "top-up"),
    (["--top-up", "--synthetic", "fashion-mnist", "--keep", "0.1"], "--keep", "top-up"),
    (["--synthetic", "fashion-mnist", "--work", "w"], "--work", "compare"),
    (["--synthetic", "fashion-mnist", "--fit-arch", "sngan"], "--fit-arch", "compare"),
    (["--imbalance", "digit3", "--held-out", "."], "--held-out", "imbalance"),
    (["--synthetic", "fashion-mnist", "--translated"], "--translated", "compare"),
])
def test_a_flag_the_protocol_does_not_take_is_one_line(args, flag, protocol, digits_splits):
    """The installed command, as a user runs it: exit 2, one line naming the flag and the protocol."""
    p = subprocess.run([sys.executable, "-m", "synthaug_cli", "benchmark", "--real", str(digits_splits / "train"),
                        *args], capture_output=True, text=True, timeout=120)
    lines = [line for line in p.stderr.splitlines() if line.startswith("Error")]
    assert p.returncode == 2 and lines == [f"Error: {flag} is not used by the {protocol} protocol"], p.stderr
    assert "Traceback" not in p.stderr


def test_protocols_are_found_by_name_and_take_their_own_options():
    assert protocols.PROTOCOLS.names() == ["compare", "headroom", "imbalance", "low-data", "top-up"]
    assert "mixes" in protocols.protocol_fields("compare") and "mixes" not in protocols.protocol_fields("imbalance")
    with pytest.raises(DataError, match="the imbalance protocol takes ImbalanceOptions, not HeadroomOptions"):
        protocols.run_protocol("imbalance", HeadroomOptions(real="x", fractions=(0.5,)))
    with pytest.raises(synthaug.SynthaugError, match="unknown benchmark protocol 'plain'"):
        protocols.PROTOCOLS.get("plain")
    with pytest.raises(DataError, match=r"real fractions must lie in \(0, 1\)"):
        HeadroomOptions(real="x", fractions=(1.0,))
    with pytest.raises(DataError, match="keep must lie strictly between 0 and 1"):
        ImbalanceOptions(real="x", rare=("a",), keep=1.5)
    with pytest.raises(DataError, match="top-up needs a run"):
        TopUpOptions(real="x")
