"""The rare-class top-up's shaping: classes, cap, filter and soft labels, on real tensors."""
from __future__ import annotations

import numpy as np
import torch

from synthaug.conditions import TensorSource
from synthaug.topup import TopUpShape, shape_top_up, top_up_condition


def top_up_source() -> tuple[TensorSource, torch.Tensor]:
    """40 top-up images: 20 of class 1, 20 of class 2, with teacher probabilities rising through each class."""
    labels = torch.tensor([1] * 20 + [2] * 20)
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    probs = torch.zeros(40, 3)
    conf = torch.linspace(0.05, 1.0, 20).repeat(2)
    probs[torch.arange(40), labels] = conf
    probs[:, 0] += 1 - conf
    return TensorSource(images, labels), probs


def test_shape_keeps_the_named_classes_and_caps_their_share():
    source, probs = top_up_source()
    counts = np.array([100, 5, 10])
    all_of_it = shape_top_up(source, counts, TopUpShape((1, 2)), probs)
    assert len(all_of_it.labels) == 40 and all_of_it.soft is None
    only_2 = shape_top_up(source, counts, TopUpShape((2,)), probs)
    assert set(only_2.labels.tolist()) == {2}
    capped = shape_top_up(source, counts, TopUpShape((1, 2), cap=0.5), probs)
    # a synthetic share of at most 50%: as many synthetic images as real ones (5 and 10), the first of each class
    assert np.bincount(capped.labels.numpy(), minlength=3).tolist() == [0, 5, 10]
    assert capped.images[:, 0, 0, 0].tolist() == list(range(5)) + list(range(20, 30))


def test_shape_filters_by_the_teachers_confidence_and_carries_its_soft_labels():
    source, probs = top_up_source()
    kept = shape_top_up(source, np.array([100, 5, 10]), TopUpShape((1, 2), min_confidence=0.5, soft=True), probs)
    confidence = kept.soft[torch.arange(len(kept.labels)), kept.labels]
    assert len(kept.labels) > 0 and (confidence >= 0.5).all()
    assert len(kept.labels) == int((probs[torch.arange(40), source.labels] >= 0.5).sum()) == 22
    assert torch.allclose(kept.soft.sum(1), torch.ones(len(kept.labels)))
    none = shape_top_up(source, np.array([100, 5, 10]), TopUpShape(()), probs)
    assert len(none.labels) == 0
    assert TopUpShape((1,), cap=0.5, soft=True).describe(["a", "b", "c"]) == "b, capped at 50% synthetic, soft labels"


def test_a_soft_shape_trains_on_the_teachers_labels():
    """The search's soft-label trial is a different training from the hard one, not the same under another name."""
    source, probs = top_up_source()
    counts = np.array([100, 5, 10])
    hard = top_up_condition(source, counts, TopUpShape((1, 2)), probs)
    soft = top_up_condition(source, counts, TopUpShape((1, 2), soft=True), probs)
    assert not hard.soft and hard.source.soft is None
    assert soft.soft and soft.source.has_soft and soft.name.endswith("(soft labels)")
