"""Inception-v3 pool features for the classic FID, from local weights only (never fetched).

The weights file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the TensorFlow FID network ported to
PyTorch): torchvision's Inception3 with 1008 outputs, whose mixed blocks average-pool without counting padding and
whose last block max-pools, as TensorFlow's graph does. Any file with the same parameter names loads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from synthaug.errors import CheckpointError

INPUT_SIZE = 299
FEATURES = 2048


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pooling that ignores padding, as in TensorFlow's FID graph."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))]


class _BlockC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))]


class _BlockE(InceptionE):
    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool  # TensorFlow's last block max-pools its pool branch

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return [self.branch1x1(x), b3, d, self.branch_pool(pool)]


def fid_inception() -> nn.Module:
    """The FID Inception network, uninitialised: its weights come from `load_fid_inception`."""
    net = Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
    net.Mixed_6b, net.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
    net.Mixed_6d, net.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
    net.Mixed_7b, net.Mixed_7c = _BlockE(1280, max_pool=False), _BlockE(2048, max_pool=True)
    return net


def load_fid_inception(weights: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The FID Inception network with local weights, returning 2048-d pool features (eval mode)."""
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such Inception weights file (pytorch-fid's pt_inception-2015-12-05-*.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"{path}: not a readable weights file ({str(exc).splitlines()[0][:120]})") from None
    net = fid_inception()
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not pytorch-fid's Inception weights ({str(exc).splitlines()[0][:160]})") \
            from None
    net.fc = nn.Identity()  # the forward pass then ends at the 2048-d pool3 features
    return net.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def inception_features(net: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Pool3 features (N, 2048) of uint8 images (N, C, H, W): resized to 299 bilinearly, scaled to [-1, 1]."""
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        out.append(net(x * 2 - 1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, FEATURES))
