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


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion-mnist-sngan"])
def test_generator_files_written_by_earlier_versions_still_load(name):
    # The shipped files were written before the networks' code was last reorganised: their key names are the
    # checkpoints' own, and a strict load must place every one of them.
    import synthaug
    from synthaug.runs import load_safe, model_config_from

    path = synthaug.pretrained_path(name)
    obj = load_safe(path)
    g, _ = build_models(model_config_from(obj, str(path)))
    assert set(g.state_dict()) == set(obj["state_dict"])
    g.load_state_dict(obj["state_dict"])  # strict
    gen = synthaug.load_generator(path)
    z = gen.sample_latent(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = gen(z, torch.arange(4))
    assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1.0 and x.std() > 0.1
