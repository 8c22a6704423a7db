"""Figures written into run and report folders: training curves, sample-grid animation, benchmark plots."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthaug.fsutil import atomic_path


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write a figure atomically as PNG and free it."""
    plt = _pyplot()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines log, skipping a torn last line (a killed writer)."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def training_curves(log: Path, epochs: Path, out: Path) -> None:
    """Losses, D outputs, gradient norms per step and per-class diversity per epoch, in one PNG."""
    rows = read_jsonl(log)
    if not rows:
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4))
    step = [r["step"] for r in rows]
    panels = [("losses", ("d_loss", "g_loss")), ("discriminator output", ("d_real", "d_fake")),
              ("gradient norm", ("d_grad_norm", "g_grad_norm"))]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(step, [r.get(key, np.nan) for r in rows], label=key, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    per_epoch = read_jsonl(epochs)
    if per_epoch:
        div = np.array([r["diversity_per_class"] for r in per_epoch])
        ax = axes[3]
        ax.plot([r["epoch"] for r in per_epoch], div, linewidth=0.8)
        ax.set_title("per-class diversity (fixed noise)")
        ax.set_xlabel("epoch")
        ax.set_ylim(bottom=0)
    _save(fig, out)


def grid_animation(frames: Sequence[Path], out: Path, ms_per_frame: int = 400) -> None:
    """An animated GIF of the per-epoch sample grids (Pillow), the last frame held longer."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(p).convert("P", palette=Image.Palette.ADAPTIVE) for p in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 5]
    with atomic_path(out, ".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)


def accuracy_vs_ratio(results: dict, ratios: Sequence[float], out: Path) -> None:
    """Test accuracy against synthetic-per-real ratio (0 = real only), mean ± std error bars."""
    plt = _pyplot()
    xs, ys, es = [], [], []
    for x, name in [(0.0, "real")] + [(r, f"mixed x{r:g}") for r in ratios]:
        if name in results:
            xs.append(x)
            ys.append(100 * results[name]["accuracy"])
            es.append(100 * results[name].get("accuracy_std", 0.0))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label="real + synthetic")
    if "synthetic" in results:
        r = results["synthetic"]
        ax.axhline(100 * r["accuracy"], color="tab:red", linestyle="--", label="synthetic only")
    ax.set_xlabel("synthetic images per real image")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out)


def per_class_recall(results: dict, class_names: Sequence[str], out: Path) -> None:
    """Grouped bars: recall of each class under each condition."""
    plt = _pyplot()
    names = list(results)
    k = len(class_names)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * k), 3.8))
    for i, name in enumerate(names):
        r = results[name]
        ax.bar(np.arange(k) + i * width, 100 * np.array(r["per_class_recall"]), width,
               yerr=100 * np.array(r.get("per_class_recall_std", [0] * k)), label=name, capsize=2)
    ax.set_xticks(np.arange(k) + width * (len(names) - 1) / 2)
    ax.set_xticklabels(class_names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("recall (%)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, out)


def confusion_matrices(results: dict, class_names: Sequence[str], out: Path) -> None:
    """One row-normalised confusion matrix per condition (true class down, predicted across)."""
    plt = _pyplot()
    names = list(results)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        m = np.array(results[name]["confusion"], dtype=float)
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(class_names)))
        ax.set_yticks(range(len(class_names)))
        ax.set_xticklabels(class_names, rotation=90, fontsize=6)
        ax.set_yticklabels(class_names, fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    _save(fig, out)


def class_sample_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], out: Path,
                      per_class: int = 10) -> None:
    """A grid of uint8 images (N, C, H, W), one row per class with its name."""
    plt = _pyplot()
    k = len(class_names)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.7, k * 0.75), squeeze=False)
    for c in range(k):
        idx = np.flatnonzero(labels == c)[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if j < len(idx):
                img = images[idx[j]]
                ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        axes[c][0].text(-0.1, 0.5, class_names[c], transform=axes[c][0].transAxes, ha="right", va="center",
                        fontsize=7)
    _save(fig, out)


def rare_class_samples(sets: dict[str, tuple[np.ndarray, np.ndarray]], rare: Sequence[int],
                       class_names: Sequence[str], out: Path, per_row: int = 8) -> None:
    """For each rare class, one row of images from each named set (images, labels), e.g. its real training images
    above its synthetic top-up."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(sets) * len(rare), per_row, figsize=(per_row * 0.75, len(rare) * 0.8 * len(sets)),
                             squeeze=False)
    for r, c in enumerate(rare):
        for kind, (name, (images, labels)) in enumerate(sets.items()):
            row = axes[len(sets) * r + kind]
            idx = np.flatnonzero(labels == c)[:per_row]
            for j, ax in enumerate(row):
                ax.axis("off")
                if j < len(idx):
                    img = images[idx[j]]
                    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0,
                              vmax=255)
            row[0].text(-0.1, 0.5, f"{class_names[c]}\n{name}", transform=row[0].transAxes, ha="right",
                        va="center", fontsize=7)
    _save(fig, out)
