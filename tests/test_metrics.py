"""Metrics behave: identical sets score ~0 distance and full coverage; shuffled labels score low agreement."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.classify import ClassifierRecipe
from synthaug.data.folder import load_image_folder
from synthaug.metrics import density_coverage, feature_classifier, frechet_distance, precision_recall, quality_metrics


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Same covariance, means 2 apart in every one of 4 dims: FD = 4 * 2^2 = 16.
    assert frechet_distance(a, rng.normal(size=(20000, 4)) + 2.0) == pytest.approx(16.0, rel=0.03)


def test_knn_metrics_on_identical_and_disjoint_sets():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(1500, 8))
    assert precision_recall(a, a) == {"precision": 1.0, "recall": 1.0}
    assert density_coverage(a, a)["coverage"] == 1.0
    far = precision_recall(a, a + 50.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(a, a + 50.0) == {"density": 0.0, "coverage": 0.0}


@pytest.mark.slow
def test_real_digits_against_themselves_and_with_shuffled_labels(digits_dir):
    real = load_image_folder(digits_dir, progress=False)
    clf = feature_classifier(real, ClassifierRecipe(steps=150, seed=0))
    same = quality_metrics(clf, real, real.images, real.labels)
    assert same["frechet_distance"] == pytest.approx(0.0, abs=1e-3)
    assert same["coverage"] == 1.0 and same["label_agreement"] > 0.9
    shuffled = real.labels[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))]
    wrong = quality_metrics(clf, real, real.images, shuffled)
    assert wrong["label_agreement"] < 0.25
    assert len(same["diversity_per_class"]) == 10 and min(same["diversity_per_class"].values()) > 0
