"""The generation engine on a real (untrained) generator: plans, determinism in (seed, chunk), the filter, the
teacher hook. No files: the engine knows none."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.config import ModelConfig
from synthaug.engine import (GenerationPlan, SampleFilter, balance_plan, chunk_rows_for, chunk_seed,
                             class_balanced_plan, generate, iter_generated)
from synthaug.errors import SynthaugError
from synthaug.models import build_models

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def gen():
    """An untrained conv generator for three classes at 8 px, as the engine sees any generator."""
    g, _ = build_models(ModelConfig("conv", 8, 1, 3, latent_dim=16, width=8))
    g.class_names, g.source_path = NAMES, None
    return g.eval()


def test_plans_say_how_many_images_of_each_class():
    plan = class_balanced_plan(NAMES, 5, seed=0, image_shape=(1, 8, 8), classes=["c", "a"])
    assert plan.counts() == {0: 5, 2: 5} and plan.chunk_rows == chunk_rows_for((1, 8, 8)) == 16384
    top = balance_plan(NAMES, {"a": 10, "b": 4, "c": 1}, seed=0, image_shape=(1, 8, 8))
    assert top.counts() == {1: 6, 2: 9}
    with pytest.raises(SynthaugError, match="unknown class"):
        class_balanced_plan(NAMES, 5, 0, (1, 8, 8), classes=["z"])
    with pytest.raises(SynthaugError, match="nothing to top up"):
        balance_plan(NAMES, {"a": 3, "b": 3, "c": 3}, 0, (1, 8, 8))
    assert chunk_seed(1, 0) != chunk_seed(1, 1) != chunk_seed(2, 1) and chunk_seed(1, 1) == chunk_seed(1, 1)


def test_output_depends_on_seed_and_chunk_only(gen):
    plan = GenerationPlan(np.repeat(np.arange(3), 100), seed=4, chunk_rows=64)
    small = np.concatenate([b.images for b in iter_generated(gen, plan, batch_size=16)])
    large = np.concatenate([b.images for b in iter_generated(gen, plan, batch_size=256)])
    assert small.dtype == np.uint8 and small.shape == (300, 1, 8, 8)
    assert np.array_equal(small, large)
    later = next(iter_generated(gen, plan, chunks=[2]))  # chunk 2 alone equals chunk 2 of the whole run
    assert later.first == 2 and np.array_equal(later.images, small[128:192])
    other = np.concatenate([b.images for b in iter_generated(gen, GenerationPlan(plan.labels, 5, 64))])
    assert not np.array_equal(small, other)
    standard = GenerationPlan(plan.labels, 4, chunk_rows_for(gen.image_shape))  # `generate`'s own chunking
    expected = np.concatenate([b.images for b in iter_generated(gen, standard)])
    assert np.array_equal(generate(gen, plan.labels, seed=4, batch_size=64).numpy(), expected)


def test_the_filter_redraws_until_the_teacher_agrees_and_gives_up_on_the_hopeless(gen):
    plan = GenerationPlan(np.repeat(np.arange(3), 20), seed=0, chunk_rows=64)

    def likes_bright_images(images: torch.Tensor) -> torch.Tensor:
        """Every class's 'probability' is the image's mean brightness: a real, checkable rule."""
        p = images.float().mean(dim=(1, 2, 3)) / 255.0
        return p[:, None].expand(-1, 3).contiguous()

    threshold = float(likes_bright_images(torch.from_numpy(
        np.concatenate([b.images for b in iter_generated(gen, plan)]))).median())
    keep = SampleFilter(likes_bright_images, threshold)
    kept = np.concatenate([b.images for b in iter_generated(gen, plan, sample_filter=keep)])
    assert (likes_bright_images(torch.from_numpy(kept))[:, 0] >= threshold).all()
    assert sum(keep.drawn.values()) > 60 and sum(keep.accepted.values()) == 60
    again = SampleFilter(likes_bright_images, threshold)
    assert np.array_equal(kept, np.concatenate([b.images for b in iter_generated(gen, plan, sample_filter=again)]))
    never = SampleFilter(lambda images: torch.full((len(images), 3), 0.1), 0.5, max_rounds=3)
    with pytest.raises(SynthaugError, match="lower --min-confidence"):
        list(iter_generated(gen, plan, sample_filter=never))
    assert never.drawn[0] == 3 * 20 and never.accepted[0] == 0


def test_the_teacher_hook_labels_the_final_images(gen):
    plan = GenerationPlan(np.repeat(np.arange(3), 10), seed=1, chunk_rows=64)
    seen = []

    def teacher(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return torch.softmax(images.float().flatten(1)[:, :3], dim=1)

    block = next(iter_generated(gen, plan, teacher=teacher))
    assert block.soft.dtype == np.float32 and block.soft.shape == (30, 3)
    assert np.array_equal(seen[0].numpy(), block.images)
    np.testing.assert_allclose(block.soft.sum(1), 1.0, rtol=1e-5)


def test_the_filters_teacher_labels_the_kept_images_without_a_second_pass(gen):
    plan = GenerationPlan(np.repeat(np.arange(3), 20), seed=2, chunk_rows=16)
    judged = []

    def teacher(images: torch.Tensor) -> torch.Tensor:
        judged.append(len(images))
        return torch.softmax(images.float().flatten(1)[:, :3] / 50.0, dim=1)

    unfiltered = torch.from_numpy(np.concatenate([b.images for b in iter_generated(gen, plan)]))
    threshold = float(teacher(unfiltered)[np.arange(60), plan.labels].median())  # about half the draws fail
    judged.clear()
    keep = SampleFilter(teacher, threshold)
    blocks = list(iter_generated(gen, plan, sample_filter=keep, teacher=teacher))
    images = np.concatenate([b.images for b in blocks])
    soft = np.concatenate([b.soft for b in blocks])
    assert sum(judged) == sum(keep.drawn.values()) > 60  # every draw judged once, no pass over the kept ones
    np.testing.assert_allclose(soft, teacher(torch.from_numpy(images)).numpy(), rtol=1e-6)  # of the final images
    assert (soft[np.arange(60), plan.labels] >= threshold).all()
    other = SampleFilter(teacher, threshold)  # another teacher object for the soft labels: a pass of its own
    judged.clear()
    list(iter_generated(gen, plan, sample_filter=other, teacher=lambda x: teacher(x)))
    assert sum(judged) == sum(other.drawn.values()) + 60
