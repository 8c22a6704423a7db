"""The BAGAN top-up: an autoencoder on every class turned GAN, each class's latents from its own Gaussian."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from top_up_checks import check_fit_is_seeded_and_kept, check_top_up_is_shaped_and_seeded, uneven_digits

from synthaug.bagan import BaganConfig, bagan_top_up, class_gaussians, fit_bagan, load_bagan, real_batch
from synthaug.classify import ClassifierRecipe, predict, trained_on_real
from synthaug.errors import DataError


@pytest.fixture(scope="module")
def uneven(digits_dir):
    """Digits (8 px) with 3 and 5 cut to 10 images each, and a BAGAN fitted on them."""
    real = uneven_digits(digits_dir)
    return real, fit_bagan(real, BaganConfig(ae_steps=500, steps=500))


def test_class_gaussians_fit_each_class_and_pool_for_a_class_of_one():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 1, (1000, 3)), rng.normal(5, 2, (1000, 3)), [[9.0, 9.0, 9.0]]])
    labels = np.repeat([0, 1, 2], [1000, 1000, 1])
    means, chols = class_gaussians(latents, labels, 3)
    assert np.allclose(means[0], 0, atol=0.25) and np.allclose(means[1], 5, atol=0.25) and np.allclose(means[2], 9)
    spread = [torch.diagonal(c @ c.T).mean().item() for c in chols]
    assert 0.8 < spread[0] < 1.2 and 3.2 < spread[1] < 4.8  # each class's own variance
    assert spread[0] < spread[2] < spread[1]  # the class of one takes the variance pooled over the others


def test_real_batches_draw_the_classes_evenly():
    members = [np.arange(1000), np.array([1000, 1001])]
    idx = real_batch(members, 4000, np.random.default_rng(0))
    rare = np.isin(idx, members[1])
    assert 0.45 < rare.mean() < 0.55 and set(idx[rare]) == {1000, 1001}


def test_the_top_up_gives_each_rare_class_its_own_shapes(uneven):
    real, generator = uneven
    top_up = check_top_up_is_shaped_and_seeded(bagan_top_up, generator, real)
    # a classifier trained on the real folder recognises the rare classes in their generated images (chance: 10%;
    # with the real images drawn as the folder has them it recognised 0% and 16%: BaganConfig.balanced_real)
    classifier = trained_on_real(real, ClassifierRecipe(steps=150, seed=0, loss="weighted"))
    agree = (predict(classifier, top_up.images).argmax(1) == top_up.labels).float().mean()
    assert agree > 0.7, float(agree)


def test_fitting_is_seeded_and_the_generator_is_kept_by_what_made_it(uneven, tmp_path):
    check_fit_is_seeded_and_kept(fit_bagan, load_bagan, BaganConfig(ae_steps=3, steps=3), uneven[0],
                                 tmp_path / "bagan.pt")  # the class Gaussians are buffers: kept too


def test_bad_settings_are_one_line_errors(uneven):
    real, generator = uneven
    with pytest.raises(DataError, match="BAGAN steps"):
        BaganConfig(steps=0)
    with pytest.raises(DataError, match=f"{real.root}: a BAGAN top-up wants an image of some class"):
        bagan_top_up(generator, real, np.zeros(10, dtype=int))
    one = real.subset(np.array([0]))
    with pytest.raises(DataError, match="BAGAN needs at least one image of every class"):
        fit_bagan(one, BaganConfig(ae_steps=1, steps=1))
