"""Downstream classifiers, registered by name, trained on in-memory uint8 tensors with one shared recipe."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from torch import nn
from tqdm.auto import tqdm

from synthaug.errors import SynthaugError


@dataclass(frozen=True)
class ClassifierRecipe:
    """One training recipe for every condition of a benchmark: same steps, batch, optimiser, augmentation."""

    arch: str = "cnn"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    augment: bool = True  # random translation by up to 1/14 of the side (pad + crop), on the tensor
    seed: int = 0


class SmallCNN(nn.Module):
    """Three conv blocks (32-64-128) with BN and pooling, global average pool, linear head; fast on a CPU."""

    def __init__(self, channels: int, num_classes: int, resolution: int):
        super().__init__()
        del resolution

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(channels, 32), block(32, 32), nn.MaxPool2d(2),
                                      block(32, 64), block(64, 64), nn.MaxPool2d(2),
                                      block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet18Small(nn.Module):
    """torchvision's ResNet-18 adapted to small images: 3x3 stride-1 stem, no max-pool below 64 px."""

    def __init__(self, channels: int, num_classes: int, resolution: int):
        super().__init__()
        from torchvision.models import resnet18

        self.body = resnet18(num_classes=num_classes)
        self.body.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        if resolution < 64:
            self.body.maxpool = nn.Identity()
        self.head = self.body.fc
        self.body.fc = nn.Identity()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 512)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


_CLASSIFIERS: dict[str, Callable[[int, int, int], nn.Module]] = {"cnn": SmallCNN, "resnet18": ResNet18Small}


def list_classifiers() -> list[str]:
    """Names of the registered neural classifiers."""
    return sorted(_CLASSIFIERS)


def build_classifier(arch: str, channels: int, num_classes: int, resolution: int) -> nn.Module:
    """Instantiate a registered classifier."""
    try:
        return _CLASSIFIERS[arch](channels, num_classes, resolution)
    except KeyError:
        raise SynthaugError(f"unknown classifier {arch!r}; choose one of {', '.join(list_classifiers())}") from None


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [-1, 1]."""
    return x.float().div(127.5).sub(1.0)


def _translate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by a random offset (zero padding), the same augmentation for every condition."""
    n, _, h, w = x.shape
    pad = max(1, h // 14)
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, recipe: ClassifierRecipe,
                     device: torch.device | str = "cpu", class_weights: torch.Tensor | None = None,
                     progress: bool = True, desc: str = "classifier") -> nn.Module:
    """Train a classifier from scratch on uint8 images (N, C, H, W) for `recipe.steps` steps."""
    device = torch.device(device)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    model = build_classifier(recipe.arch, images.shape[1], num_classes, images.shape[-1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.15)
    weights = class_weights.to(device) if class_weights is not None else None
    images, labels = images.to(device), labels.to(device)
    model.train()
    for _ in tqdm(range(recipe.steps), desc=desc, unit="step", disable=not progress, leave=False):
        idx = torch.randint(0, images.shape[0], (recipe.batch_size,), generator=gen).to(device)
        x = _normalise(images[idx])
        if recipe.augment:
            x = _translate(x, gen)
        loss = F.cross_entropy(model(x), labels[idx], weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class probabilities (N, K) for uint8 images."""
    device = next(model.parameters()).device
    out = [F.softmax(model(_normalise(images[i:i + batch_size].to(device))).float(), dim=1).cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


@torch.inference_mode()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Penultimate features (N, D) for uint8 images."""
    device = next(model.parameters()).device
    return torch.cat([model.embed(_normalise(images[i:i + batch_size].to(device))).float().cpu()
                      for i in range(0, images.shape[0], batch_size)])


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix (scikit-learn)."""
    labels = list(range(num_classes))
    return {"accuracy": float((y_true == y_pred).mean()),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "per_class_recall": recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist(),
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
