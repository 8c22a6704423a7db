"""`tune`: the search runs on a validation split of the training folder only, and export follows its choice."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

import synthaug
from synthaug import ExportConfig, SamplingConfig
from synthaug.data.h5format import validate_export
from synthaug.runs import read_sampling
from synthaug_cli.main import cli


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, digits_splits):
    """A run with two epoch snapshots on digits/train; its test/ sibling then holds only undecodable files."""
    root = tmp_path_factory.mktemp("tune")
    shutil.copytree(digits_splits, root / "digits")
    run = synthaug.fit(root / "digits", root / "run", arch="conv", epochs=2, batch_size=64, sample_every=1,
                       progress=False)
    for png in (root / "digits" / "test").rglob("*.png"):
        png.write_bytes(b"not an image: choosing must never open test/")
    return run


@pytest.mark.slow
def test_tune_chooses_on_the_training_folder_and_export_uses_its_choice(split_run, tmp_path):
    recipe = synthaug.ClassifierRecipe(steps=4, batch_size=32)
    result = synthaug.tune(split_run, recipe=recipe, teacher_steps=4, progress=False)
    stages = [row["stage"] for row in result["trials"]]
    assert stages[:4] == ["snapshots"] * 4  # generator.pt, two snapshots and their pool
    assert {"latent scale", "filter", "labels", "use"} <= set(stages)
    chosen = read_sampling(split_run)
    assert json.loads((split_run / "sampling.json").read_text())["sampling"] == result["sampling"]
    use = {float(r): a for r, a in result["use_val_accuracy"].items()}
    assert set(use) == {0.0, 0.5, 1.0} and result["recommended_ratio"] == max(use, key=use.get)
    assert result["verdict"].startswith("no synthetic data" if result["recommended_ratio"] == 0 else "mix ")

    def accuracy(sampling: dict) -> float:
        return next(t["val_accuracy"] for t in result["trials"] if t["sampling"] == sampling and t["ratio"] is None)

    other = {**result["sampling"], "soft_labels": not result["sampling"]["soft_labels"]}
    assert accuracy(result["sampling"]) >= accuracy(other)  # the better label kind won
    out = synthaug.export(split_run, tmp_path / "t.h5", ExportConfig(per_class=3), progress=False)
    assert validate_export(out).provenance["sampling"] == result["sampling"]
    assert validate_export(out).provenance["latent_scale"] == chosen.latent_scale
    override = ExportConfig(per_class=3, sampling=SamplingConfig(latent_scale=0.5))
    out2 = synthaug.export(split_run, tmp_path / "o.h5", override, progress=False)
    assert validate_export(out2).provenance["latent_scale"] == 0.5


def test_tune_flags_give_one_line_errors(split_run):
    for args, text in ((["--holdout", "1.5"], "--holdout must lie strictly between 0 and 1"),
                       (["--steps", "0"], "--steps and --teacher-steps must be at least 1")):
        result = CliRunner().invoke(cli, ["tune", str(split_run), *args])
        assert result.exit_code == 2 and text in result.output
