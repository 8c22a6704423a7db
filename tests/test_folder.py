"""Folder scanning, split detection, decoding and the decode-once cache, on real image files."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from synthaug.data.folder import cache_dir, load_image_folder, resolve_split, scan_folder, supported_resolution
from synthaug.errors import DataError


def _img(path, size=(16, 16), mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_scan_nested_mixed_and_ignored_files(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    _img(tmp_path / "cat" / "deep" / "nested" / "b.jpg", size=(32, 20), mode="RGB")
    _img(tmp_path / "dog" / "c.bmp", size=(16, 16), mode="RGB")
    _img(tmp_path / "dog" / ".hidden.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / ".git").mkdir()
    index = scan_folder(tmp_path)
    assert index.class_names == ("cat", "dog")
    assert sorted(index.paths) == sorted(["cat/a.png", "cat/deep/nested/b.jpg", "dog/c.bmp"])
    data = load_image_folder(tmp_path, progress=False)
    assert data.images.shape == (3, 3, 16, 16)  # any colour image makes the set RGB; most common size 16
    assert data.images.dtype.is_floating_point is False
    assert data.labels.tolist() == [0, 0, 1]
    assert data.class_to_idx == {"cat": 0, "dog": 1}


def test_grayscale_folder_stays_single_channel_and_resizes(tmp_path):
    for i in range(3):
        _img(tmp_path / "a" / f"{i}.png", size=(30, 30), value=10 * i)
        _img(tmp_path / "b" / f"{i}.png", size=(30, 30), value=200)
    data = load_image_folder(tmp_path, progress=False)
    assert data.images.shape == (6, 1, 28, 28)  # 30 rounds to 28, a multiple of 4
    assert int(data.images[3].float().mean()) == 200
    big = load_image_folder(tmp_path, resolution=16, progress=False)
    assert big.images.shape == (6, 1, 16, 16)


def test_split_folder_reads_train(tmp_path):
    _img(tmp_path / "train" / "a" / "0.png")
    _img(tmp_path / "train" / "b" / "0.png")
    _img(tmp_path / "test" / "a" / "0.png")
    assert resolve_split(tmp_path) == tmp_path / "train"
    assert scan_folder(tmp_path).root == tmp_path / "train"


def test_cache_is_reused_until_the_folder_changes(tmp_path):
    for c in "ab":
        for i in range(2):
            _img(tmp_path / c / f"{i}.png", value=50 + i)
    load_image_folder(tmp_path, progress=False)
    caches = sorted(cache_dir().glob("*.h5"))
    assert len(caches) == 1
    before = caches[0].stat().st_mtime_ns
    again = load_image_folder(tmp_path, progress=False)
    assert sorted(cache_dir().glob("*.h5")) == caches and caches[0].stat().st_mtime_ns == before
    _img(tmp_path / "a" / "0.png", value=250)
    os.utime(tmp_path / "a" / "0.png", ns=(1, 1))
    changed = load_image_folder(tmp_path, progress=False)
    assert len(list(cache_dir().glob("*.h5"))) == 2
    assert int(changed.images[0].float().mean()) == 250 and int(again.images[0].float().mean()) == 50


def test_corrupt_and_fake_images_are_skipped_with_a_count(tmp_path):
    for c in "ab":
        _img(tmp_path / c / "good.png")
    good = (tmp_path / "a" / "good.png").read_bytes()
    (tmp_path / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "b" / "fake.jpg").write_text("this is text, not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path, progress=False)
    assert len(data) == 2
    assert sorted(data.skipped) == ["a/truncated.png", "b/fake.jpg"]
    assert any("skipped 2 unreadable" in str(w.message) for w in caught)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no class folders"),
    (lambda p: ((p / "a").mkdir(), _img(p / "b" / "0.png")), "holds no images"),
    (lambda p: _img(p / "only" / "0.png"), "only one class"),
])
def test_bad_folders_fail_with_one_line_naming_the_path(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        load_image_folder(tmp_path, progress=False)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_and_all_unreadable(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_image_folder(tmp_path / "nope")
    for c in "ab":
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could be decoded"):
        load_image_folder(tmp_path, progress=False)


def test_supported_resolution():
    assert [supported_resolution(s) for s in (8, 28, 30, 31, 64, 5)] == [8, 28, 28, 32, 64, 8]


def test_digits_decode_exactly(digits_dir):
    from sklearn.datasets import load_digits

    data = load_image_folder(digits_dir, progress=False)
    assert data.images.shape == (1797, 1, 8, 8)
    assert np.bincount(data.labels.numpy()).tolist() == np.bincount(load_digits().target).tolist()
