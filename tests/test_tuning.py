"""`tune`: the search runs on a validation split of the training folder only, and export follows its choice."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import synthaug
from synthaug import ExportConfig, SamplingConfig
from synthaug.data.h5format import validate_export
from synthaug.benchmarking import advised_use, resolve_baseline
from synthaug.data.folder import load_image_folder
from synthaug.runs import read_sampling
from synthaug.selection import validation_split
from synthaug.sources import resolve_source
from synthaug_cli.commands import read_advice_of
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
def test_tune_advises_a_whole_recipe_on_the_training_folder_and_export_uses_its_choice(split_run, tmp_path):
    recipe = synthaug.ClassifierRecipe(steps=8, batch_size=32)
    result = synthaug.tune(split_run, recipe=recipe, teacher_steps=4, progress=False, sampling_search="full")
    stages = [row["stage"] for row in result["trials"]]
    assert stages[:3] == ["snapshots"] * 3  # generator.pt, the last two snapshots and their pool
    assert stages[3] == "snapshots" and {"latent scale", "filter", "labels", "use"} <= set(stages)
    assert [t["stage"] for t in result["baseline"]["trials"]][0] == "augmentation"
    chosen = read_sampling(split_run)
    saved = json.loads((split_run / "sampling.json").read_text())
    assert saved["sampling"] == json.loads(json.dumps(result["sampling"]))  # tuples come back as lists
    assert saved["search"]["advice"] == result["advice"]
    assert chosen.teacher_steps == 4 and result["teacher"]["steps"] == 4
    advice = result["advice"]
    assert advice["baseline"] == result["baseline"]["name"]
    best_use = max(result["use_val_accuracy"].values())
    # synthetic data is advised exactly when its best mix beats the best baseline alone on validation by more than
    # a standard error of the paired difference (and the top-up does no better)
    gain = result["use_gain"]
    assert gain["gain"] == pytest.approx(best_use - advice["baseline_val_balanced_accuracy"])
    clear = gain["gain"] > 0 and gain["gain"] > gain["standard_error"]
    assert (advice["synthetic"] is not None) == (clear and advice["top_up"] is None)
    assert result["verdict"].startswith("no synthetic data" if advice["synthetic"] is None else advice["recipe"])
    sampling_only = [t for t in result["trials"] if t["ratio"] is None]
    assert all(t["steps"] == 4 for t in sampling_only)  # ranked at half the budget
    assert all(t["steps"] == 8 for t in result["trials"] if t["ratio"] is not None)

    def accuracy(sampling: dict) -> float:
        return next(t["val_accuracy"] for t in sampling_only if t["sampling"] == sampling)

    other = {**result["sampling"], "soft_labels": not result["sampling"]["soft_labels"]}
    assert accuracy(result["sampling"]) >= accuracy(other)  # the better label kind won
    out = synthaug.export(split_run, tmp_path / "t.h5", ExportConfig(per_class=3), progress=False)
    assert validate_export(out).provenance["sampling"] == json.loads(json.dumps(result["sampling"]))
    assert validate_export(out).provenance["latent_scale"] == chosen.latent_scale
    override = ExportConfig(per_class=3, sampling=SamplingConfig(latent_scale=0.5))
    out2 = synthaug.export(split_run, tmp_path / "o.h5", override, progress=False)
    assert validate_export(out2).provenance["latent_scale"] == 0.5
    # benchmark takes tune's baseline for the run instead of searching again
    train = load_image_folder(split_run.parent / "digits" / "train", progress=False)
    name, how = resolve_baseline("auto", train, recipe, resolve_source(split_run), torch.device("cpu"), 0.1, False)
    assert (name, how) == (advice["baseline"], {"how": "tune's advice for the run"})
    # and the ratio and mix recipe it compares, unless the user names them
    use = advice["synthetic"] or {"ratio": 1.0, "mix": "concat"}
    assert advised_use(resolve_source(split_run), None, None)[0] == (use["ratio"],)
    assert advised_use(resolve_source(split_run), (2.0,), ("concat",)) == ((2.0,), ("concat",))
    assert read_advice_of(split_run) == advice and read_advice_of(out) is None


@pytest.mark.slow
def test_tune_skips_the_sampling_search_only_where_synthetic_data_is_clearly_below_the_baseline(split_run,
                                                                                               monkeypatch):
    from synthaug import tuning

    recipe = synthaug.ClassifierRecipe(steps=8, batch_size=32)
    auto = synthaug.tune(split_run, recipe=recipe, teacher_steps=4, progress=False, write=False)
    reach = auto["reach"]
    assert auto["trials"][0]["stage"] == "use" and auto["trials"][0]["mix"] == "finetune"  # the probe comes first
    assert reach["searched"] == (reach["gain"] >= -tuning.REACH_SE * reach["standard_error"])
    assert ("snapshots" in {t["stage"] for t in auto["trials"]}) == reach["searched"]
    monkeypatch.setattr(tuning, "REACH_SE", float("-inf"))  # nothing is in reach: not even a gain
    skipped = synthaug.tune(split_run, recipe=recipe, teacher_steps=4, progress=False, write=False)
    assert not skipped["reach"]["searched"] and skipped["synthetic_only_val_accuracy"] is None
    assert [t["stage"] for t in skipped["trials"]] == ["use"]  # the probe alone: no sampling trial, no other use
    assert skipped["sampling"]["snapshots"] is None and skipped["sampling"]["latent_scale"] == 1.0
    assert list(skipped["use_val_accuracy"]) == ["1 finetune"]
    table = tuning.format_trials(skipped)
    assert "sampling search skipped: synthetic data at default sampling (1 finetune)" in table
    # an even folder without the search has nothing for a teacher to judge: none is trained
    assert skipped["teacher"] is None and skipped["sampling"]["teacher_steps"] is None and skipped["top_up"] is None
    assert "teacher: none needed" in table
    with pytest.raises(synthaug.SynthaugError, match="unknown sampling search 'some'"):
        synthaug.tune(split_run, recipe=recipe, progress=False, write=False, sampling_search="some")
    # images grouped by file name (here by their number's first digit) are validated on in whole groups
    grouped = synthaug.tune(split_run, recipe=recipe, progress=False, write=False, group_by=r"^(\d)")
    data = load_image_folder(resolve_source(split_run).training_folder(), progress=False, group_by=r"^(\d)")
    assert grouped["group_by"] == r"^(\d)" and grouped["val_images"] == len(validation_split(data, 0.1)[1])
    assert grouped["val_images"] != skipped["val_images"]  # whole groups: not the image-by-image split's count
    assert skipped["val_near_copies"] == 0.0  # scikit-learn's digits: no image is a near-copy of another
    assert tuning.format_trials(grouped).endswith(
        f"validation: {grouped['val_images']} images, groups kept whole (^(\\d)); 0.0% with a near-copy in training")


def test_tune_flags_give_one_line_errors(split_run):
    for args, text in ((["--holdout", "1.5"], "--holdout must lie strictly between 0 and 1"),
                       (["--steps", "0"], "--steps and --teacher-steps must be at least 1")):
        result = CliRunner().invoke(cli, ["tune", str(split_run), *args])
        assert result.exit_code == 2 and text in result.output


@pytest.mark.slow
def test_tune_on_an_uneven_folder_shapes_a_rare_class_top_up(tmp_path):
    from conftest import write_digits

    train = write_digits(tmp_path / "uneven" / "train", per_class=60)
    for png in sorted((train / "digit3").glob("*.png"))[12:]:  # digit3 keeps 12 of its 60 images: a rare class
        png.unlink()
    run = synthaug.fit(train, tmp_path / "run", arch="mlp", max_steps=30, batch_size=32, progress=False)
    recipe = synthaug.ClassifierRecipe(steps=8, batch_size=32)
    result = synthaug.tune(run, recipe=recipe, teacher_steps=4, progress=False)
    assert result["teacher"]["steps"] == 4  # the top-up's shaping needs it, searched or not
    top_up = result["top_up"]
    assert top_up is not None and top_up["trials"][0]["shape"] is None  # the baseline alone, scored first
    assert tuple(top_up["trials"][1]["shape"]["classes"]) == (3,)  # every rare class, then shaped
    advice = result["advice"]
    assert advice["synthetic"] is None or advice["top_up"] is None  # one way to add images, the better one
    if advice["top_up"]:
        assert advice["val_balanced_accuracy"] > advice["baseline_val_balanced_accuracy"]
        assert result["verdict"].startswith(f"{advice['recipe']}, plus a top-up of digit3")
    elif advice["synthetic"] is None:
        assert result["verdict"].startswith("no synthetic data")
