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
    # Subsampled k-NN metrics must draw from every class: the same images sorted by descending class score near
    # 1, where comparing the first 600 rows of each (classes 0-3 against 9-6) would score near 0.
    order = torch.argsort(-real.labels, stable=True)
    sub = quality_metrics(clf, real, real.images[order], real.labels[order], max_points=600)
    assert min(sub["precision"], sub["recall"], sub["coverage"]) > 0.7, sub


@pytest.mark.slow
def test_inception_fid_from_local_weights_only(digits_dir, tmp_path):
    import torchvision

    from synthaug.errors import CheckpointError
    from synthaug.inception import fid_inception, inception_features, load_fid_inception
    from synthaug.metrics import inception_fid

    # A weights file in pytorch-fid's layout (torchvision's Inception3 names, 1008 outputs), random values: the
    # real file cannot be fetched here, and the plumbing is what is under test.
    torch.manual_seed(0)
    net = fid_inception()
    for m in net.modules():  # BatchNorm statistics from one batch, so activations keep their scale through depth
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(8, 3, 299, 299))
    weights = tmp_path / "pt_inception.pth"
    torch.save(net.state_dict(), weights)
    assert set(net.state_dict()) == set(torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, init_weights=False).state_dict())

    real = load_image_folder(digits_dir)
    images = real.images[:24]
    feats = inception_features(load_fid_inception(weights), images)
    assert feats.shape == (24, 2048) and np.isfinite(feats).all() and feats.std() > 1e-3
    same = inception_fid(weights, images, images, seed=0)
    other = inception_fid(weights, images, torch.flip(images, dims=[2, 3]), seed=0)
    assert other["inception_fid"] > 0 and abs(same["inception_fid"]) < 1e-6 * other["inception_fid"]

    with pytest.raises(CheckpointError, match="no such Inception weights"):
        load_fid_inception(tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not pytorch-fid's Inception weights"):
        load_fid_inception(tmp_path / "other.pth")
