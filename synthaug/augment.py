"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real and fake images before D.

Augmenting both sides with the same random policy keeps the discriminator from memorising a small training set,
while gradients still flow through the augmentation to the generator. Policies live in a registry keyed by name.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from synthaug.errors import SynthaugError
from synthaug.registry import Registry


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side, in whole pixels, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sy, sy + 1, (n,), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n,), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # source row of each output row
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = x[idx_n, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]  # (n, h, w, c)
    return (out * valid[..., None]).permute(0, 3, 1, 2)  # NHWC storage: already channels_last


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` times the side at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside)[:, None].to(x.dtype)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation (a no-op on one channel) and contrast, per image."""
    n = x.shape[0]
    r = torch.rand(n, 3, 1, 1, 1, device=x.device, dtype=x.dtype)
    x = x + (r[:, 0] - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r[:, 1] * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r[:, 2] + 0.5) + mean


AUGMENTATIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("augmentation")
for _name, _fn in (("translation", translation), ("cutout", cutout), ("color", color)):
    AUGMENTATIONS.add(_name, _fn)


def list_policies() -> list[str]:
    """Names of the registered augmentations."""
    return AUGMENTATIONS.names()


def parse_policy(spec: str | None) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (); unknown names are an error."""
    names = tuple(s.strip() for s in (spec or "").split(",") if s.strip())
    unknown = [s for s in names if s not in AUGMENTATIONS]
    if unknown:
        raise SynthaugError(f"unknown augmentation(s) {unknown}; choose from {', '.join(list_policies())}")
    return names


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply each named augmentation in turn (identity for an empty policy)."""
    for name in policy:
        x = AUGMENTATIONS.get(name)(x)
    return x
