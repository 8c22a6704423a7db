"""The downstream classifiers: the registry, the recipe's checks, the weighted loss and determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import synthaug
from synthaug.classify import (ClassifierRecipe, Phase, TensorPool, build_classifier, classification_report,
                               describe_recipe, inverse_frequency, list_classifiers, paste_patches, predict,
                               train_classifier, train_on_phases, weights_sha256, with_baseline)
from synthaug.errors import SynthaugError

TINY = ClassifierRecipe(steps=30, batch_size=32)


@pytest.fixture(scope="module")
def digits(digits_dir):
    return synthaug.load_image_folder(digits_dir, progress=False)


def test_the_registry_and_the_recipe_refuse_what_they_do_not_know():
    assert list_classifiers() == ["cnn", "resnet18"]
    assert build_classifier("cnn", 3, 5, 16)(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(SynthaugError, match="unknown classifier 'vit'"):
        build_classifier("vit", 1, 10, 8)
    with pytest.raises(SynthaugError, match="unknown classifier loss 'focal'"):
        ClassifierRecipe(loss="focal")
    with pytest.raises(SynthaugError, match="steps and batch size must be at least 1"):
        ClassifierRecipe(steps=0)


def test_the_same_seed_trains_the_same_weights(digits):
    a = train_classifier(digits.images, digits.labels, 10, TINY, progress=False)
    b = train_classifier(digits.images, digits.labels, 10, TINY, progress=False)
    c = train_classifier(digits.images, digits.labels, 10, ClassifierRecipe(steps=30, batch_size=32, seed=1),
                         progress=False)
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)
    probs = predict(a, digits.images[:50])
    assert probs.shape == (50, 10) and torch.allclose(probs.sum(1), torch.ones(50))


def test_the_weighted_loss_weighs_classes_by_inverse_frequency(digits):
    keep = torch.cat([torch.nonzero(digits.labels == c).flatten()[: (10 if c == 3 else 100)] for c in range(10)])
    pool = TensorPool(digits.images[keep], digits.labels[keep])
    weights = inverse_frequency([Phase(10, [pool], [1.0])], 10)
    assert weights[3] == pytest.approx(910 / (10 * 10)) and weights[0] == pytest.approx(910 / (10 * 100))
    plain = train_on_phases([Phase(30, [pool], [1.0])], 10, TINY, progress=False)
    weighted = train_on_phases([Phase(30, [pool], [1.0])], 10, ClassifierRecipe(steps=30, batch_size=32,
                                                                                 loss="weighted"), progress=False)
    explicit = train_on_phases([Phase(30, [pool], [1.0])], 10, TINY, class_weights=weights, progress=False)
    assert weights_sha256(weighted) == weights_sha256(explicit) != weights_sha256(plain)


def test_classification_report_reads_the_confusion_matrix():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    r = classification_report(y_true, y_pred, 3)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class_recall"] == pytest.approx([0.5, 1.0, 0.5])
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


@pytest.mark.parametrize("change", [{"augment": "trivial"}, {"augment": "randaugment"}, {"augment": "none"},
                                    {"erasing": 0.5}, {"mix": "mixup"}, {"mix": "cutmix"},
                                    {"loss": "logit-adjusted"}, {"loss": "balanced-sampling"}, {"loss": "cmo"},
                                    {"loss": "cmo", "mix": "cutmix"}])
def test_every_baseline_option_trains_deterministically_and_changes_training(digits, change):
    recipe = ClassifierRecipe(steps=15, batch_size=32, **change)
    a = train_classifier(digits.images, digits.labels, 10, recipe, progress=False)
    b = train_classifier(digits.images, digits.labels, 10, recipe, progress=False)
    plain = train_classifier(digits.images, digits.labels, 10, ClassifierRecipe(steps=15, batch_size=32),
                             progress=False)
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(plain)


def test_balanced_sampling_draws_every_class_alike():
    labels = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    pool = TensorPool(torch.zeros(1000, 1, 8, 8, dtype=torch.uint8), labels)
    drawn = pool.draw(20000, torch.Generator().manual_seed(0), balanced=True)[1]
    assert abs(float(drawn.float().mean()) - 0.5) < 0.02  # 10% of the pool, half the draws
    assert abs(float(pool.draw(20000, torch.Generator().manual_seed(0))[1].float().mean()) - 0.1) < 0.01
    with pytest.raises(SynthaugError, match="unknown classifier augmentation policy 'autoaugment'"):
        ClassifierRecipe(augment="autoaugment")
    with pytest.raises(SynthaugError, match="erasing probability must lie in"):
        ClassifierRecipe(erasing=2.0)


def test_cmo_pastes_a_box_of_each_partner_on_about_half_the_images_and_mixes_labels_by_area():
    gen = torch.Generator().manual_seed(0)
    x, patches = torch.zeros(2000, 1, 16, 16), torch.ones(2000, 1, 16, 16)
    target = torch.nn.functional.one_hot(torch.zeros(2000, dtype=torch.long), 3).float()
    rare = torch.nn.functional.one_hot(torch.full((2000,), 2), 3).float()
    mixed, mixed_target = paste_patches(x, target, patches, rare, gen)
    area = mixed.flatten(1).mean(1)  # the pasted share of each image: its patch is all ones
    assert torch.allclose(mixed_target[:, 2], area) and torch.allclose(mixed_target.sum(1), torch.ones(2000))
    assert 0.4 < float((area > 0).float().mean()) < 0.55  # half the images (a box can round to nothing)
    assert len(torch.unique(area[area > 0])) > 20  # each image its own box: drawn per image, not once per batch
    for img, share in zip(mixed[:50], area[:50]):  # the pasted pixels form one rectangle
        rows, cols = torch.nonzero(img[0], as_tuple=True)
        if len(rows):
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert int(box) == len(rows) == round(float(share) * 256)
    again, _ = paste_patches(x, target, patches, rare, torch.Generator().manual_seed(0))
    assert torch.equal(again, mixed)  # the same seed, the same boxes
    assert describe_recipe(with_baseline(ClassifierRecipe(), "trivial + cmo")) == \
        "TrivialAugment + rare-class patches on common images (CMO)"
