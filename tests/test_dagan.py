"""The DAGAN top-up: a pair GAN learns, on the whole folder, to vary an image within its class."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synthaug.classify import ClassifierRecipe, predict, trained_on_real
from synthaug.dagan import DaganConfig, dagan_top_up, fit_dagan, load_dagan, same_class_partners
from synthaug.data.folder import load_image_folder
from synthaug.errors import DataError
from synthaug.runs import save_keyed

RARE = (3, 5)


@pytest.fixture(scope="module")
def uneven(digits_dir):
    """Digits (8 px) with 3 and 5 cut to 10 images each, and a DAGAN fitted on them."""
    real = load_image_folder(digits_dir, progress=False)
    labels = real.labels.numpy()
    real = real.subset(np.concatenate([np.flatnonzero(labels == c)[:10 if c in RARE else 150] for c in range(10)]))
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
    want = np.zeros(10, dtype=int)
    want[list(RARE)] = 140
    top_up = dagan_top_up(generator, real, want, seed=0)
    assert top_up.images.dtype == torch.uint8 and top_up.images.shape == (280, *real.images.shape[1:])
    assert np.bincount(top_up.labels.numpy(), minlength=10)[list(RARE)].tolist() == [140, 140]
    # a classifier trained on the real folder mostly recognises the class a variation was made from (chance: 10%),
    # where the pair GAN saw many pairs of that class (how well it carries to the rare ones is what benchmarks say)
    classifier = trained_on_real(real, ClassifierRecipe(steps=150, seed=0, loss="weighted"))
    common = dagan_top_up(generator, real, np.where(np.isin(np.arange(10), RARE), 0, 50), seed=0)
    agree = (predict(classifier, common.images).argmax(1) == common.labels).float().mean()
    assert agree > 0.7, float(agree)
    # ... and the variations are not the class's own images: no generated image equals a real one
    own = real.images[torch.isin(real.labels, torch.tensor(RARE))].flatten(1).float()
    nearest = torch.cdist(top_up.images.flatten(1).float(), own).min(1).values
    assert float(nearest.min()) > 0
    again = dagan_top_up(generator, real, want, seed=0)
    other = dagan_top_up(generator, real, want, seed=1)
    assert torch.equal(again.images, top_up.images) and not torch.equal(other.images, top_up.images)


def test_fitting_is_seeded_and_the_generator_is_kept_by_what_made_it(uneven, tmp_path):
    real, _ = uneven
    config = DaganConfig(steps=5)
    a, b = fit_dagan(real, config), fit_dagan(real, config)
    c = fit_dagan(real, dataclasses.replace(config, seed=1))
    weights = [torch.cat([p.flatten() for p in g.parameters()]) for g in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    key = {"data": "x", "config": dataclasses.asdict(config)}
    save_keyed(a, tmp_path / "dagan.pt", key)
    assert [p.name for p in tmp_path.iterdir()] == ["dagan.pt"]  # written atomically: no temp file left
    kept = load_dagan(tmp_path / "dagan.pt", key, real, config)
    assert torch.equal(torch.cat([p.flatten() for p in kept.parameters()]), weights[0])
    assert load_dagan(tmp_path / "dagan.pt", {**key, "data": "y"}, real, config) is None
    assert load_dagan(tmp_path / "missing.pt", key, real, config) is None


def test_bad_settings_are_one_line_errors(uneven):
    real, generator = uneven
    with pytest.raises(DataError, match="DAGAN steps"):
        DaganConfig(steps=0)
    with pytest.raises(DataError, match=f"{real.root}: a DAGAN top-up wants an image of some class"):
        dagan_top_up(generator, real, np.zeros(10, dtype=int))
    one_each = real.subset(np.array([int(np.flatnonzero(real.labels.numpy() == c)[0]) for c in range(10)]))
    with pytest.raises(DataError, match="needs a class with two images"):
        fit_dagan(one_each, DaganConfig(steps=1))
