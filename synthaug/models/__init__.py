"""The architecture registry: each entry builds a (generator, discriminator) pair and carries its training defaults."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from synthaug.config import ModelConfig
from synthaug.errors import SynthaugError
from synthaug.models.base import ConditionalGenerator, upsampling_plan


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


_REGISTRY: dict[str, Architecture] = {}
DEFAULT_ARCH = "sngan"


def register_arch(arch: Architecture) -> Architecture:
    """Add an architecture to the registry; names are unique."""
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    _REGISTRY[arch.name] = arch
    return arch


def list_archs() -> list[str]:
    """Names of all registered architectures."""
    return sorted(_REGISTRY)


def get_arch(name: str) -> Architecture:
    """Look an architecture up by name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SynthaugError(f"unknown architecture {name!r}; choose one of {', '.join(list_archs())}") from None


def build_models(cfg: ModelConfig) -> tuple[ConditionalGenerator, nn.Module]:
    """Build the generator and discriminator a model config describes."""
    arch = get_arch(cfg.arch)
    upsampling_plan(cfg.resolution)  # validates the resolution
    return arch.build_generator(cfg), arch.build_discriminator(cfg)


# Importing the modules registers their architectures.
from synthaug.models import conv, dcgan, mlp, sngan  # noqa: E402,F401

__all__ = ["DEFAULT_ARCH", "Architecture", "ConditionalGenerator", "build_models", "get_arch", "list_archs",
           "register_arch"]
