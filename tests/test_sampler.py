"""The one Sampler: export, GeneratedDataset and the benchmark's fresh pools draw the same images through it,
and it alone decides when a teacher is needed."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import synthaug
from synthaug import ExportConfig, SamplingConfig
from synthaug.conditions import GeneratorPoolSource
from synthaug.errors import SynthaugError
from synthaug.sampler import Sampler, needs_teacher, resolve_sampling, teacher_on


def _images(blocks) -> np.ndarray:
    return np.concatenate([b.images for b in blocks])


def test_export_dataset_and_fresh_pool_draw_the_same_images(tiny_run, digits_dir, tmp_path):
    sampler = Sampler(tiny_run)
    plan = sampler.per_class_plan(12, seed=3)
    direct = _images(sampler.blocks(plan))
    exported = synthaug.SyntheticDataset(synthaug.export(tiny_run, tmp_path / "e.h5", ExportConfig(per_class=12, seed=3),
                                                         progress=False))
    assert np.array_equal(exported.raw_block(0, len(exported)).numpy(), direct)
    live = synthaug.GeneratedDataset(tiny_run, per_class=12, seed=3)
    assert np.array_equal(torch.stack([live[i][0] for i in range(len(live))]).mul(255).round().byte().numpy(), direct)
    real = synthaug.load_image_folder(digits_dir, progress=False)
    pool = GeneratorPoolSource(sampler, real.class_names).pool(120, None, 3, False)
    pool.draw(1, torch.Generator().manual_seed(0))  # generates epoch 0
    assert np.array_equal(pool.images.numpy(), direct)
    assert not np.array_equal(_images(sampler.blocks(sampler.epoch(plan, 1))), direct)  # epoch 1 is new


def test_one_place_decides_the_teacher(tiny_run, digits_dir):
    assert not needs_teacher(SamplingConfig(), soft=False)
    assert needs_teacher(SamplingConfig(), soft=True) and needs_teacher(SamplingConfig(min_confidence=0.5), False)
    plain = Sampler(tiny_run)
    assert plain.teacher is None and plain.new_filter() is None and plain.teacher_sha256 is None
    given = teacher_on(synthaug.load_image_folder(digits_dir, progress=False), steps=5)
    soft = Sampler(tiny_run, SamplingConfig(soft_labels=True), teacher=given)
    assert soft.teacher is given and soft.real is None  # a given teacher is used, none is trained
    block = next(soft.blocks(soft.per_class_plan(2, 0)))
    assert block.soft.shape == (20, 10) and np.allclose(block.soft.sum(1), 1.0, atol=1e-5)
    trained = Sampler(tiny_run, SamplingConfig(soft_labels=True, teacher_steps=5))
    assert trained.real == synthaug.runs.training_folder(tiny_run) and trained.teacher_sha256 == soft.teacher_sha256


def test_a_sampler_pickles_without_its_generators(tiny_run):
    sampler = Sampler(tiny_run)
    plan = sampler.per_class_plan(3, seed=1)
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy._generators is None and copy.sampling == sampler.sampling
    assert np.array_equal(_images(copy.blocks(plan)), _images(sampler.blocks(plan)))  # reloaded on demand


def test_sampling_settings_resolve_from_the_call_then_the_run_then_the_defaults(tiny_run):
    assert resolve_sampling(tiny_run, None) == SamplingConfig()
    assert resolve_sampling(tiny_run, None, {"latent_scale": 1.5, "truncation": None}).latent_scale == 1.5
    with pytest.raises(SynthaugError, match="no such generator snapshot"):
        Sampler(tiny_run, SamplingConfig(snapshots=("epoch_9999.pt",)))


def test_hard_and_soft_conditions_share_a_sampler_but_not_their_labels(tiny_run, digits_dir):
    """One sampler opened for soft labels serves hard-label conditions too: their pools carry no soft labels."""
    real = synthaug.load_image_folder(digits_dir, progress=False)
    sampler = Sampler(tiny_run, SamplingConfig(), soft=True, teacher=teacher_on(real, steps=5))
    source = GeneratorPoolSource(sampler, real.class_names)
    gen = torch.Generator().manual_seed(0)
    assert source.pool(100, None, 0, soft=False).draw(8, gen)[2] is None
    assert source.pool(100, None, 0, soft=True).draw(8, gen)[2].shape == (8, 10)
    with pytest.raises(SynthaugError, match="soft labels need a teacher"):
        next(Sampler(tiny_run).blocks(sampler.per_class_plan(1, 0), soft=True))
