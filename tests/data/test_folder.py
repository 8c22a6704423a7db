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


def test_modes_are_converted_faithfully(tmp_path):
    """16-bit, palette with transparency, CMYK and EXIF-rotated files decode to the pixels a user expects."""
    from PIL import Image as PILImage

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sixteen = PILImage.fromarray(np.full((8, 8), 32896, dtype=np.uint16))  # 32896 / 257 = 128
    sixteen.save(tmp_path / "a" / "sixteen.png")
    pal = PILImage.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "a" / "transparent.png", transparency=0)  # fully transparent -> white background
    PILImage.new("CMYK", (8, 8), (0, 0, 0, 255)).save(tmp_path / "b" / "cmyk.jpg")  # full black ink
    tall = PILImage.new("L", (8, 16), 0)
    tall.paste(255, (0, 0, 8, 8))  # top half white
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the displayed image is 16 wide, 8 tall
    tall.save(tmp_path / "b" / "rotated.jpg", exif=exif, quality=100)
    data = load_image_folder(tmp_path, resolution=8, channels=1, progress=False)
    by_name = dict(zip(sorted(["a/sixteen.png", "a/transparent.png", "b/cmyk.jpg", "b/rotated.jpg"]),
                       data.images[:, 0]))
    assert int(by_name["a/sixteen.png"].float().mean().round()) == 128
    assert int(by_name["a/transparent.png"].float().mean()) == 255
    assert int(by_name["b/cmyk.jpg"].float().mean()) < 20
    rotated = by_name["b/rotated.jpg"].float()
    # after EXIF rotation the white half is on the right; centre-cropped to 8x8 the right half stays brighter
    assert rotated[:, 5:].mean() > rotated[:, :3].mean() + 100


def test_symlink_loops_hidden_files_odd_names_and_one_image_classes(tmp_path):
    _img(tmp_path / "a" / "one.png")  # a class with one image is fine
    _img(tmp_path / "b" / "x.png", value=10)
    os.symlink(tmp_path / "b", tmp_path / "b" / "loop")  # a symlink loop is walked once
    _img(tmp_path / "b" / ".hidden.png")
    odd = os.fsencode(str(tmp_path / "b")) + b"/caf\xe9-latin1.png"  # not valid UTF-8
    with open(odd, "wb") as f:
        f.write((tmp_path / "b" / "x.png").read_bytes())
    data = load_image_folder(tmp_path, progress=False)
    assert np.bincount(data.labels.numpy()).tolist() == [1, 2]
    assert len(scan_folder(tmp_path).paths) == 3


def test_many_files_scan_quickly_and_show_progress(tmp_path, capsys):
    """10,000 files in two classes: every one is found and the decode shows a progress bar."""
    png = tmp_path / "seed.png"
    _img(png, size=(8, 8))
    raw = png.read_bytes()
    for c in "ab":
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(5000):
            (tmp_path / "data" / c / f"{i:05d}.png").write_bytes(raw)
    index = scan_folder(tmp_path / "data")
    assert len(index.paths) == 10000
    data = load_image_folder(tmp_path / "data", progress=True)
    assert len(data) == 10000
    err = capsys.readouterr().err
    assert "scanning:" in err and "/10000" in err
