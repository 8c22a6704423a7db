"""Conditions as typed values: names from what they are, phases at one step budget, the one runner."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import synthaug
from synthaug.conditions import Condition, TensorSource, phases_for, run_conditions, standard_conditions
from synthaug.errors import DataError


@pytest.fixture(scope="module")
def digits(digits_dir):
    return synthaug.load_image_folder(digits_dir, progress=False)


@pytest.fixture(scope="module")
def extra(digits):
    """Held-out-style extra images: the first 200 digits again, as a source."""
    return TensorSource(digits.images[:200], digits.labels[:200], alone="held-out only", mixed="real + held-out")


def test_names_come_from_the_condition(extra):
    assert Condition().name == "real"
    assert Condition(baseline="weighted").name == "real + class-weighted loss"
    assert Condition(extra, with_real=False, soft=True).name == "held-out only (soft labels)"
    assert Condition(extra, 0.5, mix="finetune:0.25").name == "real + held-out x0.5 finetune:0.25"
    assert Condition(extra).name == "real + held-out"
    names = [c.name for c in standard_conditions(TensorSource(torch.zeros(1, 1, 8, 8, dtype=torch.uint8),
                                                              torch.zeros(1, dtype=torch.long)),
                                                 (1.0,), ("concat", "weighted:0.3"), ("hard", "soft"))]
    assert names == ["real", "synthetic", "mixed x1", "mixed x1 weighted:0.3", "synthetic (soft labels)",
                     "mixed x1 (soft labels)", "mixed x1 weighted:0.3 (soft labels)"]
    with pytest.raises(DataError, match="unknown mix recipe"):
        Condition(extra, 1.0, mix="blend")
    with pytest.raises(DataError, match="needs real images"):
        Condition(None, with_real=False)


def test_phases_keep_the_step_budget(digits, extra):
    finetune = phases_for(Condition(extra, 0.1, mix="finetune:0.25"), digits, seed=0, steps=100)
    assert [p.steps for p in finetune] == [25, 75] and len(finetune[0].pools[0]) == round(0.1 * len(digits))
    weighted = phases_for(Condition(extra, 1.0, mix="weighted:0.3"), digits, seed=0, steps=10)
    assert len(weighted) == 1 and weighted[0].shares == [0.7, 0.3]
    concat = phases_for(Condition(extra), digits, seed=0, steps=10)
    assert len(concat[0].pools) == 1 and len(concat[0].pools[0]) == len(digits) + 200


def test_the_runner_trains_each_condition_per_seed(digits, extra):
    recipe = synthaug.ClassifierRecipe(steps=20, batch_size=32)
    conditions = [Condition(), Condition(extra, with_real=False)]
    results = run_conditions(conditions, digits, digits, recipe, seeds=2, device=torch.device("cpu"))
    assert list(results) == ["real", "held-out only"]
    assert results["held-out only"]["train_images"] == 200 and results["real"]["train_images"] == len(digits)
    assert [r["seed"] for r in results["real"]["runs"]] == [0, 1]
    again = run_conditions(conditions[:1], digits, digits, recipe, seeds=1, device=torch.device("cpu"))
    assert again["real"]["accuracy"] == results["real"]["runs"][0]["accuracy"]  # same seed, same classifier
    with pytest.raises(DataError, match="two conditions share a name"):
        run_conditions([Condition(), Condition()], digits, digits, recipe, 1, torch.device("cpu"))


def test_a_journalled_run_resumes_where_it_stopped(digits, extra, tmp_path):
    recipe = synthaug.ClassifierRecipe(steps=10, batch_size=32)
    conditions = [Condition(), Condition(extra, with_real=False)]
    journal = tmp_path / "runs.json"
    first = run_conditions(conditions, digits, digits, recipe, seeds=1, device=torch.device("cpu"), journal=journal)
    saved = json.loads(journal.read_text())
    assert len(saved) == 2 and all(r["seed"] == 0 for r in saved.values())
    key = next(k for k in saved if k.startswith("real|"))
    saved[key]["accuracy"] = 0.123  # a mark: a rerun that trained again would not carry it
    journal.write_text(json.dumps(saved))
    more = run_conditions(conditions, digits, digits, recipe, seeds=2, device=torch.device("cpu"), journal=journal)
    assert more["real"]["runs"][0]["accuracy"] == 0.123  # taken from the journal, not trained again
    assert more["held-out only"]["runs"][0] == first["held-out only"]["runs"][0]
    assert len(json.loads(journal.read_text())) == 4  # only seed 1 was trained, and journalled as it landed
    other = dataclasses.replace(recipe, steps=12)  # another recipe is another run
    assert run_conditions(conditions[:1], digits, digits, other, 1, torch.device("cpu"),
                          journal=journal)["real"]["accuracy"] != 0.123
    refit = TensorSource(extra.images.flip(-1), extra.labels, alone=extra.alone)  # same name, other images
    key_of = {k.split("|")[0] for k in json.loads(journal.read_text())}
    assert "held-out only" in key_of
    assert run_conditions([Condition(refit, with_real=False)], digits, digits, recipe, 1, torch.device("cpu"),
                          journal=journal)["held-out only"]["runs"][0] != first["held-out only"]["runs"][0]
    assert len(json.loads(journal.read_text())) == 6  # a run of its own, not the journalled one of `extra`
    journal.write_text("{torn")
    assert run_conditions(conditions[:1], digits, digits, recipe, 1, torch.device("cpu"), journal=journal)["real"][
        "accuracy"] == first["real"]["runs"][0]["accuracy"]  # a damaged journal: trained again, same bytes


def test_two_names_for_one_training_train_once(digits, tmp_path):
    recipe = synthaug.ClassifierRecipe(steps=10, batch_size=32)  # a random shift and plain cross-entropy: 'plain'
    journal = tmp_path / "runs.json"
    run_conditions([Condition()], digits, digits, recipe, 1, torch.device("cpu"), journal=journal)
    saved = json.loads(journal.read_text())
    saved[next(iter(saved))]["accuracy"] = 0.123  # a mark: a condition that trained again would not carry it
    journal.write_text(json.dumps(saved))
    conditions = [Condition(), Condition(baseline="plain"), Condition(baseline="trivial")]
    results = run_conditions(conditions, digits, digits, recipe, 1, torch.device("cpu"), journal=journal)
    assert list(results) == ["real", "real + plain", "real + trivial"]
    assert results["real + plain"]["accuracy"] == 0.123  # the same training as 'real': taken from it
    assert results["real + trivial"]["accuracy"] != 0.123  # another recipe: trained
    assert len(json.loads(journal.read_text())) == 3  # and each name journalled
