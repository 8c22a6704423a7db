"""Hostile files, careless flags and concurrent writers: one line, nothing written outside the output, nothing
corrupt at the output, damaged caches rebuilt. Real files and real processes throughout."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import synthaug
from synthaug import ExportConfig
from synthaug.data.h5format import validate_export
from synthaug.errors import CheckpointError, DataError
from synthaug.runs import load_safe


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed command as a user runs it."""
    return subprocess.run([sys.executable, "-m", "synthaug_cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, cwd=cwd)


def one_line(p: subprocess.CompletedProcess) -> str:
    """The single line a failed command printed (asserting there is exactly one and no traceback)."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "..", "", "a\nb", "x" * 300])
def test_class_names_from_a_generator_file_are_data_never_paths(tiny_run, tmp_path, name):
    obj = load_safe(tiny_run / "generator.pt")
    obj["class_names"][3] = name
    torch.save(obj, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="class name"):
        synthaug.load_generator(tmp_path / "g.pt")
    p = cli("export", "--source", str(tmp_path / "g.pt"), "--per-class", "2", "--out", str(tmp_path / "out" / "x"),
            "--format", "folder", "--quiet")
    assert "class name" in one_line(p)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out" / "x").exists()


def test_repeated_class_names_are_refused(tiny_run, tmp_path):
    obj = load_safe(tiny_run / "generator.pt")
    obj["class_names"][1] = obj["class_names"][0]
    torch.save(obj, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="appears twice"):
        synthaug.load_generator(tmp_path / "g.pt")


def _export_file(tiny_run, tmp_path) -> Path:
    return synthaug.export(tiny_run, tmp_path / "good.h5", ExportConfig(per_class=2), progress=False)


def test_an_export_must_hold_its_own_data(tiny_run, tmp_path):
    good = _export_file(tiny_run, tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 8)
    external = tmp_path / "external.h5"
    with h5py.File(good) as src, h5py.File(external, "w") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        f.create_dataset("images", shape=(20, 1, 8, 8), dtype=np.uint8, external=[(str(secret), 0, 1280)])
        f.create_dataset("labels", data=src["labels"][()])
    with pytest.raises(DataError, match="'images' is external storage"):
        validate_export(external)
    linked = tmp_path / "linked.h5"
    with h5py.File(good) as src, h5py.File(linked, "w") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        f["images"] = h5py.ExternalLink(str(good), "images")
        f.create_dataset("labels", data=src["labels"][()])
    with pytest.raises(DataError, match="'images' is a ExternalLink to elsewhere"):
        validate_export(linked)
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(20, 1, 8, 8), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(good), "images", shape=(20, 1, 8, 8))
    with h5py.File(good) as src, h5py.File(virtual, "w") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        f.create_virtual_dataset("images", layout)
        f.create_dataset("labels", data=src["labels"][()])
    with pytest.raises(DataError, match="'images' is a virtual dataset"):
        validate_export(virtual)


def test_declared_sizes_are_checked_before_anything_is_allocated(tiny_run, tmp_path):
    good = _export_file(tiny_run, tmp_path)
    huge = tmp_path / "huge.h5"
    n = 10 ** 13  # declared, never written: HDF5 allocates chunks lazily
    with h5py.File(good) as src, h5py.File(huge, "w") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        f.create_dataset("images", shape=(n, 1, 8, 8), dtype=np.uint8, chunks=(1024, 1, 8, 8))
        f.create_dataset("labels", shape=(n,), dtype=np.int64, chunks=(1024,))
    with pytest.raises(DataError, match="declares 10,000,000,000,000 images"):
        validate_export(huge)
    p = cli("export", "--source", str(tiny_run), "--per-class", "10000000000", "--out", str(tmp_path / "big.h5"))
    assert "GiB are free there" in one_line(p) and not list(tmp_path.glob("*big*"))


def test_a_damaged_decode_cache_is_rebuilt_with_a_warning(digits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHAUG_CACHE_DIR", str(tmp_path / "cache"))
    first = synthaug.load_image_folder(digits_dir, progress=False)
    (entry,) = (tmp_path / "cache").glob("*.h5")
    for damage in (b"garbage" * 100, None):
        if damage is None:  # a valid HDF5 file of the wrong shape: it must not train at the wrong resolution
            with h5py.File(entry, "w") as f:
                f.create_dataset("images", data=np.zeros((len(first), 1, 4, 4), np.uint8))
                f.create_dataset("labels", data=first.labels.numpy())
                f.attrs["skipped"] = "[]"
        else:
            entry.write_bytes(damage)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = synthaug.load_image_folder(digits_dir, progress=False)
        assert any("damaged decode cache entry" in str(w.message) for w in caught)
        assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def test_a_damaged_classifier_cache_is_trained_again(digits_dir, tmp_path, monkeypatch):
    from synthaug.sampler import teacher_on

    monkeypatch.setenv("SYNTHAUG_CACHE_DIR", str(tmp_path / "cache"))
    real = synthaug.load_image_folder(digits_dir, progress=False)
    first = teacher_on(real, steps=5)
    (entry,) = (tmp_path / "cache").glob("features-*.pt")
    entry.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(UserWarning, match="damaged classifier cache entry"):
        again = teacher_on(real, steps=5)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_a_folder_smaller_than_the_batch_trains(tmp_path):
    from conftest import write_digits

    small = write_digits(tmp_path / "small", per_class=6, classes=6)  # 36 images, a default batch of 64
    with pytest.warns(UserWarning, match="36 images, fewer than a batch of 64; training with batch 36"):
        run = synthaug.fit(small, tmp_path / "run", arch="conv", epochs=3, progress=False)
    assert load_safe(run / "generator.pt")["step"] == 3  # one step an epoch


def test_overwrite_replaces_only_exports(tiny_run, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    p = cli("export", "--source", str(tiny_run), "--per-class", "2", "--out", str(mine), "--overwrite")
    assert "is not a synthaug folder export" in one_line(p) and (mine / "thesis.tex").is_file()
    p = cli("export", "--source", str(tiny_run), "--per-class", "2", "--out", ".", "--format", "folder",
            "--overwrite", cwd=tmp_path)
    assert "is the current folder or holds it" in one_line(p)
    done = synthaug.export(tiny_run, tmp_path / "ok", ExportConfig(per_class=2), progress=False)
    again = synthaug.export(tiny_run, done, ExportConfig(per_class=3, overwrite=True), progress=False)
    assert sum(1 for _ in again.rglob("*.png")) == 30


@pytest.mark.slow
def test_two_writers_of_one_output_never_corrupt_it(tiny_run, tmp_path):
    """Two real processes export to the same --out at once: one writes it whole, the other says who holds it."""
    out = tmp_path / "same.h5"
    args = [sys.executable, "-m", "synthaug_cli", "export", "--source", str(tiny_run), "--per-class", "30000",
            "--out", str(out), "--quiet"]
    first = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not out.with_name(f".{out.name}.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert f"another synthaug process (pid {first.pid}) is writing it" in one_line(second)
    info = validate_export(out)
    assert info.num_images == 300000 and not out.with_name(f".{out.name}.lock").exists()


def test_fit_takes_the_output_lock(digits_dir, tmp_path):
    from synthaug.fsutil import output_lock

    run = tmp_path / "run"
    with output_lock(run):
        p = cli("fit", str(digits_dir), "--out", str(run), "--arch", "conv", "--max-steps", "1", "--quiet")
    assert f"another synthaug process (pid {os.getpid()}) is writing it" in one_line(p)
    assert not run.exists()


def test_a_corrupted_compressed_chunk_is_one_line_naming_the_file(tiny_run, tmp_path):
    out = synthaug.export(tiny_run, tmp_path / "z.h5", ExportConfig(per_class=200, compression="gzip"),
                          progress=False)
    with h5py.File(out) as f:
        offset = f["images"].id.get_chunk_info(0).byte_offset
    data = bytearray(out.read_bytes())
    data[offset + 20:offset + 60] = b"\xff" * 40  # inside the first compressed chunk
    out.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{out}: damaged data"):
        synthaug.SyntheticDataset(out)
    with pytest.raises(DataError, match=f"{out}: damaged data"):
        synthaug.SyntheticDataset(out, memory_budget=None).raw_block(0, 10)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_class_name_is_refused_or_stays_inside(name):
    from synthaug.data.names import check_class_names, inside

    folder = Path("/tmp/synthaug-out")
    try:
        (checked,) = check_class_names([name], "f")
    except DataError:
        return
    assert inside(folder, checked).resolve().parent == folder.resolve()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 50), c=st.sampled_from([1, 2, 3, 4]), side=st.integers(1, 9),
       # lone surrogates have no UTF-8 form: no file can hold them, so the crafted file could not be written
       names=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
                      max_size=5),
       label_hi=st.integers(-3, 8),
       version=st.integers(0, 4), soft=st.booleans())
def test_any_crafted_export_validates_or_fails_in_one_line(tmp_path_factory, n, c, side, names, label_hi, version,
                                                           soft):
    """Random headers, shapes, labels and versions: validation returns or raises DataError, nothing else."""
    path = tmp_path_factory.mktemp("crafted") / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs["synthaug_format_version"] = version
        f.attrs["class_names"] = np.array(names, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("images", data=np.zeros((n, c, side, side), np.uint8))
        f.create_dataset("labels", data=np.linspace(-1, label_hi, n).astype(np.int64))
        if soft:
            f.create_dataset("soft_labels", data=np.full((n, max(len(names), 1)), 0.5, np.float32))
    try:
        info = validate_export(path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    else:
        assert info.num_images == n and len(info.class_names) == len(names)


def test_fit_help_says_the_recipe_decides_its_defaults():
    p = subprocess.run([sys.executable, "-m", "synthaug_cli", "fit", "--help"], capture_output=True, text=True,
                       timeout=120)
    text = " ".join(p.stdout.split())
    assert "[default: the default recipe's budget, or 20 with --arch]" in text
    assert "the default recipe decides: on for uneven folders" in text and "[default: no]" not in text
