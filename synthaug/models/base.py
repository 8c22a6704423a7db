"""What every generator shares: the (z, labels) -> image contract and the resolution plan."""
from __future__ import annotations

import torch
from torch import nn

from synthaug.errors import SynthaugError


def upsampling_plan(resolution: int) -> tuple[int, int]:
    """(base side, number of 2x stages) with base * 2**stages == resolution and base >= 4 where possible."""
    if resolution < 8 or resolution % 4:
        raise SynthaugError(f"resolution {resolution} is not supported: use a multiple of 4, at least 8")
    stages = 0
    while resolution % (2 ** (stages + 1)) == 0 and resolution // 2 ** (stages + 1) >= 4:
        stages += 1
    return resolution // 2 ** stages, stages


class ConditionalGenerator(nn.Module):
    """Maps noise z (N, latent_dim) and int64 labels (N,) to images (N, C, H, W) in [-1, 1]."""

    latent_distribution = "normal"

    def __init__(self, latent_dim: int, num_classes: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.class_names: tuple[str, ...] = tuple(str(i) for i in range(num_classes))

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu", truncation: float | None = None) -> torch.Tensor:
        """Draw n latent vectors from this generator's prior (a seeded torch.Generator makes it repeatable)."""
        if self.latent_distribution == "uniform":
            # The uniform prior on [-1, 1] truncated to |z| <= t is uniform on [-t, t].
            scale = 1.0 if truncation is None else min(float(truncation), 1.0)
            return (torch.rand(n, self.latent_dim, generator=generator, device=device) * 2 - 1) * scale
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if truncation is not None:
            # Resample out-of-range entries (truncated normal), deterministic given the generator.
            for _ in range(100):
                bad = z.abs() > truncation
                if not bad.any():
                    break
                z = torch.where(bad, torch.randn(z.shape, generator=generator, device=device), z)
            z = z.clamp(-truncation, truncation)
        return z


def image_numel(cfg) -> int:
    """C * H * W for a model config."""
    return cfg.channels * cfg.resolution * cfg.resolution


class LabelChannel(nn.Module):
    """Label -> embedding -> dense -> one (H, W) feature map, the seeds' way of conditioning a conv net."""

    def __init__(self, num_classes: int, side: int, embed_dim: int = 50):
        super().__init__()
        self.side = side
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.dense = nn.Linear(embed_dim, side * side)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.dense(self.embed(labels)).view(-1, 1, self.side, self.side)
