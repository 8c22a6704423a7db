"""The architecture registry: each entry builds a (generator, discriminator) pair and carries its training defaults."""
from __future__ import annotations

from torch import nn

from synthaug.config import ModelConfig
from synthaug.models.base import ConditionalGenerator, upsampling_plan
from synthaug.models.registry import ARCHITECTURES, DEFAULT_ARCH, Architecture, get_arch, list_archs, register_arch


def build_models(cfg: ModelConfig) -> tuple[ConditionalGenerator, nn.Module]:
    """Build the generator and discriminator a model config describes."""
    arch = get_arch(cfg.arch)
    upsampling_plan(cfg.resolution)  # validates the resolution
    return arch.build_generator(cfg), arch.build_discriminator(cfg)


# Importing the modules registers their architectures.
from synthaug.models import conv, dcgan, mlp, sngan  # noqa: E402,F401

__all__ = ["ARCHITECTURES", "DEFAULT_ARCH", "Architecture", "ConditionalGenerator", "build_models", "get_arch",
           "list_archs", "register_arch"]
