"""What every generator-made rare-class top-up (DAGAN, BAGAN) must do, checked the same way for each."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from synthaug.data.folder import LabelledImages, load_image_folder
from synthaug.runs import save_keyed

RARE = (3, 5)
PER_RARE = 140  # images a top-up is asked for, per rare class


def uneven_digits(digits_dir: Path) -> LabelledImages:
    """Digits (8 px) with the RARE classes cut to 10 images each and the others to 150."""
    real = load_image_folder(digits_dir, progress=False)
    labels = real.labels.numpy()
    return real.subset(np.concatenate([np.flatnonzero(labels == c)[:10 if c in RARE else 150] for c in range(10)]))


def check_top_up_is_shaped_and_seeded(top_up: Callable, generator, real: LabelledImages):
    """PER_RARE uint8 images of each rare class and none of the others; the same seed, the same images."""
    want = np.zeros(10, dtype=int)
    want[list(RARE)] = PER_RARE
    made = top_up(generator, real, want, seed=0)
    assert made.images.dtype == torch.uint8 and made.images.shape == (2 * PER_RARE, *real.images.shape[1:])
    assert np.bincount(made.labels.numpy(), minlength=10)[list(RARE)].tolist() == [PER_RARE, PER_RARE]
    again, other = top_up(generator, real, want, seed=0), top_up(generator, real, want, seed=1)
    assert torch.equal(again.images, made.images) and not torch.equal(other.images, made.images)
    own = real.images[torch.isin(real.labels, torch.tensor(RARE))].flatten(1).float()
    assert float(torch.cdist(made.images.flatten(1).float(), own).min(1).values.min()) > 0  # no copies
    return made


def weights(model: torch.nn.Module) -> torch.Tensor:
    """Every tensor the model keeps, buffers included, flattened into one."""
    return torch.cat([p.flatten().float() for p in model.state_dict().values()])


def check_fit_is_seeded_and_kept(fit: Callable, load: Callable, config, real: LabelledImages, path: Path) -> None:
    """The same seed fits the same weights, another seed others; kept atomically under the key that made it."""
    a, b = fit(real, config), fit(real, config)
    c = fit(real, dataclasses.replace(config, seed=1))
    assert torch.equal(weights(a), weights(b)) and not torch.equal(weights(a), weights(c))
    key = {"data": "x", "config": dataclasses.asdict(config)}
    save_keyed(a, path, key)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically: no temp file left
    assert torch.equal(weights(load(path, key, real, config)), weights(a))
    assert load(path, {**key, "data": "y"}, real, config) is None
    assert load(path.with_name("missing.pt"), key, real, config) is None
