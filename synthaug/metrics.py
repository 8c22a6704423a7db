"""Generator quality metrics on the features of a classifier trained on the real training folder (no downloads)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug.config import SamplingConfig
from synthaug.classify import ClassifierRecipe, embed, predict, trained_on_real
from synthaug.data.folder import LabelledImages
from synthaug.device import resolve_device
from synthaug.errors import SynthaugError
from synthaug.registry import Registry

FEATURE_RECIPE = ClassifierRecipe(steps=1500, seed=0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) (Heusel et al. 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(A B)) = tr(sqrt(sqrt(A) B sqrt(A))), which is symmetric: eigenvalues are stable.
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    mid = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(np.clip(mid, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point."""
    from sklearn.neighbors import NearestNeighbors  # here: importing sklearn costs every command seconds

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]


def _inside_counts(ref: np.ndarray, radius: np.ndarray, query: np.ndarray, block: int = 1024) -> np.ndarray:
    """For each query point, how many reference balls (centre ref[j], radius[j]) contain it."""
    r, rad = torch.from_numpy(ref).float(), torch.from_numpy(radius).float()
    counts = [(torch.cdist(torch.from_numpy(query[i:i + block]).float(), r) <= rad[None]).sum(1)
              for i in range(0, len(query), block)]
    return torch.cat(counts).numpy()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019)."""
    precision = (_inside_counts(real, _kth_radius(real, k), fake) > 0).mean()
    recall = (_inside_counts(fake, _kth_radius(fake, k), real) > 0).mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020)."""
    from sklearn.neighbors import NearestNeighbors

    radius = _kth_radius(real, k)
    density = _inside_counts(real, radius, fake).sum() / (k * len(fake))
    nearest_fake, _ = NearestNeighbors(n_neighbors=1).fit(fake).kneighbors(real)
    return {"density": float(density), "coverage": float((nearest_fake[:, 0] <= radius).mean())}


def label_agreement(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """How often the real-data classifier predicts the conditioning label."""
    return float((probs.argmax(1) == labels).float().mean())


def diversity(features: np.ndarray, labels: np.ndarray, max_per_class: int = 500) -> dict[int, float]:
    """Mean pairwise feature distance within each class (a collapse detector: near 0 means one image)."""
    out = {}
    for c in np.unique(labels):
        f = features[labels == c][:max_per_class]
        d = np.linalg.norm(f[:, None] - f[None], axis=2)
        out[int(c)] = float(d.sum() / max(len(f) * (len(f) - 1), 1))
    return out


def feature_classifier(real: LabelledImages, recipe: ClassifierRecipe = FEATURE_RECIPE,
                       device: str | torch.device = "cpu", progress: bool = False) -> torch.nn.Module:
    """The metrics' feature extractor: a classifier trained on the real folder, cached per data set hash."""
    return trained_on_real(real, recipe, device, progress, desc="feature classifier")


def quality_metrics(classifier: torch.nn.Module, real: LabelledImages, fake_images: torch.Tensor,
                    fake_labels: torch.Tensor, max_real: int = 10000, max_points: int = 5000) -> dict[str, Any]:
    """Fréchet distance (overall, mean per class), precision/recall, density/coverage, label agreement, diversity.

    The k-NN metrics use a seeded random subset of at most `max_points` rows of each side.
    """
    if fake_images.shape[1:] != real.images.shape[1:]:
        raise SynthaugError(f"synthetic images {tuple(fake_images.shape[1:])} do not match real "
                            f"{tuple(real.images.shape[1:])}")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(real), size=min(len(real), max_real), replace=False))
    real_images, real_labels = real.images[keep], real.labels[keep]
    fr = embed(classifier, real_images).numpy()
    ff = embed(classifier, fake_images).numpy()
    yr, yf = real_labels.numpy(), fake_labels.numpy()
    # Random rows, not the first ones: exports and folders are sorted by class, so a prefix is a few classes only.
    n = min(len(fr), len(ff), max_points)
    pr, pf = rng.permutation(len(fr))[:n], rng.permutation(len(ff))[:n]
    features = FeatureSets(fr, ff, yr, yf, pr, pf, lambda: predict(classifier, fake_images), fake_labels)
    out: dict[str, Any] = {}
    for name in METRICS.names():
        out.update(METRICS.get(name)(features))
    return out


@dataclass(frozen=True)
class FeatureSets:
    """What every registered metric reads: real and fake features and labels, k-NN subsets, class probabilities."""

    real: np.ndarray  # (N, D)
    fake: np.ndarray  # (M, D)
    real_labels: np.ndarray
    fake_labels: np.ndarray
    real_rows: np.ndarray  # the seeded subsets the k-NN metrics use
    fake_rows: np.ndarray
    fake_probabilities: Callable[[], torch.Tensor]
    fake_label_tensor: torch.Tensor


METRICS: Registry[Callable[[FeatureSets], dict[str, Any]]] = Registry("metric")


@METRICS.register("frechet")
def _frechet(f: FeatureSets) -> dict[str, Any]:
    """Fréchet distance overall and its mean over classes."""
    per_class = [frechet_distance(f.real[f.real_labels == c], f.fake[f.fake_labels == c])
                 for c in np.unique(f.fake_labels)
                 if (f.real_labels == c).sum() > 2 and (f.fake_labels == c).sum() > 2]
    return {"frechet_distance": frechet_distance(f.real, f.fake),
            "frechet_distance_per_class_mean": float(np.mean(per_class)) if per_class else float("nan")}


@METRICS.register("label_agreement")
def _agreement(f: FeatureSets) -> dict[str, Any]:
    """How often the real-data classifier predicts the conditioning label."""
    return {"label_agreement": label_agreement(f.fake_probabilities(), f.fake_label_tensor)}


@METRICS.register("precision_recall")
def _precision_recall(f: FeatureSets) -> dict[str, Any]:
    """Improved precision and recall, k = 3."""
    return precision_recall(f.real[f.real_rows], f.fake[f.fake_rows], k=3)


@METRICS.register("density_coverage")
def _density_coverage(f: FeatureSets) -> dict[str, Any]:
    """Density and coverage, k = 5."""
    return density_coverage(f.real[f.real_rows], f.fake[f.fake_rows], k=5)


@METRICS.register("diversity")
def _diversity(f: FeatureSets) -> dict[str, Any]:
    """Per-class feature diversity of the fake and the real images."""
    return {"diversity_per_class": diversity(f.fake, f.fake_labels),
            "real_diversity_per_class": diversity(f.real, f.real_labels)}


def _synthetic_images(source: str | Path, class_names: tuple[str, ...], per_class: int, seed: int,
                      device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels (in the real folder's class order) from an HDF5 export, or drawn from a generator
    with the default sampling settings (the same images as a plain export with `seed`)."""
    from synthaug.data.dataset import load_synthetic
    from synthaug.sampler import Sampler
    from synthaug.sources import ExportSource, resolve_source

    resolved = resolve_source(source)
    if isinstance(resolved, ExportSource):
        return load_synthetic(resolved.path, class_names)
    sampler = Sampler(resolved.path, SamplingConfig(), device=resolve_device(device))
    remap = sampler.remap_to(class_names, resolved.path)
    blocks = list(sampler.blocks(sampler.per_class_plan(per_class, seed)))
    images = torch.from_numpy(np.concatenate([b.images for b in blocks]))
    return images, remap[torch.from_numpy(np.concatenate([b.labels for b in blocks]))]


def evaluate(source: str | Path, real_dir: str | Path, *, per_class: int = 1000, seed: int = 0,
             device: str = "auto", out: str | Path | None = None, inception_weights: str | Path | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score a run, a generator file or an HDF5 export against a real labelled folder; optionally write JSON.

    With `inception_weights` (a local copy of pytorch-fid's Inception file; nothing is downloaded) the result
    also has the classic `inception_fid`, between the synthetic images and as many real ones (a seeded subset).
    """
    import json

    from synthaug.data.folder import load_image_folder
    from synthaug.fsutil import atomic_write_text

    real = load_image_folder(real_dir, progress=progress)
    images, labels = _synthetic_images(source, real.class_names, per_class, seed, device)
    if images.shape[1:] != real.images.shape[1:]:
        real = load_image_folder(real_dir, images.shape[-1], images.shape[1], progress=progress)
    clf = feature_classifier(real, device=resolve_device(device), progress=progress)
    result = {"source": str(source), "real": str(real_dir), "images": int(len(labels)),
              "class_names": list(real.class_names), **quality_metrics(clf, real, images, labels)}
    if inception_weights is not None:
        result.update(inception_fid(inception_weights, real.images, images, seed=seed, device=device))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1))
    return result


def inception_fid(weights: str | Path, real: torch.Tensor, fake: torch.Tensor, seed: int = 0,
                  device: str = "cpu") -> dict[str, Any]:
    """The classic FID (pytorch-fid's Inception, local weights) between `fake` and as many `real` uint8 images."""
    from synthaug.inception import inception_features, load_fid_inception

    net = load_fid_inception(weights, device)
    pick = torch.from_numpy(np.random.default_rng(seed).permutation(len(real))[:len(fake)])
    fid = frechet_distance(inception_features(net, real[pick]), inception_features(net, fake))
    return {"inception_fid": fid, "inception_images": int(len(fake)), "inception_weights": str(weights)}


def select_best_epoch(run: str | Path, *, per_class: int = 500, holdout: float = 0.1, from_epoch: int = 1,
                      progress: bool = True) -> dict[str, Any]:
    """Score every per-epoch generator snapshot of a run; install the best as generator.pt.

    The figure is the classifier-feature Fréchet distance against a held-out split (`holdout`, stratified) of
    the run's training folder, with a feature classifier trained on the rest: never a test split, and never the
    images the feature classifier learnt. The last generator is kept as generator-last.pt. `from_epoch` skips
    earlier snapshots (after a long run, the early epochs are rarely worth scoring).
    """
    from synthaug.data.folder import load_image_folder, stratified_split
    from synthaug.runs import SNAPSHOTS, install_snapshot, read_run_config, snapshot_epoch, snapshot_files

    run = Path(run)
    snapshots = [p for p in snapshot_files(run) if snapshot_epoch(p) >= from_epoch]
    if not snapshots:
        raise SynthaugError(f"{run}: no per-epoch generator snapshots from epoch {from_epoch} on in "
                            f"{run / SNAPSHOTS}")
    cfg = read_run_config(run)
    real = load_image_folder(cfg.data.root, cfg.data.resolution, cfg.data.channels, progress=progress)
    rest, held = stratified_split(real, holdout, seed=0)
    clf = feature_classifier(rest, progress=progress)
    scores = {}
    for snap in tqdm(snapshots, desc="select-best", unit="epoch", disable=not progress):
        images, labels = _synthetic_images(snap, real.class_names, per_class, 0, "cpu")
        m = quality_metrics(clf, held, images, labels, max_real=5000)
        scores[snap.name] = {"frechet_distance": m["frechet_distance"], "label_agreement": m["label_agreement"]}
    best = min(scores, key=lambda k: scores[k]["frechet_distance"])
    result = {"best": best, "holdout": holdout, "held_out_images": len(held), "from_epoch": from_epoch,
              "scores": scores}
    install_snapshot(run, best, result)
    return result
