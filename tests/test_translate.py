"""The translated top-up (M2m): common-class images moved into rare classes by a real classifier's gradient."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.classify import ClassifierRecipe, predict, trained_on_real, with_baseline
from synthaug.data.folder import load_image_folder
from synthaug.errors import DataError
from synthaug.translate import (TranslateConfig, load_translation, oversampled_top_up, save_translation, seed_weights,
                                translated_top_up)

RARE = (3, 5)


@pytest.fixture(scope="module")
def uneven(digits_dir):
    """Digits at 28 px with 3 and 5 cut to 10 images each, and a class-weighted CNN trained on them."""
    real = load_image_folder(digits_dir, 28, 1, progress=False)
    labels = real.labels.numpy()
    real = real.subset(np.concatenate([np.flatnonzero(labels == c)[:10 if c in RARE else 60] for c in range(10)]))
    model = trained_on_real(real, with_baseline(ClassifierRecipe(steps=150, seed=0), "weighted"))
    return real, model


def test_seed_weights_come_from_larger_classes_only():
    weights = seed_weights(np.array([100, 10, 10, 50]), 1, beta=0.99)
    assert weights[1] == weights[2] == 0.0
    assert weights[0] == pytest.approx(1 - 0.99 ** 90) and weights[3] == pytest.approx(1 - 0.99 ** 40)
    assert not seed_weights(np.array([100, 10]), 0, beta=0.99).any()  # the largest class has nothing to draw from


def test_translation_fills_the_wanted_counts_and_moves_images_into_the_target(uneven):
    real, model = uneven
    want = np.zeros(10, dtype=int)
    want[list(RARE)] = 50
    config = TranslateConfig(step_size=0.5)
    result = translated_top_up(real, model, want, config)
    source, stats = result.source, result.per_class
    assert source.images.dtype == torch.uint8 and source.images.shape == (100, 1, 28, 28)
    assert np.bincount(source.labels.numpy(), minlength=10).tolist() == want.tolist()
    assert set(stats) == {real.class_names[c] for c in RARE}
    translated = sum(s["translated"] for s in stats.values())
    assert 0 < translated <= 100  # the weighted classifier reaches the rare classes
    # every image is either a translation the classifier now puts in the target class, or a copy of a target image
    probs = predict(model, source.images)[torch.arange(100), source.labels].numpy()
    flat = real.images.flatten(1)
    copies = np.array([bool((flat[real.labels == y] == img.flatten()).all(1).any())
                       for img, y in zip(source.images, source.labels)])
    assert (probs[~copies] >= config.min_confidence).all()
    assert (~copies).sum() == translated and np.array_equal(result.moved, ~copies)
    again = translated_top_up(real, model, want, config).source
    assert torch.equal(again.images, source.images)  # the same seed, the same bytes
    other = translated_top_up(real, model, want, TranslateConfig(step_size=0.5, seed=1)).source
    assert not torch.equal(other.images, source.images)


def test_a_failed_translation_falls_back_to_the_class_own_images(uneven):
    real, model = uneven
    want = np.zeros(10, dtype=int)
    want[3] = 20
    result = translated_top_up(real, model, want, TranslateConfig(steps=1, step_size=1e-6, start=0.0))
    assert result.per_class[real.class_names[3]]["translated"] == 0  # a tiny step leaves every seed in its class
    assert not result.moved.any()
    own = real.images[real.labels == 3].flatten(1)
    assert all(bool((own == img.flatten()).all(1).any()) for img in result.source.images)


def test_bad_translation_requests_are_one_line_errors(uneven):
    real, model = uneven
    with pytest.raises(DataError, match="one non-negative count per class"):
        translated_top_up(real, model, np.zeros(3, dtype=int))
    with pytest.raises(DataError, match="translation wants an image of some class"):
        translated_top_up(real, model, np.zeros(10, dtype=int))
    with pytest.raises(DataError, match="beta"):
        TranslateConfig(beta=1.0)


def test_a_saved_translation_comes_back_only_for_its_own_settings(uneven, tmp_path):
    real, model = uneven
    want = np.zeros(10, dtype=int)
    want[5] = 12
    result = translated_top_up(real, model, want)
    path = tmp_path / "translated.npz"
    save_translation(result, path, {"want": want.tolist(), "seed": 0})
    back = load_translation(path, {"want": want.tolist(), "seed": 0})
    assert torch.equal(back.source.images, result.source.images) and torch.equal(back.source.labels,
                                                                                  result.source.labels)
    assert np.array_equal(back.moved, result.moved) and back.per_class == result.per_class
    assert load_translation(path, {"want": want.tolist(), "seed": 1}) is None  # another's settings
    assert load_translation(tmp_path / "none.npz", {}) is None
    assert [p.name for p in tmp_path.iterdir()] == ["translated.npz"]  # no temporary file left behind


def test_the_oversampled_control_copies_the_class_own_images(uneven):
    real, _ = uneven
    want = np.zeros(10, dtype=int)
    want[list(RARE)] = 30
    source = oversampled_top_up(real, want, seed=0)
    assert np.bincount(source.labels.numpy(), minlength=10).tolist() == want.tolist()
    for img, y in zip(source.images, source.labels):
        assert bool((real.images[real.labels == y].flatten(1) == img.flatten()).all(1).any())
    assert torch.equal(oversampled_top_up(real, want, seed=0).images, source.images)
    assert source.mixed == "real + oversampled top-up"


def test_a_class_median_bar_accepts_what_looks_as_much_like_the_class_as_its_own_images(uneven):
    real, _ = uneven
    model = trained_on_real(real, with_baseline(ClassifierRecipe(steps=30, seed=0), "weighted"))  # short of converged
    want = np.zeros(10, dtype=int)
    want[3] = 40
    result = translated_top_up(real, model, want, TranslateConfig(min_confidence=None, beta=0.9))  # accept ~all
    bar = result.per_class[real.class_names[3]]["min_confidence"]
    assert bar == pytest.approx(float(predict(model, real.images[real.labels == 3])[:, 3].median()))
    probs = predict(model, result.source.images[torch.from_numpy(result.moved)])[:, 3]
    assert result.moved.any() and (probs >= bar).all()
