"""Real RGB files: Debian's oxygen icons (RGBA PNGs at two sizes) through scanning, decoding, fit and export."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import synthaug
from synthaug import ExportConfig
from synthaug.data.h5format import validate_export
from synthaug.data.icons import icon_split, write_icons
from synthaug.recipes import recipe_for_folder

ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"


def test_the_slice_is_real_rgba_at_two_sizes():
    files = sorted(ICONS.rglob("*.png"))
    images = [Image.open(f) for f in files]
    sizes = {im.size for im in images}
    assert len(files) == 40 and sizes == {(32, 32), (48, 48)}
    # every one has alpha: RGBA, or a palette with a transparent entry
    assert all(im.mode == "RGBA" or (im.mode == "P" and "transparency" in im.info) for im in images)


def test_rgba_decodes_to_rgb_on_white_at_the_common_size():
    data = synthaug.load_image_folder(ICONS, progress=False)
    assert data.images.shape == (40, 3, 32, 32) and data.images.dtype.is_floating_point is False
    assert data.class_names == ("actions", "apps", "devices", "mimetypes", "status")
    # transparent corners of an icon become white, not black
    first = sorted((ICONS / "actions").glob("32x32-*.png"))[0]
    rgba = np.asarray(Image.open(first))
    if rgba[0, 0, 3] == 0:
        idx = sorted(p.name for p in (ICONS / "actions").iterdir() if p.suffix == ".png").index(first.name)
        assert data.images[idx, :, 0, 0].tolist() == [255, 255, 255]
    assert 0.05 < data.images.float().std().item() / 255 < 0.5  # colour content survived the composite


def test_icons_writer_keeps_every_size_of_an_icon_in_one_split(tmp_path):
    source = tmp_path / "theme"
    for path in ICONS.rglob("*.png"):  # back into the theme's layout: <size>/<context>/<name>.png
        size, name = path.stem.split("-", 1)
        dest = source / size / path.parent.name / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    counts = write_icons(tmp_path / "out", source, test_fraction=0.3, min_names=2, progress=False)
    assert sum(sum(c.values()) for c in counts.values()) == 40
    for split in ("train", "test"):
        for f in (tmp_path / "out" / split).rglob("*.png"):
            assert icon_split(f.stem.split("-", 1)[1], 0.3) == split
    assert icon_split("document-open", 0.3) == icon_split("document-open", 0.3)


def test_default_recipe_adapts_to_a_small_uneven_rgb_folder(tmp_path):
    import torch

    uneven = tmp_path / "uneven"
    shutil.copytree(ICONS, uneven)
    for extra in sorted((uneven / "status").iterdir())[2:]:
        extra.unlink()  # status keeps 2 images, the others 8: uneven classes
    recipe = recipe_for_folder(uneven, torch.device("cpu"))
    assert recipe.arch == "dcgan" and recipe.ema
    assert recipe.settings["augment"] == "translation,cutout"  # a small folder
    assert recipe.settings["class_balance"] is True  # 8 against 2 images
    assert recipe.resolution == 32 and recipe.settings["epochs"] == 2000  # the cap: 34 images
    assert any("class-balanced" in r for r in recipe.reasons)


@pytest.mark.slow
def test_fit_and_export_rgb_icons(tmp_path):
    run = synthaug.fit(ICONS, tmp_path / "run", arch="dcgan", epochs=2, batch_size=16, progress=False)
    out = synthaug.export(run, tmp_path / "icons.h5", ExportConfig(per_class=4), progress=False)
    info = validate_export(out)
    assert info.image_shape == (3, 32, 32) and info.num_images == 20
    assert list(info.class_names) == ["actions", "apps", "devices", "mimetypes", "status"]
