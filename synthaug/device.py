"""Choosing the device a process computes on: one home for 'auto', explicit names and torchrun's local rank."""
from __future__ import annotations

import os

import torch

from synthaug.errors import SynthaugError


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU; under torchrun a CUDA device is this rank's GPU."""
    if name in (None, "auto"):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise SynthaugError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SynthaugError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def pin_if_cuda(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Page-locked host memory for tensors bound for a GPU (so their copies can be non-blocking)."""
    return tensor.pin_memory() if device.type == "cuda" else tensor
