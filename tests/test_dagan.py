"""The DAGAN top-up: a pair GAN learns, on the whole folder, to vary an image within its class."""
from __future__ import annotations

import numpy as np
import pytest
from top_up_checks import RARE, check_fit_is_seeded_and_kept, check_top_up_is_shaped_and_seeded, uneven_digits

from synthaug.classify import ClassifierRecipe, predict, trained_on_real
from synthaug.dagan import DaganConfig, dagan_top_up, fit_dagan, load_dagan, same_class_partners
from synthaug.errors import DataError


@pytest.fixture(scope="module")
def uneven(digits_dir):
    """Digits (8 px) with 3 and 5 cut to 10 images each, and a DAGAN fitted on them."""
    real = uneven_digits(digits_dir)
    return real, fit_dagan(real, DaganConfig(steps=400))


def test_partners_are_other_images_of_the_same_class():
    labels = np.array([0, 0, 0, 1, 1, 2])
    anchors = np.repeat(np.arange(6), 50)
    partners = same_class_partners(labels, anchors, np.random.default_rng(0))
    assert np.array_equal(labels[partners], labels[anchors])
    assert np.all(partners[anchors != 5] != anchors[anchors != 5]) and np.all(partners[anchors == 5] == 5)
    assert set(partners[anchors == 0]) == {1, 2}  # every other member is drawn


def test_the_top_up_varies_each_rare_class_within_the_class(uneven):
    real, generator = uneven
    check_top_up_is_shaped_and_seeded(dagan_top_up, generator, real)  # and no generated image equals a real one
    # a classifier trained on the real folder mostly recognises the class a variation was made from (chance: 10%),
    # where the pair GAN saw many pairs of that class (how well it carries to the rare ones is what benchmarks say)
    classifier = trained_on_real(real, ClassifierRecipe(steps=150, seed=0, loss="weighted"))
    common = dagan_top_up(generator, real, np.where(np.isin(np.arange(10), RARE), 0, 50), seed=0)
    agree = (predict(classifier, common.images).argmax(1) == common.labels).float().mean()
    assert agree > 0.7, float(agree)


def test_fitting_is_seeded_and_the_generator_is_kept_by_what_made_it(uneven, tmp_path):
    check_fit_is_seeded_and_kept(fit_dagan, load_dagan, DaganConfig(steps=5), uneven[0], tmp_path / "dagan.pt")


def test_bad_settings_are_one_line_errors(uneven):
    real, generator = uneven
    with pytest.raises(DataError, match="DAGAN steps"):
        DaganConfig(steps=0)
    with pytest.raises(DataError, match=f"{real.root}: a DAGAN top-up wants an image of some class"):
        dagan_top_up(generator, real, np.zeros(10, dtype=int))
    one_each = real.subset(np.array([int(np.flatnonzero(real.labels.numpy() == c)[0]) for c in range(10)]))
    with pytest.raises(DataError, match="needs a class with two images"):
        fit_dagan(one_each, DaganConfig(steps=1))
