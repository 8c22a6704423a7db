"""Every registered architecture builds at several resolutions and honours the generator contract."""
from __future__ import annotations

import pytest
import torch

from synthaug.config import ModelConfig
from synthaug.errors import SynthaugError
from synthaug.models import Architecture, build_models, get_arch, list_archs, register_arch
from synthaug.models.base import upsampling_plan

ARCHS = ["mlp-maxout", "mlp", "conv", "dcgan", "sngan", "sngan-cnn"]


def test_registry_lists_every_seed_architecture():
    assert list_archs() == sorted(ARCHS)
    with pytest.raises(SynthaugError, match="unknown architecture"):
        get_arch("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_arch(Architecture("conv", None, None, ""))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("res, ch", [(8, 1), (28, 1), (32, 3)])
def test_shapes_range_and_gradients(arch, res, ch):
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(arch, res, ch, num_classes=5))
    z = g.sample_latent(6)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    x = g(z, labels)
    assert x.shape == (6, ch, res, res)
    assert float(x.detach().min()) >= -1.0 and float(x.detach().max()) <= 1.0
    logits = d(x, labels)
    assert logits.shape == (6,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)


def test_conditioning_changes_the_output():
    g, _ = build_models(ModelConfig("conv", 28, 1, 10))
    g.eval()
    z = g.sample_latent(1).repeat(2, 1)
    with torch.no_grad():
        a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([0, 1]))
    torch.testing.assert_close(a[0], a[1])
    assert not torch.allclose(b[0], b[1])


def test_latent_priors_and_truncation():
    g, _ = build_models(ModelConfig("mlp-maxout", 8, 1, 3))
    z = g.sample_latent(1000, torch.Generator().manual_seed(0))
    assert float(z.min()) >= -1 and float(z.max()) <= 1  # uniform on the hypercube, as in the paper
    zt = g.sample_latent(1000, torch.Generator().manual_seed(0), truncation=0.5)
    assert float(zt.abs().max()) <= 0.5 and float(zt.abs().max()) > 0.45  # truncation holds for uniform z too
    g2, _ = build_models(ModelConfig("conv", 8, 1, 3))
    t = g2.sample_latent(1000, torch.Generator().manual_seed(0), truncation=0.5)
    assert float(t.abs().max()) <= 0.5
    again = g2.sample_latent(1000, torch.Generator().manual_seed(0), truncation=0.5)
    torch.testing.assert_close(t, again)


def test_upsampling_plan():
    assert upsampling_plan(28) == (7, 2)
    assert upsampling_plan(32) == (4, 3)
    assert upsampling_plan(8) == (4, 1)
    with pytest.raises(SynthaugError, match="not supported"):
        upsampling_plan(30)


def test_sngan_discriminator_loads_checkpoints_from_before_the_shared_head():
    torch.manual_seed(0)
    _, d = build_models(ModelConfig("sngan", 8, 1, 3))
    old = d.state_dict()  # the key names of checkpoints written before the projection became a shared base class
    assert "linear.bias" in old and not any(k.startswith("head.") for k in old)
    _, fresh = build_models(ModelConfig("sngan", 8, 1, 3))
    fresh.load_state_dict(old)  # strict: every key must find its place
    for key, value in d.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
