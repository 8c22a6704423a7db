"""Property-based tests (hypothesis): generated folders and generated bad HDF5 files never crash the readers.

Whatever the input, the folder loader either returns exactly the decodable images (and names what it skipped)
or stops with a DataError; the HDF5 reader either accepts a file that meets the contract or names what is wrong.
"""
from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from synthaug.data.folder import load_image_folder
from synthaug.data.h5format import FORMAT_VERSION, PROGRESS_ATTR, validate_export
from synthaug.errors import DataError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A file is a valid image of some mode and size, or one of the ways files go bad.
valid_image = st.tuples(st.just("image"), st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA"]),
                        st.integers(4, 40), st.integers(4, 40), st.sampled_from(["PNG", "JPEG", "BMP", "TIFF"]))
bad_file = st.tuples(st.sampled_from(["empty", "garbage", "truncated", "text-as-png"]), st.none(), st.none(),
                     st.none(), st.none())
class_files = st.lists(st.one_of(valid_image, bad_file), min_size=1, max_size=4)
folder = st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=8), class_files,
                         min_size=1, max_size=4)


def _encode(mode: str, w: int, h: int, fmt: str, seed: int) -> bytes:
    """Bytes of a real image file written by Pillow (formats that cannot hold a mode get it converted)."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        img = img.point(lambda v: v * 200).convert("I;16")
    if fmt == "JPEG" and mode not in ("L", "RGB", "CMYK"):
        img = img.convert("RGB")
    if fmt == "BMP" and mode not in ("L", "RGB", "P", "1"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _write_tree(root: Path, spec: dict) -> tuple[int, int, set[str]]:
    """Write the generated folder; return (decodable files, bad files, classes with a decodable file)."""
    good = bad = 0
    good_classes = set()
    for c, files in spec.items():
        (root / c).mkdir(parents=True)
        for i, (kind, mode, w, h, fmt) in enumerate(files):
            if kind == "image":
                fmt = "JPEG" if (mode == "CMYK" and fmt in ("PNG", "BMP")) else fmt  # PNG/BMP cannot hold CMYK
                ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif"}[fmt]
                (root / c / f"{i}.{ext}").write_bytes(_encode(mode, w, h, fmt, i))
                good += 1
                good_classes.add(c)
                continue
            data = {"empty": b"", "garbage": bytes(range(256)) * 3, "text-as-png": b"hello, not an image",
                    "truncated": _encode("RGB", 20, 20, "PNG", i)[:60]}[kind]
            (root / c / f"{i}.png").write_bytes(data)
            bad += 1
    return good, bad, good_classes


@SETTINGS
@given(spec=folder)
def test_folder_loader_returns_the_decodable_images_or_a_data_error(spec):
    with tempfile.TemporaryDirectory() as tmp:  # a fresh path each time, so the decode cache never answers
        root = Path(tmp) / "data"
        good, bad, good_classes = _write_tree(root, spec)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                data = load_image_folder(root, progress=False, workers=1)
        except DataError as exc:
            msg = str(exc)
            assert "\n" not in msg and str(root) in msg
            assert len(spec) < 2 or good == 0 or len(good_classes) < len(spec), msg
            return
        assert len(spec) >= 2 and len(good_classes) == len(spec)
        assert len(data) == good and len(data.skipped) == bad
        assert data.images.dtype.is_floating_point is False and data.images.shape[1] in (1, 3)
        assert data.images.shape[2] == data.images.shape[3] and data.images.shape[2] % 4 == 0
        if bad:
            assert any("skipped" in str(w.message) for w in caught)


def _valid_export(path: Path, n: int, k: int) -> None:
    """A small export that meets the HDF5 contract."""
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((n, 1, 8, 8), np.uint8))
        f.create_dataset("labels", data=(np.arange(n) % k).astype(np.int64))
        f.attrs["class_names"] = [f"c{i}" for i in range(k)]
        f.attrs["synthaug_format_version"] = FORMAT_VERSION
        f.attrs["provenance"] = json.dumps({"seed": 0})


MUTATIONS = ["none", "drop-images", "drop-labels", "labels-float", "label-too-big", "label-negative",
             "images-float", "images-3d", "no-class-names", "future-version", "no-version", "bad-provenance",
             "incomplete", "truncate", "zero-bytes"]


@SETTINGS
@given(n=st.integers(1, 40), k=st.integers(2, 6), mutation=st.sampled_from(MUTATIONS), cut=st.floats(0.01, 0.95))
def test_hdf5_reader_accepts_the_contract_and_names_every_violation(n, k, mutation, cut):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5"
        _valid_export(path, n, k)
        if mutation in ("truncate", "zero-bytes"):
            data = path.read_bytes()
            path.write_bytes(b"" if mutation == "zero-bytes" else data[:int(len(data) * cut)])
        elif mutation != "none":
            with h5py.File(path, "r+") as f:
                if mutation == "drop-images":
                    del f["images"]
                elif mutation == "drop-labels":
                    del f["labels"]
                elif mutation == "labels-float":
                    del f["labels"]
                    f.create_dataset("labels", data=np.zeros(n, np.float32))
                elif mutation in ("label-too-big", "label-negative"):
                    f["labels"][0] = k if mutation == "label-too-big" else -1
                elif mutation == "images-float":
                    del f["images"]
                    f.create_dataset("images", data=np.zeros((n, 1, 8, 8), np.float32))
                elif mutation == "images-3d":
                    del f["images"]
                    f.create_dataset("images", data=np.zeros((n, 8, 8), np.uint8))
                elif mutation == "no-class-names":
                    del f.attrs["class_names"]
                elif mutation == "future-version":
                    f.attrs["synthaug_format_version"] = FORMAT_VERSION + 1
                elif mutation == "no-version":
                    del f.attrs["synthaug_format_version"]
                elif mutation == "bad-provenance":
                    f.attrs["provenance"] = "{not json"
                elif mutation == "incomplete":
                    f.attrs[PROGRESS_ATTR] = 0
        if mutation == "none":
            info = validate_export(path)
            assert info.num_images == n and len(info.class_names) == k
            return
        with pytest.raises(DataError) as exc:
            validate_export(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
