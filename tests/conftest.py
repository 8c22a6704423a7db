"""Shared fixtures: small real labelled image folders (Pillow-encoded PNGs) and an isolated decode cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, split the cores between the workers: each worker and the processes it starts."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = str(max(1, (os.cpu_count() or 1) // workers))
        # two workers each running torch on every core would oversubscribe them: OpenMP threads then wait on each other
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own decode cache folder."""
    monkeypatch.setenv("SYNTHAUG_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def write_digits(root: Path, per_class: int | None = None, classes: int = 10, offset: int = 0) -> Path:
    """scikit-learn's 8x8 digits as root/<digit>/<n>.png (grayscale PNGs)."""
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    for label in range(classes):
        idx = np.flatnonzero(digits.target == label)[offset:]
        if per_class is not None:
            idx = idx[:per_class]
        class_dir = root / f"digit{label}"
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i], mode="L").save(class_dir / f"{i:04d}.png")
    return root


def write_rgb_digits(root: Path, counts: dict[int, int], side: int = 64, offset: int = 0) -> Path:
    """Digits as `side`-px RGB PNGs (larger than the 8-px originals), `counts[d]` images of digit d."""
    digits = load_digits()
    for label, n in counts.items():
        (root / f"digit{label}").mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(digits.target == label)[offset:offset + n]:
            gray = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
            Image.fromarray(rgb, mode="RGB").resize((side, side), Image.NEAREST).save(root / f"digit{label}" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """All 1797 digits, 10 classes, 8x8 grayscale."""
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits_splits(tmp_path_factory) -> Path:
    """digits as root/train (first 140 per class) and root/test (the rest)."""
    root = tmp_path_factory.mktemp("digits_splits")
    write_digits(root / "train", per_class=140)
    write_digits(root / "test", offset=140)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits_dir) -> Path:
    """A conv cGAN trained for a few steps on digits (shared by export and dataset tests)."""
    import synthaug

    out = tmp_path_factory.mktemp("runs") / "digits"
    return synthaug.fit(digits_dir, out, arch="conv", epochs=1, max_steps=10, batch_size=32, progress=False)
