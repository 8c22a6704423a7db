"""Every architecture builds, trains, exports and reads back at 64 and 128 px, a few CPU steps each; and the default
recipe at those sides does too."""
from __future__ import annotations

import pytest

import synthaug
from synthaug import ExportConfig
from synthaug.models import list_archs


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    from conftest import write_rgb_digits

    return write_rgb_digits(tmp_path_factory.mktemp("rgb") / "train", {0: 6, 1: 6, 2: 6}, side=128)


@pytest.mark.slow
@pytest.mark.parametrize("side", [64, 128])
@pytest.mark.parametrize("arch", list_archs())
def test_every_architecture_trains_and_exports_at_large_sides(arch, side, rgb_folder, tmp_path):
    run = synthaug.fit(rgb_folder, tmp_path / "run", arch=arch, resolution=side, max_steps=2, batch_size=6,
                       progress=False)
    out = synthaug.export(run, tmp_path / "s.h5", ExportConfig(per_class=2), progress=False)
    ds = synthaug.SyntheticDataset(out)
    assert ds.info.image_shape == (3, side, side) and len(ds) == 6 and ds[5][0].shape == (3, side, side)
    assert sorted(set(ds.targets)) == [0, 1, 2]
    assert synthaug.runs.load_safe(run / "generator.pt")["step"] == 2  # two steps trained, then saved


@pytest.mark.slow
@pytest.mark.parametrize("side", [64, 128])
def test_the_default_recipe_fits_64_and_128_px(side, rgb_folder, tmp_path):
    run = synthaug.fit(rgb_folder, tmp_path / "run", resolution=side, max_steps=2, progress=False)
    cfg = synthaug.runs.read_run_config(run)
    assert (cfg.model.arch, cfg.model.resolution, cfg.model.width) == ("sngan", side, 32)  # on a CPU
    assert cfg.train.augment == "translation,cutout,color" and cfg.train.loss == "hinge"
    ds = synthaug.SyntheticDataset(synthaug.export(run, tmp_path / "s.h5", ExportConfig(per_class=3), progress=False))
    assert ds.info.image_shape == (3, side, side) and len(ds) == 9
