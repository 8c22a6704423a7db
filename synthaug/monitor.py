"""Watching a run as it trains: per-step logs, per-epoch sample grids, diversity, warnings, curves, TensorBoard."""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from synthaug.fsutil import atomic_path
from synthaug.models import ConditionalGenerator
from synthaug.plots import grid_animation, training_curves

COLLAPSE_DIVERSITY = 0.02  # RMS pixel distance in [0, 1]; real Fashion-MNIST classes sit near 0.3


def fixed_grid_inputs(num_classes: int, latent: Callable[..., torch.Tensor], seed: int, per_row: int = 10):
    """Fixed noise and labels for the per-epoch grid: one row per class."""
    gen = torch.Generator().manual_seed(seed + 7919)
    z = latent(num_classes * per_row, generator=gen)
    labels = torch.arange(num_classes).repeat_interleave(per_row)
    return z, labels


@torch.inference_mode()
def save_sample_grid(g: ConditionalGenerator, z: torch.Tensor, labels: torch.Tensor, path: Path,
                     per_row: int = 10) -> torch.Tensor:
    """Write a PNG grid of samples, one row per class; return the grid's images in [0, 1]."""
    from PIL import Image
    from torchvision.utils import make_grid  # here, not at the top: importing torchvision costs every command seconds

    was_training = g.training
    g.eval()
    device = next(g.parameters()).device
    images = g(z.to(device), labels.to(device)).float().cpu()
    g.train(was_training)
    images = ((images + 1) / 2).clamp(0, 1)
    grid = make_grid(images, nrow=per_row, padding=2, pad_value=1.0)
    arr = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0]).save(tmp, format="PNG")
    return images


def class_diversity(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Mean pairwise RMS pixel distance between samples of each class (near 0: the class has collapsed)."""
    flat = images.flatten(1).float()
    out = []
    for c in range(num_classes):
        x = flat[labels == c]
        if len(x) < 2:
            out.append(float("nan"))
            continue
        d = torch.cdist(x, x) / flat.shape[1] ** 0.5
        out.append(float(d.sum() / (len(x) * (len(x) - 1))))
    return out


def tensorboard_writer(out: Path):
    """A SummaryWriter into OUT/tensorboard when the optional `tensorboard` extra is installed, else None."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def discriminator_wins(loss_name: str, means: dict[str, float]) -> bool:
    """Whether D rejects every fake with near certainty (the generator's gradients then vanish)."""
    return loss_name in ("bce", "hinge") and means.get("d_fake", 0.0) < -6.0 and \
        means.get("d_real", 0.0) - means.get("d_fake", 0.0) > 8.0


class Monitor:
    """What rank 0 writes about a run besides checkpoints: log.jsonl, epochs.jsonl, samples/, curves.png,
    samples.gif and TensorBoard events."""

    def __init__(self, out: Path, class_names: tuple[str, ...], loss_name: str, grid: tuple[torch.Tensor, torch.Tensor],
                 enabled: bool):
        self.out, self.class_names, self.loss_name = out, class_names, loss_name
        self.grid_z, self.grid_labels = grid
        self.enabled = enabled
        self.tb = tensorboard_writer(out) if enabled else None

    def step(self, log: IO[str], step: int, epoch: int, row: dict[str, float]) -> None:
        """Record one logged step."""
        log.write(json.dumps({"step": step, "epoch": epoch, **row}) + "\n")
        log.flush()
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def epoch(self, sampler: ConditionalGenerator, epoch: int, step: int, means: dict[str, float]) -> None:
        """Sample grid, per-class diversity, collapse and D-wins warnings, curves and TensorBoard for one epoch."""
        path = self.out / "samples" / f"epoch_{epoch:04d}.png"
        images = save_sample_grid(sampler, self.grid_z, self.grid_labels, path)
        diversity = class_diversity(images, self.grid_labels, len(self.class_names))
        collapsed = [self.class_names[c] for c, d in enumerate(diversity) if d < COLLAPSE_DIVERSITY]
        if collapsed:
            warnings.warn(f"epoch {epoch}: samples of {collapsed} barely differ (diversity < "
                          f"{COLLAPSE_DIVERSITY}); the generator may be collapsing", stacklevel=3)
        if discriminator_wins(self.loss_name, means):
            warnings.warn(f"epoch {epoch}: the discriminator wins outright (mean D(real) {means['d_real']:.1f}, "
                          f"D(fake) {means['d_fake']:.1f}): the generator's gradients vanish; lower --lr-d, add "
                          f"--augment, or try --loss hinge", stacklevel=3)
        row = {"epoch": epoch, "step": step, **means, "diversity_per_class": diversity}
        with open(self.out / "epochs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        training_curves(self.out / "log.jsonl", self.out / "epochs.jsonl", self.out / "curves.png")
        if self.tb is not None:
            from torchvision.utils import make_grid

            self.tb.add_image("samples", make_grid(images, nrow=10, padding=2, pad_value=1.0), step)
            for name, d in zip(self.class_names, diversity):
                self.tb.add_scalar(f"diversity/{name}", d, step)
            self.tb.flush()

    def close(self, sampler: ConditionalGenerator, step: int, mid_epoch: bool) -> None:
        """A last grid when stopped mid-epoch, the animation of all epoch grids, and TensorBoard closed."""
        if mid_epoch:
            save_sample_grid(sampler, self.grid_z, self.grid_labels, self.out / "samples" / f"step_{step:07d}.png")
        grid_animation(sorted((self.out / "samples").glob("epoch_*.png")), self.out / "samples.gif")
        if self.tb is not None:
            self.tb.close()


__all__ = ["COLLAPSE_DIVERSITY", "Monitor", "class_diversity", "fixed_grid_inputs", "save_sample_grid"]
