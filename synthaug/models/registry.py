"""The architecture registry: each entry builds a (generator, discriminator) pair and carries its training defaults."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from synthaug.config import ModelConfig
from synthaug.models.base import ConditionalGenerator
from synthaug.registry import Registry


@dataclass(frozen=True)
class Architecture:
    """A named cGAN: how to build both networks and the training settings it was designed with."""

    name: str
    build_generator: Callable[[ModelConfig], ConditionalGenerator]
    build_discriminator: Callable[[ModelConfig], nn.Module]
    description: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    ema: bool = False
    default_width: int = 0  # what ModelConfig.width = 0 means for this architecture (0: no width setting)


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
DEFAULT_ARCH = "dcgan"  # the measured best on CPUs; see synthaug.recipes.default_recipe for the device-aware choice


def register_arch(arch: Architecture) -> Architecture:
    """Add an architecture to the registry; names are unique."""
    return ARCHITECTURES.add(arch.name, arch)


def list_archs() -> list[str]:
    """Names of all registered architectures."""
    return ARCHITECTURES.names()


def get_arch(name: str) -> Architecture:
    """Look an architecture up by name."""
    return ARCHITECTURES.get(name)
