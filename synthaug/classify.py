"""Downstream classifiers, registered by name, trained on in-memory uint8 tensors with one shared recipe."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthaug.data.folder import LabelledImages
from synthaug.errors import SynthaugError
from synthaug.registry import Registry


# How the classifier meets uneven classes: plain cross-entropy; weighted by inverse class frequency; logit-adjusted
# (Menon et al. 2021, arXiv:2007.07314: log class priors added to the logits in training, tau = 1); or batches drawn
# with equal probability per class; or CMO (Park et al. 2022, arXiv:2112.00412): a patch of an image drawn with equal
# probability per class pasted on half the images of each natural batch, the label mixed by area, so the rare
# classes appear on the common classes' images.
CLASSIFIER_LOSSES = ("ce", "weighted", "logit-adjusted", "balanced-sampling", "cmo")
CMO_SHARE = 0.5  # the share of images that receive a patch (the paper's mixing probability)
# Augmentation policies, all on uint8 images and drawn per image: none; a random shift (the benchmark's default);
# the shift plus torchvision's TrivialAugmentWide or RandAugment (arXiv:2103.10158, arXiv:1909.13719).
AUGMENT_POLICIES = ("none", "shift", "trivial", "randaugment")
BATCH_MIXES = ("none", "mixup", "cutmix")  # torchvision.transforms.v2.MixUp / CutMix, alpha 1


@dataclass(frozen=True)
class ClassifierRecipe:
    """One training recipe for every condition of a benchmark: same steps, batch, optimiser, augmentation."""

    arch: str = "cnn"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    augment: str = "shift"  # one of AUGMENT_POLICIES; "shift": random translation by up to 1/14 of the side
    seed: int = 0
    loss: str = "ce"  # one of CLASSIFIER_LOSSES
    erasing: float = 0.0  # probability of torchvision's RandomErasing, per image
    mix: str = "none"  # one of BATCH_MIXES

    def __post_init__(self) -> None:
        for value, choices, what in ((self.loss, CLASSIFIER_LOSSES, "loss"), (self.augment, AUGMENT_POLICIES,
                                     "augmentation policy"), (self.mix, BATCH_MIXES, "batch mix")):
            if value not in choices:
                raise SynthaugError(f"unknown classifier {what} {value!r} (one of {', '.join(choices)})")
        if not 0.0 <= self.erasing <= 1.0:
            raise SynthaugError(f"erasing probability must lie in [0, 1] (got {self.erasing})")
        if self.steps < 1 or self.batch_size < 1:
            raise SynthaugError(f"classifier steps and batch size must be at least 1 (got {self.steps}, "
                                f"{self.batch_size})")


# The baselines a practitioner reaches for before any synthetic data, as changes to a recipe, by name. Augmentation
# baselines train with plain cross-entropy; imbalance baselines change only the loss and go on top of the best
# augmentation (`combine_baselines`). Random erasing at p = 0.25 is arXiv:1708.04896's setting for Fashion-MNIST.
BASELINES: Registry[dict] = Registry("classifier baseline")
for _name, _change in {"plain": {}, "none": {"augment": "none"}, "erasing": {"erasing": 0.25},
                       "trivial": {"augment": "trivial"}, "trivial+erasing": {"augment": "trivial", "erasing": 0.25},
                       "randaugment+erasing": {"augment": "randaugment", "erasing": 0.25},
                       "mixup": {"mix": "mixup"}, "cutmix": {"mix": "cutmix"},
                       "weighted": {"loss": "weighted"}, "logit-adjusted": {"loss": "logit-adjusted"},
                       "balanced-sampling": {"loss": "balanced-sampling"}, "cmo": {"loss": "cmo"}}.items():
    BASELINES.add(_name, _change)
AUGMENT_BASELINES = ("plain", "none", "erasing", "trivial", "trivial+erasing", "randaugment+erasing", "mixup",
                     "cutmix")
# every baseline that changes how the classes are weighed, all searched where classes are uneven: CMO wins on some
# folders (Fashion-MNIST cut to 3,000 uneven images) and loses badly on others (the rare protocol): validation decides
IMBALANCE_BASELINES = ("weighted", "logit-adjusted", "balanced-sampling", "cmo")


def with_baseline(recipe: ClassifierRecipe, name: str) -> ClassifierRecipe:
    """`recipe` under the baseline `name`, or several joined by ' + ' (e.g. 'trivial + logit-adjusted'): the
    baseline's fields replace the recipe's; an augmentation baseline resets the augmentation fields, a loss baseline
    the loss."""
    for part in (p.strip() for p in name.split(" + ")):
        change = BASELINES.get(part)
        if part in AUGMENT_BASELINES:
            change = {"augment": "shift", "erasing": 0.0, "mix": "none", **change}
        recipe = replace(recipe, **change)
    return recipe


def imbalance_part(name: str) -> str | None:
    """The imbalance loss of a baseline name ('trivial+erasing + logit-adjusted' -> 'logit-adjusted'), or None."""
    return next((p for p in name.split(" + ") if p in IMBALANCE_BASELINES), None)


def describe_recipe(recipe: ClassifierRecipe) -> str:
    """What a recipe does in words, e.g. 'TrivialAugment + random erasing + logit-adjusted loss'."""
    parts = [{"none": "no augmentation", "shift": "random shift", "trivial": "TrivialAugment",
              "randaugment": "RandAugment"}[recipe.augment]]
    if recipe.erasing:
        parts.append(f"random erasing {recipe.erasing:g}")
    if recipe.mix != "none":
        parts.append({"mixup": "MixUp", "cutmix": "CutMix"}[recipe.mix])
    if recipe.loss != "ce":
        parts.append({"weighted": "class-weighted loss", "logit-adjusted": "logit-adjusted loss",
                      "balanced-sampling": "class-balanced sampling",
                      "cmo": "rare-class patches on common images (CMO)"}[recipe.loss])
    return " + ".join(parts)


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


CLASSIFIERS: Registry[Callable[[int, int, int], nn.Module]] = Registry("classifier")
CLASSIFIERS.add("cnn", SmallCNN)
CLASSIFIERS.add("resnet18", ResNet18Small)


def list_classifiers() -> list[str]:
    """Names of the registered neural classifiers."""
    return CLASSIFIERS.names()


def build_classifier(arch: str, channels: int, num_classes: int, resolution: int) -> nn.Module:
    """Instantiate a registered classifier."""
    return CLASSIFIERS.get(arch)(channels, num_classes, resolution)


def normalise_pixels(x: torch.Tensor) -> torch.Tensor:
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


class TensorPool:
    """Training images held in memory: uint8 (N, C, H, W), labels (N,), optional soft labels (N, K); batches are
    drawn uniformly with replacement."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None = None):
        self.images, self.labels, self.soft = images, labels, soft
        self._balance: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the pool's images."""
        return tuple(self.images.shape[1:])

    def label_counts(self, num_classes: int) -> torch.Tensor:
        """Images per class (K,)."""
        return torch.bincount(self.labels, minlength=num_classes)

    def draw(self, n: int, gen: torch.Generator,
             balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """n (images, labels, soft labels or None); `balanced` draws every class with equal probability."""
        if balanced:
            if self._balance is None:  # per-image draw weights, 1 / its class's count: computed once
                self._balance = (1.0 / torch.bincount(self.labels).float())[self.labels]
            idx = torch.multinomial(self._balance, n, replacement=True, generator=gen)
        else:
            idx = torch.randint(0, len(self), (n,), generator=gen)
        return self.images[idx], self.labels[idx], self.soft[idx] if self.soft is not None else None


@dataclass
class Phase:
    """`steps` training steps whose batches draw from `pools` in the proportions `shares` (summing to 1)."""

    steps: int
    pools: list
    shares: list[float]


def _split(batch: int, shares: list[float]) -> list[int]:
    """Images per pool in one batch: rounded shares, the remainder to the last pool."""
    counts = [int(round(batch * s)) for s in shares[:-1]]
    return counts + [batch - sum(counts)]


def _batch(phase: Phase, batch: int, gen: torch.Generator, num_classes: int, balanced: bool = False):
    """One batch from a phase's pools: uint8 images, hard labels and (when any pool has them) soft targets."""
    parts = [pool.draw(n, gen, balanced) for pool, n in zip(phase.pools, _split(batch, phase.shares)) if n > 0]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    if all(p[2] is None for p in parts):
        return images, labels, None
    soft = torch.cat([p[2] if p[2] is not None else F.one_hot(p[1], num_classes).float() for p in parts])
    return images, labels, soft


def label_counts(phases: list[Phase], num_classes: int) -> torch.Tensor:
    """Images per class (K,) over every pool of `phases`: the training set's class frequencies."""
    return sum(pool.label_counts(num_classes) for ph in phases for pool in ph.pools).float()


def inverse_frequency(phases: list[Phase], num_classes: int) -> torch.Tensor:
    """Class weights (K,) for the "weighted" loss: inverse frequency over every pool of `phases`, mean 1 on a
    balanced set."""
    counts = label_counts(phases, num_classes)
    return counts.sum() / (num_classes * counts.clamp(min=1))


def _augmentations(recipe: ClassifierRecipe, num_classes: int) -> tuple[Callable | None, Callable | None,
                                                                        Callable | None]:
    """torchvision v2 transforms of a recipe: the per-image policy (uint8), random erasing (floats), the batch mix."""
    from torchvision.transforms import v2

    policy = {"trivial": v2.TrivialAugmentWide(), "randaugment": v2.RandAugment()}.get(recipe.augment)
    erase = v2.RandomErasing(p=recipe.erasing, value=0.0) if recipe.erasing > 0 else None
    mixer = {"mixup": v2.MixUp(num_classes=num_classes), "cutmix": v2.CutMix(num_classes=num_classes)}.get(recipe.mix)
    return policy, erase, mixer


def _mix_soft(x: torch.Tensor, target: torch.Tensor, mix: str,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix (alpha 1, each image with the next one, as torchvision's v2 transforms do) for soft
    targets, which torchvision's transforms do not take."""
    lam = float(torch.rand((), generator=gen))  # Beta(1, 1)
    other_x, other_t = x.roll(1, 0), target.roll(1, 0)
    if mix == "mixup":
        return lam * x + (1 - lam) * other_x, lam * target + (1 - lam) * other_t
    h, w = x.shape[-2:]
    r = (1 - lam) ** 0.5
    cy, cx = (int(v) for v in torch.randint(0, h, (1,), generator=gen).tolist() +
              torch.randint(0, w, (1,), generator=gen).tolist())
    y0, y1 = max(cy - int(h * r) // 2, 0), min(cy + int(h * r) // 2, h)
    x0, x1 = max(cx - int(w * r) // 2, 0), min(cx + int(w * r) // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = other_x[..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * target + (1 - lam) * other_t


def paste_patches(x: torch.Tensor, target: torch.Tensor, patches: torch.Tensor, patch_target: torch.Tensor,
                  gen: torch.Generator, share: float = CMO_SHARE) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix of `patches` into `x`, image by image: each image of `x` receives, with probability `share`, a box
    of its partner in `patches` covering 1 - lambda of it (lambda ~ U(0, 1), CutMix's alpha 1); the soft targets
    (N, K) mix by the area pasted."""
    n, _, h, w = x.shape
    cut = torch.sqrt(1 - torch.rand(n, generator=gen)) * (torch.rand(n, generator=gen) < share)
    cy, cx = torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)
    half_h, half_w = (cut * h).long() // 2, (cut * w).long() // 2
    y0, y1 = (cy - half_h).clamp(min=0), (cy + half_h).clamp(max=h)
    x0, x1 = (cx - half_w).clamp(min=0), (cx + half_w).clamp(max=w)
    rows, cols = torch.arange(h), torch.arange(w)
    box = (((rows >= y0[:, None]) & (rows < y1[:, None]))[:, :, None]
           & ((cols >= x0[:, None]) & (cols < x1[:, None]))[:, None, :])  # (N, H, W)
    pasted = box.flatten(1).float().mean(1).to(target.device)[:, None]
    mixed = torch.where(box[:, None].to(x.device), patches, x)
    return mixed, (1 - pasted) * target + pasted * patch_target


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, recipe: ClassifierRecipe,
                     device: torch.device | str = "cpu", class_weights: torch.Tensor | None = None,
                     progress: bool = True, desc: str = "classifier") -> nn.Module:
    """Train a classifier from scratch on uint8 images (N, C, H, W) for `recipe.steps` steps."""
    phase = Phase(recipe.steps, [TensorPool(images, labels)], [1.0])
    return train_on_phases([phase], num_classes, recipe, device, class_weights, progress, desc)


def train_on_phases(phases: list[Phase], num_classes: int, recipe: ClassifierRecipe,
                    device: torch.device | str = "cpu", class_weights: torch.Tensor | None = None,
                    progress: bool = True, desc: str = "classifier") -> nn.Module:
    """Train a classifier from scratch through `phases` (one learning-rate schedule over all their steps).

    Batches with soft targets train on the cross-entropy to the target distribution (real images: one-hot).
    """
    device = torch.device(device)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    shape = phases[0].pools[0].image_shape
    model = build_classifier(recipe.arch, shape[0], num_classes, shape[-1]).to(device)
    # NHWC activations: 1.6x faster training of the CNN on this project's CPU, the same arithmetic.
    model = model.to(memory_format=torch.channels_last)
    total = sum(ph.steps for ph in phases)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total, pct_start=0.15)
    if class_weights is None and recipe.loss == "weighted":
        class_weights = inverse_frequency(phases, num_classes)
    weights = class_weights.to(device) if class_weights is not None else None
    log_prior = None
    if recipe.loss == "logit-adjusted":
        counts = label_counts(phases, num_classes)
        log_prior = torch.log(counts.clamp(min=1) / counts.sum()).to(device)
    policy, erase, mixer = _augmentations(recipe, num_classes)

    def augmented(images: torch.Tensor) -> torch.Tensor:
        """A batch of uint8 images through the recipe's per-image augmentations, as normalised floats."""
        if policy is not None:  # per image: a v2 transform on a batch would draw one op for all of it
            images = torch.stack([policy(img) for img in images])
        x = normalise_pixels(images.to(device, non_blocking=True))
        if recipe.augment != "none":
            x = _translate(x, gen)
        if erase is not None:
            x = torch.stack([erase(img) for img in x])
        return x

    def soft_of(labels: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        return (soft if soft is not None else F.one_hot(labels, num_classes).float()).to(device)

    model.train()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    for phase in phases:
        for _ in range(phase.steps):
            images, labels, soft = _batch(phase, recipe.batch_size, gen, num_classes,
                                          recipe.loss == "balanced-sampling")
            x = augmented(images)
            target = soft.to(device) if soft is not None else labels.to(device)
            if recipe.loss == "cmo":
                rare_images, rare_labels, rare_soft = _batch(phase, recipe.batch_size, gen, num_classes, True)
                x, target = paste_patches(x, soft_of(labels, soft), augmented(rare_images),
                                          soft_of(rare_labels, rare_soft), gen)
            if mixer is not None:
                x, target = mixer(x, target) if target.ndim == 1 else _mix_soft(x, target, recipe.mix, gen)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            if log_prior is not None:
                logits = logits + log_prior
            loss = F.cross_entropy(logits, target, weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return model.eval()


def model_inputs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 images as the model's normalised NHWC input on its device."""
    device = next(model.parameters()).device
    return normalise_pixels(images.to(device, non_blocking=True)).contiguous(memory_format=torch.channels_last)


# Batches of 128 in NHWC storage: 3.3x the rate of NCHW batches of 1024 for the CNN on this project's CPU
# (4,838 against 1,832 images/s), whose caches the larger activations overflow.
INFERENCE_BATCH = 128


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Class probabilities (N, K) for uint8 images."""
    # the layout change happens outside inference mode: weights converted inside it could no longer be trained
    # or differentiated through (a top-up's translation takes gradients of a model that `predict` has seen)
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = [F.softmax(model(model_inputs(model, images[i:i + batch_size])).float(), dim=1).cpu()
               for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0)


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Penultimate features (N, D) for uint8 images."""
    model = model.to(memory_format=torch.channels_last)  # outside inference mode, as in `predict`
    with torch.inference_mode():
        return torch.cat([model.embed(model_inputs(model, images[i:i + batch_size])).float().cpu()
                          for i in range(0, images.shape[0], batch_size)])


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix (scikit-learn)."""
    from sklearn.metrics import confusion_matrix, f1_score, recall_score  # here: importing sklearn costs seconds

    labels = list(range(num_classes))
    return {"accuracy": float((y_true == y_pred).mean()),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "per_class_recall": recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist(),
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def trained_on_real(real: LabelledImages, recipe: ClassifierRecipe, device: str | torch.device = "cpu",
                    progress: bool = False, desc: str = "classifier on the real images") -> nn.Module:
    """A classifier trained on a real labelled set with `recipe`, cached on disk by the set's content and recipe.

    This is the teacher of soft labels and confidence filters, and the metrics' feature extractor: it only ever
    sees the images it is given (a run's training folder, or the training part of a validation split).
    """
    import hashlib

    from synthaug.data.folder import cache_dir
    from synthaug.runs import save_atomic

    h = hashlib.sha256(real.images.numpy().tobytes())
    h.update(real.labels.numpy().tobytes())
    h.update(repr(recipe).encode())
    path = cache_dir() / f"features-{h.hexdigest()[:24]}.pt"
    shape = (real.images.shape[1], len(real.class_names), real.images.shape[-1])
    if path.is_file():
        model = build_classifier(recipe.arch, *shape)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.trained_recipe = recipe  # what made it: a teacher's provenance names it
            return model.eval().to(device)
        except Exception as exc:  # noqa: BLE001 - any damage to our own cache means: train it again
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            warnings.warn(f"{path}: damaged classifier cache entry ({reason}); training it again", stacklevel=2)
            path.unlink(missing_ok=True)
    model = train_classifier(real.images, real.labels, len(real.class_names), recipe, device, progress=progress,
                             desc=desc)
    try:
        save_atomic(model.state_dict(), path)
    except OSError:
        pass
    model.trained_recipe = recipe
    return model


# A teacher trains for this many epochs of its folder, within these bounds: enough to converge on a small folder
# (a few hundred images reach their best validation accuracy well inside 40 epochs), bounded on a large one so a
# CPU trains it in minutes (3,000 steps: 6.4 epochs of Fashion-MNIST's 60,000 images). `tune` checks the budget
# against half of it on validation.
TEACHER_EPOCHS, TEACHER_MIN_STEPS, TEACHER_MAX_STEPS = 40, 500, 3000


def teacher_budget(num_images: int, batch_size: int = 128) -> int:
    """The teacher's step budget for a folder of `num_images`: TEACHER_EPOCHS epochs, within the bounds."""
    return int(min(TEACHER_MAX_STEPS, max(TEACHER_MIN_STEPS, round(TEACHER_EPOCHS * num_images / batch_size))))


def teacher_recipe(steps: int, baseline: str | None = None) -> ClassifierRecipe:
    """The recipe of a soft-label teacher and confidence filter: the benchmark CNN at `steps` steps, seed 0, under
    the classifier baseline `baseline` (None: plain)."""
    recipe = ClassifierRecipe(steps=steps, seed=0)
    return with_baseline(recipe, baseline) if baseline else recipe


def weights_sha256(model: nn.Module) -> str:
    """A digest of a model's weights (names and bytes), e.g. to key an export on its teacher."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
