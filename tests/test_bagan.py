"""The BAGAN top-up: an autoencoder on every class turned GAN, each class's latents from its own Gaussian."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synthaug.bagan import BaganConfig, bagan_top_up, class_gaussians, fit_bagan, load_bagan, real_batch
from synthaug.classify import ClassifierRecipe, predict, trained_on_real
from synthaug.data.folder import load_image_folder
from synthaug.errors import DataError
from synthaug.runs import save_keyed

RARE = (3, 5)


@pytest.fixture(scope="module")
def uneven(digits_dir):
    """Digits (8 px) with 3 and 5 cut to 10 images each, and a BAGAN fitted on them."""
    real = load_image_folder(digits_dir, progress=False)
    labels = real.labels.numpy()
    real = real.subset(np.concatenate([np.flatnonzero(labels == c)[:10 if c in RARE else 150] for c in range(10)]))
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
    want = np.zeros(10, dtype=int)
    want[list(RARE)] = 140
    top_up = bagan_top_up(generator, real, want, seed=0)
    assert top_up.images.dtype == torch.uint8 and top_up.images.shape == (280, *real.images.shape[1:])
    assert np.bincount(top_up.labels.numpy(), minlength=10)[list(RARE)].tolist() == [140, 140]
    # a classifier trained on the real folder recognises the rare classes in their generated images (chance: 10%;
    # with the real images drawn as the folder has them it recognised 0% and 16%: BaganConfig.balanced_real)
    classifier = trained_on_real(real, ClassifierRecipe(steps=150, seed=0, loss="weighted"))
    agree = (predict(classifier, top_up.images).argmax(1) == top_up.labels).float().mean()
    assert agree > 0.7, float(agree)
    own = real.images[torch.isin(real.labels, torch.tensor(RARE))].flatten(1).float()
    assert float(torch.cdist(top_up.images.flatten(1).float(), own).min(1).values.min()) > 0  # no copies
    again = bagan_top_up(generator, real, want, seed=0)
    other = bagan_top_up(generator, real, want, seed=1)
    assert torch.equal(again.images, top_up.images) and not torch.equal(other.images, top_up.images)


def test_fitting_is_seeded_and_the_generator_is_kept_by_what_made_it(uneven, tmp_path):
    real, _ = uneven
    config = BaganConfig(ae_steps=3, steps=3)
    a, b = fit_bagan(real, config), fit_bagan(real, config)
    c = fit_bagan(real, dataclasses.replace(config, seed=1))
    weights = [torch.cat([p.flatten() for p in g.state_dict().values()]) for g in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    key = {"data": "x", "config": dataclasses.asdict(config)}
    save_keyed(a, tmp_path / "bagan.pt", key)
    assert [p.name for p in tmp_path.iterdir()] == ["bagan.pt"]  # written atomically: no temp file left
    kept = load_bagan(tmp_path / "bagan.pt", key, real, config)
    assert torch.equal(torch.cat([p.flatten() for p in kept.state_dict().values()]), weights[0])  # Gaussians too
    assert load_bagan(tmp_path / "bagan.pt", {**key, "data": "y"}, real, config) is None
    assert load_bagan(tmp_path / "missing.pt", key, real, config) is None


def test_bad_settings_are_one_line_errors(uneven):
    real, generator = uneven
    with pytest.raises(DataError, match="BAGAN steps"):
        BaganConfig(steps=0)
    with pytest.raises(DataError, match=f"{real.root}: a BAGAN top-up wants an image of some class"):
        bagan_top_up(generator, real, np.zeros(10, dtype=int))
    one = real.subset(np.array([0]))
    with pytest.raises(DataError, match="BAGAN needs at least one image of every class"):
        fit_bagan(one, BaganConfig(ae_steps=1, steps=1))
