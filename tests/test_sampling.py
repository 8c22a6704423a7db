"""Sampling levers end to end on real files: latent scale, soft labels (format v2), fresh epochs, mix recipes, tune."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

import synthaug
from synthaug import ExportConfig, SamplingConfig
from synthaug.conditions import Condition, GeneratorPoolSource, parse_mix_recipe, phases_for
from synthaug.data.dataset import SyntheticDataset
from synthaug.fresh import GeneratedDataset
from synthaug.sampler import Sampler, epoch_seed
from synthaug.data.h5format import SOFT_LABELS, validate_export
from synthaug.errors import DataError, SynthaugError
from synthaug.engine import GenerationPlan, chunk_rows_for, draw_latent
from synthaug_cli.main import cli


def test_latent_scale_multiplies_the_prior_and_is_recorded(tiny_run, tmp_path):
    gen = synthaug.load_generator(tiny_run)
    plan = GenerationPlan(np.zeros(8, dtype=np.int64), 0, chunk_rows_for(gen.image_shape))
    wide = GenerationPlan(plan.labels, 0, plan.chunk_rows, latent_scale=1.5)
    z1 = draw_latent(gen, plan, 8, torch.Generator().manual_seed(3))
    z15 = draw_latent(gen, wide, 8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z15, 1.5 * z1)
    a = synthaug.export(tiny_run, tmp_path / "a.h5", ExportConfig(per_class=5, sampling=SamplingConfig()),
                        progress=False)
    b = synthaug.export(tiny_run, tmp_path / "b.h5",
                        ExportConfig(per_class=5, sampling=SamplingConfig(latent_scale=1.5)), progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert not np.array_equal(fa["images"][()], fb["images"][()])
        assert np.array_equal(fa["labels"][()], fb["labels"][()])
    assert validate_export(b).provenance["latent_scale"] == 1.5
    assert validate_export(b).provenance["sampling"]["latent_scale"] == 1.5


@pytest.mark.parametrize("bad", [0.0, -1.0, 11.0])
def test_latent_scale_out_of_range_is_one_line(tiny_run, tmp_path, bad):
    with pytest.raises(SynthaugError, match="latent scale must lie in"):
        SamplingConfig(latent_scale=bad)
    result = CliRunner().invoke(cli, ["export", "--run", str(tiny_run), "--per-class", "2", "--out",
                                      str(tmp_path / "x.h5"), "--latent-scale", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: latent scale must lie in (0, 10] (got {bad})"]


@pytest.fixture(scope="module")
def soft_export(tiny_run, tmp_path_factory):
    """An export of the tiny run with the teacher's soft labels."""
    cfg = ExportConfig(per_class=12, seed=2, sampling=SamplingConfig(soft_labels=True, teacher_steps=5))
    return synthaug.export(tiny_run, tmp_path_factory.mktemp("soft") / "soft.h5", cfg, progress=False)


def test_soft_label_export_is_format_version_2_and_validates(soft_export):
    info = validate_export(soft_export)
    assert info.version == 2 and info.has_soft_labels
    with h5py.File(soft_export) as f:
        soft = f[SOFT_LABELS][()]
        assert soft.shape == (120, 10) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-5)
    prov = info.provenance
    assert prov["soft_labels"] is True and len(prov["teacher_sha256"]) == 64 and prov["teacher_steps"] == 5


def test_soft_labels_match_the_hard_export_pixel_for_pixel(tiny_run, soft_export, tmp_path):
    hard = synthaug.export(tiny_run, tmp_path / "hard.h5", ExportConfig(per_class=12, seed=2), progress=False)
    assert validate_export(hard).version == 1  # no soft labels: the version every reader takes
    with h5py.File(hard) as fh, h5py.File(soft_export) as fs:
        assert np.array_equal(fh["images"][()], fs["images"][()])


def test_dataset_serves_soft_targets_and_version_1_still_reads(tiny_run, soft_export, tmp_path):
    ds = SyntheticDataset(soft_export, target="soft")
    image, target = ds[7]
    with h5py.File(soft_export) as f:
        torch.testing.assert_close(target, torch.from_numpy(f[SOFT_LABELS][7]))
    batch = next(iter(DataLoader(ds, batch_size=16, num_workers=2)))
    assert batch[1].shape == (16, 10)
    torch.testing.assert_close(batch[1][7], target)
    v1 = synthaug.export(tiny_run, tmp_path / "v1.h5", ExportConfig(per_class=3), progress=False)
    assert SyntheticDataset(v1)[0][1] == 0
    with pytest.raises(DataError, match="has no soft labels"):
        SyntheticDataset(v1, target="soft")
    with pytest.raises(SynthaugError, match="unknown target"):
        SyntheticDataset(v1, target="fuzzy")


def test_broken_soft_labels_are_rejected(soft_export, tmp_path):
    bad = tmp_path / "bad.h5"
    shutil.copyfile(soft_export, bad)
    with h5py.File(bad, "r+") as f:
        f[SOFT_LABELS][3] = f[SOFT_LABELS][3] * 2
    with pytest.raises(DataError, match="row 3 sums to 2.0000, not 1"):
        validate_export(bad)
    old = tmp_path / "old.h5"
    shutil.copyfile(soft_export, old)
    with h5py.File(old, "r+") as f:
        f.attrs["synthaug_format_version"] = 1
    with pytest.raises(DataError, match="soft labels need version 2"):
        validate_export(old)


def test_soft_labels_need_hdf5(tiny_run, tmp_path):
    cfg = ExportConfig(per_class=2, sampling=SamplingConfig(soft_labels=True))
    with pytest.raises(SynthaugError, match="HDF5 exports only"):
        synthaug.export(tiny_run, tmp_path / "folder", cfg, progress=False)


def _bytes(ds, indices):
    return b"".join((ds[i][0] * 255).round().to(torch.uint8).numpy().tobytes() for i in indices)


def test_fresh_epochs_are_deterministic_new_and_the_same_in_workers(tiny_run, tmp_path):
    exported = synthaug.export(tiny_run, tmp_path / "e.h5", ExportConfig(per_class=20, seed=5), progress=False)
    a = GeneratedDataset(tiny_run, per_class=20, seed=5)
    b = GeneratedDataset(tiny_run, per_class=20, seed=5)
    idx = list(range(0, 200, 7))
    assert _bytes(a, idx) == _bytes(SyntheticDataset(exported), idx)  # epoch 0 is the export
    a.set_epoch(1)
    b.set_epoch(1)
    assert _bytes(a, idx) == _bytes(b, idx)  # the same seed and epoch: the same bytes
    assert _bytes(a, idx) != _bytes(SyntheticDataset(exported), idx)  # epoch 1 is new
    a.set_epoch(2)
    epoch2 = _bytes(a, idx)
    assert epoch2 != _bytes(b, idx)
    assert a.targets == b.targets  # labels stay put: the plan's class balance holds every epoch
    loader = DataLoader(b, batch_size=40, num_workers=2, persistent_workers=True)
    first = torch.cat([x for x, _ in loader])
    b.set_epoch(2)  # reaches the persistent workers through shared memory
    second = torch.cat([x for x, _ in loader])
    single = torch.cat([x for x, _ in DataLoader(a, batch_size=40, num_workers=0)])
    torch.testing.assert_close(second, single)
    assert not torch.equal(first, second)
    assert epoch_seed(5, 0) == 5 and epoch_seed(5, 1) != epoch_seed(5, 2)


@pytest.mark.parametrize("spec, message", [("blend", "unknown mix recipe"), ("weighted", "give the synthetic share"),
                                           ("weighted:1.5", "strictly between 0 and 1"),
                                           ("finetune:x", "is not a number"), ("concat:2", "takes no argument")])
def test_mix_recipe_errors(spec, message):
    with pytest.raises(DataError, match=message):
        parse_mix_recipe(spec)


def test_fresh_pool_never_repeats_within_the_budget(tiny_run, digits_dir):
    real = synthaug.load_image_folder(digits_dir, progress=False)
    syn = GeneratorPoolSource(Sampler(tiny_run, SamplingConfig()), real.class_names)
    phases = phases_for(Condition(syn, 0.1, mix="finetune:0.25"), real, seed=0, steps=8)
    assert [p.steps for p in phases] == [2, 6]
    pool = phases[0].pools[0]
    gen = torch.Generator().manual_seed(0)
    size = len(pool)
    images = torch.cat([pool.draw(10, gen)[0] for _ in range(size // 10)])
    flat = {bytes(img.numpy().tobytes()) for img in images}
    assert len(flat) == len(images)  # one epoch: every image once
    more = pool.draw(size, gen)[0]
    assert pool.epoch == 1 and pool.images_generated == 2 * size
    assert not flat & {bytes(img.numpy().tobytes()) for img in more}  # the next epoch is all new
    weighted = phases_for(Condition(syn, 1.0, mix="weighted:0.25"), real, seed=0, steps=3)[0]
    assert weighted.shares == [0.75, 0.25]
