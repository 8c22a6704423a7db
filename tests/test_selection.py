"""Choosing on validation: successive halving, the best classifier baseline, and the baselines' building blocks."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug.classify import (AUGMENT_BASELINES, IMBALANCE_BASELINES, ClassifierRecipe, _mix_soft, describe_recipe, train_on_phases,
                               Phase, TensorPool, with_baseline)
from synthaug.data.folder import cache_dir, load_image_folder, scan_folder
from synthaug.errors import DataError, SynthaugError
from synthaug import selection
from synthaug.conditions import Condition
from synthaug.selection import (auto_folds, choose_baseline, clearly_better, format_choice, near_copy_warning,
                                paired_gain, rare_classes, search_folds,
                                successive_halving, trial_outcomes, trial_outcomes_many, validation_split)

TINY = ClassifierRecipe(steps=16, batch_size=32)
ICONS = Path(__file__).resolve().parent / "assets" / "icons"  # each icon drawn at 32 and 48 px: <size>-<name>.png
ICON_GROUPS = r"^\d+x\d+-(.+)\.png$"



def test_successive_halving_keeps_the_better_half_at_twice_the_budget():
    calls = []

    def score(name: str, steps: int) -> float:
        calls.append((name, steps))
        return {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.9, "e": 0.2}[name] + steps / 1000

    rows = []
    assert successive_halving("abcde", score, budget=40, rungs=3, stage="s", rows=rows) == "d"
    assert calls[:5] == [(n, 10) for n in "abcde"]
    assert calls[5:8] == [("d", 20), ("b", 20), ("c", 20)]  # ceil(5 / 2) survivors, best first
    assert calls[8:] == [("d", 40), ("b", 40)]
    assert len(rows) == len(calls) and rows[0] == {"stage": "s", "name": "a", "steps": 10, "val": 0.11}


def test_successive_halving_from_half_the_budget_brings_only_the_finalists_to_the_full_budget():
    calls = []

    def score(name: str, steps: int) -> float:
        calls.append((name, steps))
        return {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.9, "e": 0.2}[name] - (name == "d") * steps / 80

    assert successive_halving("abcde", score, budget=40, rungs=2, finalists=2) == "b"  # d fades at the full budget
    assert calls == [(n, 20) for n in "abcde"] + [("d", 40), ("b", 40)]


def test_with_baseline_and_its_description():
    r = with_baseline(ClassifierRecipe(augment="randaugment", erasing=0.5), "trivial+erasing + logit-adjusted")
    assert (r.augment, r.erasing, r.mix, r.loss) == ("trivial", 0.25, "none", "logit-adjusted")
    assert describe_recipe(r) == "TrivialAugment + random erasing 0.25 + logit-adjusted loss"
    assert with_baseline(ClassifierRecipe(mix="cutmix"), "plain") == ClassifierRecipe()
    with pytest.raises(SynthaugError, match="unknown classifier baseline 'bogus'"):
        with_baseline(ClassifierRecipe(), "trivial + bogus")


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_soft_targets_mix_with_the_images(mix):
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    target = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), 1)
    mixed, t = _mix_soft(x, target, mix, gen)
    assert torch.allclose(t.sum(1), torch.ones(4))
    # each image's own share of its pixels is its own target's weight (CutMix: the box's complement)
    own = (mixed[1] == 1.0).float().mean() if mix == "cutmix" else None
    lam = (t[1] - target[0]) / (target[1] - target[0])
    if mix == "cutmix":
        assert torch.allclose(lam, torch.full_like(lam, float(own)), atol=1e-5)
    else:
        assert torch.allclose(mixed[1], lam[0] * x[1] + (1 - lam[0]) * x[0], atol=1e-5)


def test_soft_labels_train_under_a_batch_mix(digits_dir):
    data = load_image_folder(digits_dir, progress=False)
    soft = torch.nn.functional.one_hot(data.labels, 10).float() * 0.9 + 0.01
    phase = Phase(6, [TensorPool(data.images, data.labels, soft)], [1.0])
    a = train_on_phases([phase], 10, dataclasses.replace(TINY, mix="cutmix", steps=6), progress=False)
    phase = Phase(6, [TensorPool(data.images, data.labels, soft)], [1.0])
    b = train_on_phases([phase], 10, dataclasses.replace(TINY, mix="cutmix", steps=6), progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_choose_baseline_searches_augmentations_then_losses_on_uneven_classes(digits_dir):
    data = load_image_folder(digits_dir, progress=False)
    labels = data.labels.numpy()
    keep = np.concatenate([np.flatnonzero(labels == c)[:(60 if c else 12)] for c in range(10)])
    uneven = data.subset(np.sort(keep))
    assert rare_classes(np.bincount(uneven.labels.numpy()).tolist()) == [0]
    train, val = validation_split(uneven, 0.2)
    choice = choose_baseline(train, val, TINY, augments=("plain", "trivial", "cutmix"), folds=1)
    stages = [(t["stage"], t["name"], t["steps"]) for t in choice.trials]
    assert stages[:3] == [("augmentation", n, 8) for n in ("plain", "trivial", "cutmix")]  # from half the budget
    assert [s[2] for s in stages if s[0] == "augmentation"] == [8, 8, 8, 16, 16]  # 3 -> the 2 finalists
    final = {t["name"]: t["val"] for t in choice.trials if t["steps"] == 16}
    assert choice.name in final and choice.val == max(final.values())
    aug = max((t for t in choice.trials if t["stage"] == "augmentation" and t["steps"] == 16),
              key=lambda t: t["val"])["name"]
    assert {t["name"] for t in choice.trials if t["stage"] == "imbalance"} == {
        f"{aug} + {loss}" for loss in ("weighted", "logit-adjusted", "balanced-sampling", "cmo")}
    assert choice.recipe == with_baseline(TINY, choice.name)
    assert "**" + choice.name + "**" in format_choice(choice.summary())
    from synthaug.selection import _choice_cache, _search_baseline

    shutil.rmtree(cache_dir() / "trials")  # train every trial again
    again = _search_baseline([(train, val)], TINY, ("plain", "trivial", "cutmix"), IMBALANCE_BASELINES,
                             torch.device("cpu"), 2, False)
    assert again == choice  # seeded: the same choice and scores
    cached = _choice_cache(train, val, TINY, ("plain", "trivial", "cutmix"), IMBALANCE_BASELINES, 2)
    assert cached.parent == cache_dir() and cached.is_file()  # kept by content: the next search is free
    assert choose_baseline(train, val, TINY, augments=("plain", "trivial", "cutmix"), folds=1) == choice


def test_folds_follow_the_rarest_class_as_well_as_the_split_size():
    even = np.repeat(np.arange(10), 60)  # 600 images, 60 a class: one split is enough
    assert auto_folds(even) == 1
    rare = np.concatenate([np.repeat(np.arange(7), 600), np.repeat([7, 8, 9], 6)])  # 4,218, three classes at 6
    assert auto_folds(rare) == 3  # 200 / 10 = 20 images of a class wanted: 6 a fold needs 3 (the cap)
    assert auto_folds(np.concatenate([np.repeat(np.arange(9), 40), [9] * 12])) == 2  # the rarest at 12: 2 folds
    assert auto_folds(np.repeat(np.arange(10), 4)) == 3 and auto_folds(np.zeros(0)) == 1


def test_a_small_validation_split_is_searched_on_disjoint_folds_of_the_folder(digits_dir):
    data = load_image_folder(digits_dir, progress=False)
    small = data.subset(np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:40] for c in range(10)]))
    train, val = validation_split(small, 0.1)
    assert len(val) == 40 and auto_folds(val.labels.numpy()) == 3  # 40 images alone: one image is 2.5 points
    folds = search_folds(train, val, 3)
    assert folds[0] == (train, val) and len(folds) == 3
    def ids(part):  # each image's position in `small`, written into its first two pixels below
        return set((part.images[:, 0, 0, 0].long() + 256 * part.images[:, 0, 0, 1].long()).tolist())

    tagged = small.images.clone()
    tagged[:, 0, 0, 0], tagged[:, 0, 0, 1] = torch.arange(len(small)) % 256, torch.arange(len(small)) // 256
    small = dataclasses.replace(small, images=tagged)
    train, val = validation_split(small, 0.1)
    folds = search_folds(train, val, 3)
    held = [ids(v) for _, v in folds]
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1:])  # disjoint validation folds
    for (t, v), h in zip(folds, held):
        assert len(v) == len(val) and sorted(set(v.labels.tolist())) == list(range(10))  # stratified
        assert ids(t) == set(range(len(small))) - h  # the rest of the folder trains, val included
    choice = choose_baseline(train, val, TINY, augments=("plain", "cutmix"), rungs=1)
    assert choice.folds == 3 and len(choice.outcomes) == len(val)  # later choices compare on (train, val)
    one = choose_baseline(train, val, TINY, augments=("plain", "cutmix"), rungs=1, folds=1)
    assert one.folds == 1 and one.trials != choice.trials  # pooled over 120 images, not 40
    assert "(3 folds)" in format_choice(choice.summary()) and choice.summary()["folds"] == 3
    assert choose_baseline(train, val, TINY, augments=("plain", "cutmix"), rungs=1) == choice  # kept on disk


def test_only_the_imbalance_stage_pools_the_folds_the_rarest_class_asks(digits_dir, trained, monkeypatch):
    data = load_image_folder(digits_dir, progress=False)
    uneven = data.subset(np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:30 if c >= 7 else None]
                                         for c in range(10)]))
    train, val = validation_split(uneven, 0.1)
    monkeypatch.setattr(selection, "SEARCH_IMAGES", 100)  # enough images in all, 3 of each rare class: too few
    assert selection.size_folds(len(val)) == 1 and auto_folds(val.labels.numpy()) == 3
    choice = choose_baseline(train, val, TINY, augments=("plain", "cutmix"), losses=("weighted",), rungs=1)
    assert {(t["stage"], t["folds"]) for t in choice.trials} == {("augmentation", 1), ("imbalance", 3)}
    assert len(trained) == 2 + 2 + 3  # two augmentations on one fold; the best's two more folds; the loss on three
    assert choice.folds == 3 and len(choice.outcomes) == len(val)
    table = format_choice(choice.summary())
    assert "| augmentation (1 fold) |" in table and "| imbalance (3 folds) |" in table
    assert choose_baseline(train, val, TINY, augments=("plain", "cutmix"), losses=("weighted",), rungs=1) == choice
    assert len(trained) == 7  # kept on disk


@pytest.fixture
def trained(monkeypatch) -> list[str]:
    """The names of the conditions the searches train from here on (the real training, counted)."""
    names: list[str] = []
    real_train = selection.train_condition

    def counting(condition, *args, **kwargs):
        names.append(condition.name)
        return real_train(condition, *args, **kwargs)

    monkeypatch.setattr(selection, "train_condition", counting)
    return names


def test_a_kept_trial_is_not_trained_again_and_a_changed_one_is(digits_dir, trained):
    train, val = validation_split(load_image_folder(digits_dir, progress=False), 0.2)
    first, images = trial_outcomes(Condition(), train, val, TINY)
    assert images == len(train) and first.shape == (len(val),) and set(np.unique(first)) <= {0.0, 1.0}
    again, _ = trial_outcomes(Condition(), train, val, TINY)
    assert trained == ["real"] and np.array_equal(again, first)  # kept on disk by content
    trial_outcomes(Condition(baseline="trivial"), train, val, TINY)  # another training: another trial
    trial_outcomes(Condition(), train, val, dataclasses.replace(TINY, seed=1))
    assert len(trained) == 3
    kept = sorted((cache_dir() / "trials").glob("*.json"))
    assert len(kept) == 3
    for path in kept:
        path.write_text("{not json", encoding="utf-8")  # damaged entries are trained again, not trusted
    again, _ = trial_outcomes(Condition(), train, val, TINY)
    assert len(trained) == 4 and np.array_equal(again, first)  # seeded: the same outcomes


def test_jobs_that_train_the_same_thing_train_once(digits_dir, trained):
    train, val = validation_split(load_image_folder(digits_dir, progress=False), 0.2)
    other = dataclasses.replace(TINY, seed=3)
    results = trial_outcomes_many([(Condition(), train, val, other), (Condition(baseline="trivial"), train, val, other),
                                   (Condition(), train, val, other)])
    assert trained == ["real", "real + trivial"] and np.array_equal(results[0][0], results[2][0])


def test_choose_baseline_skips_losses_on_even_classes_and_rejects_unknown_names(digits_dir):
    data = load_image_folder(digits_dir, progress=False)
    train, val = validation_split(data, 0.1)
    choice = choose_baseline(train, val, TINY, augments=("plain", "mixup"), rungs=1)
    assert {t["stage"] for t in choice.trials} == {"augmentation"} and len(choice.trials) == 2
    with pytest.raises(DataError, match="unknown baseline"):
        choose_baseline(train, val, TINY, augments=("plain", "fancy"))
    assert set(AUGMENT_BASELINES) >= {"plain", "trivial+erasing", "randaugment+erasing", "mixup", "cutmix"}


def test_validation_split_keeps_every_class_on_both_sides(digits_dir):
    data = load_image_folder(digits_dir, progress=False)
    small = data.subset(np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:3] for c in range(10)]))
    train, val = validation_split(small, 0.1)  # 10% of 30 is 3 images: raised to one per class
    assert sorted(set(val.labels.tolist())) == list(range(10)) == sorted(set(train.labels.tolist()))
    one = data.subset(np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:1 + (c > 0)] for c in range(10)]))
    with pytest.raises(DataError, match="class 'digit0' has 1 image"):
        validation_split(one, 0.1)


def test_paired_gain_is_per_class_and_its_error_shrinks_with_more_images():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([1, 1, 1, 0, 1, 1, 1, 1], float)
    b = np.array([1, 0, 1, 0, 1, 1, 1, 0], float)
    gain, se = paired_gain(a, b, labels)
    assert gain == pytest.approx(0.25) and 0 < se < gain  # classes 0 and 1 each gain a quarter
    assert not clearly_better(a, b, labels, margin=3.0) and clearly_better(a, b, labels, margin=0.5)
    _, se_big = paired_gain(np.tile(a, 25), np.tile(b, 25), np.tile(labels, 25))
    assert se_big < se / 3  # 25 times the images, a fifth of the error
    assert paired_gain(a, a, labels) == (0.0, 0.0) and not clearly_better(a, a, labels)


def test_successive_halving_keeps_the_default_unless_a_challenger_beats_it_clearly():
    scores = {"a": 0.5, "b": 0.9, "c": 0.8, "d": 0.1}
    seen = []

    def beats(challenger: str, default: str, steps: int) -> bool:
        seen.append((challenger, default, steps))
        return scores[challenger] - scores[default] > margin

    margin = 0.5  # the validation noise: b's lead over a is within it
    assert successive_halving("abcd", lambda n, s: scores[n], budget=8, rungs=2, finalists=2, beats=beats) == "a"
    assert seen == [("b", "a", 8)]  # a (the default) reached the last rung though c scored above it
    margin = 0.1
    assert successive_halving("abcd", lambda n, s: scores[n], budget=8, rungs=2, finalists=2, beats=beats) == "b"


def test_a_grouped_validation_split_keeps_every_size_of_an_icon_on_one_side():
    data = load_image_folder(ICONS, progress=False, group_by=ICON_GROUPS)
    icon = [(p.split("/")[0], p.split("-", 1)[1]) for p in scan_folder(ICONS).paths]  # (class, icon name)
    same_icon = np.array([[a == b for b in icon] for a in icon])
    assert (np.equal.outer(data.groups, data.groups) == same_icon).all()
    assert len(set(data.groups.tolist())) < len(data)  # several icons come at both sizes
    for seed in range(4):
        train, val = validation_split(data, 0.2, seed)
        assert len(train) + len(val) == len(data) and not set(train.groups) & set(val.groups)
        assert sorted(set(val.labels.tolist())) == list(range(5)) == sorted(set(train.labels.tolist()))
    for t, v in search_folds(train, val, 2):
        assert not set(t.groups) & set(v.groups)  # the folds keep groups whole too
    images = data.images.clone()
    images[:, 0, 0, 0] = torch.arange(len(data))  # each image's position, to see where it went
    ungrouped = dataclasses.replace(data, images=images, groups=None)  # split image by image, as without --group-by
    splits = [validation_split(ungrouped, 0.2, seed) for seed in range(4)]
    shared = [set(data.groups[t.images[:, 0, 0, 0].long()].tolist()) & set(data.groups[v.images[:, 0, 0, 0].long()]
                                                                          .tolist()) for t, v in splits]
    assert any(shared)  # there an icon is validated on at the size it was not trained on: the leak groups close
    for seed, (t, v) in enumerate(splits):  # the near-copy check sees that leak, and none once groups are whole
        share, warning = near_copy_warning(t, v)
        assert share >= 0.1 and "--group-by" in warning
        assert near_copy_warning(*validation_split(data, 0.2, seed)) == (0.0, None)
    with pytest.raises(DataError, match="not a regular expression"):
        load_image_folder(ICONS, progress=False, group_by="(")
    whole = load_image_folder(ICONS, progress=False, group_by=r"^")  # every file of a class in one group
    with pytest.raises(DataError, match="class 'actions' is one group"):
        validation_split(whole, 0.2)
