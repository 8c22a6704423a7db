"""Export: exact balanced counts, determinism across batch sizes, both formats, resume, atomic outputs."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torchvision

import synthaug
from synthaug import ExportConfig, SamplingConfig

from synthaug.data.h5format import validate_export
from synthaug.errors import DataError, SynthaugError

from synthaug import sampler as sampler_mod


def _arrays(path):
    with h5py.File(path, "r") as f:
        return f["images"][()], f["labels"][()], dict(f.attrs)


def test_hdf5_layout_counts_and_provenance(tiny_run, tmp_path):
    out = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=7, seed=1), progress=False)
    images, labels, attrs = _arrays(out)
    assert images.dtype == np.uint8 and images.shape == (70, 1, 8, 8)
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [7] * 10
    assert list(attrs["class_names"]) == [f"digit{i}" for i in range(10)]
    assert attrs["synthaug_format_version"] == 1
    info = validate_export(out)
    assert info.provenance["seed"] == 1 and len(info.provenance["checkpoint_sha256"]) == 64
    assert {"run", "synthaug_version", "created"} <= set(info.provenance)
    with h5py.File(out, "r") as f:
        assert f["images"].chunks[0] >= 64  # chunked along N


def test_same_seed_same_bytes_whatever_the_batch_size(tiny_run, tmp_path):
    a = synthaug.export(tiny_run, tmp_path / "a.h5", ExportConfig(per_class=300, seed=4, batch_size=64), progress=False)
    b = synthaug.export(tiny_run, tmp_path / "b.h5",
                        ExportConfig(per_class=300, seed=4, batch_size=5000), progress=False)
    c = synthaug.export(tiny_run, tmp_path / "c.h5", ExportConfig(per_class=300, seed=5, batch_size=64), progress=False)
    ia, la, _ = _arrays(a)
    ib, lb, _ = _arrays(b)
    ic, _, _ = _arrays(c)
    assert ia.tobytes() == ib.tobytes() and la.tobytes() == lb.tobytes()
    assert ia.tobytes() != ic.tobytes()


def test_class_subset(tiny_run, tmp_path):
    out = synthaug.export(tiny_run, tmp_path / "s.h5",
                          ExportConfig(per_class=3, classes=tuple(["digit7", "digit2"])), progress=False)
    _, labels, _ = _arrays(out)
    assert labels.tolist() == [2, 2, 2, 7, 7, 7]
    with pytest.raises(SynthaugError, match="unknown class"):
        synthaug.export(tiny_run, tmp_path / "t.h5", ExportConfig(per_class=3, classes=tuple(["cat"])), progress=False)


def test_imagefolder_export_loads_with_source_class_to_idx(tiny_run, digits_dir, tmp_path):
    out = synthaug.export(tiny_run, tmp_path / "folder", ExportConfig(per_class=4, seed=2), progress=False)
    ds = torchvision.datasets.ImageFolder(out)
    source = torchvision.datasets.ImageFolder(digits_dir)
    assert ds.class_to_idx == source.class_to_idx and len(ds) == 40
    h5 = synthaug.export(tiny_run, tmp_path / "same.h5", ExportConfig(per_class=4, seed=2), progress=False)
    images, labels, _ = _arrays(h5)
    img, label = ds[0]
    assert np.array_equal(np.asarray(img.convert("L")), images[0, 0]) and label == labels[0]
    assert not (tmp_path / ".folder.partial").exists()


def test_existing_output_is_never_overwritten_without_asking(tiny_run, tmp_path):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    with pytest.raises(SynthaugError, match="already exists"):
        synthaug.export(tiny_run, out, ExportConfig(per_class=2), progress=False)
    assert out.read_bytes() == b"precious"
    synthaug.export(tiny_run, out, ExportConfig(per_class=2, overwrite=True), progress=False)
    assert validate_export(out).num_images == 20


def _dies_after_one_window(real_iter):
    """The generation engine, interrupted (as by Ctrl-C) after its first window has been written."""
    def wrapped(*args, **kwargs):
        for i, item in enumerate(real_iter(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield item
    return wrapped


def test_interrupted_export_resumes_to_identical_file(tiny_run, tmp_path, monkeypatch):
    full = synthaug.export(tiny_run, tmp_path / "full.h5",
                           ExportConfig(per_class=4000, seed=9, batch_size=64), progress=False)
    real_iter = sampler_mod.iter_generated
    monkeypatch.setattr(sampler_mod, "iter_generated", _dies_after_one_window(real_iter))
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        synthaug.export(tiny_run, out, ExportConfig(per_class=4000, seed=9, batch_size=64), progress=False)
    assert not out.exists()
    partial = tmp_path / ".resumed.h5.partial"
    with pytest.raises(DataError, match="incomplete"):
        validate_export(partial)
    monkeypatch.setattr(sampler_mod, "iter_generated", real_iter)
    with pytest.raises(SynthaugError, match="other settings"):
        synthaug.export(tiny_run, out, ExportConfig(per_class=4000, seed=10, resume=True), progress=False)
    synthaug.export(tiny_run, out, ExportConfig(per_class=4000, seed=9, batch_size=1000, resume=True), progress=False)
    a, b = _arrays(full), _arrays(out)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_bad_sources(tmp_path):
    with pytest.raises(SynthaugError, match="no such run folder"):
        synthaug.export(tmp_path / "missing", tmp_path / "x.h5", ExportConfig(per_class=1))
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(SynthaugError, match="has no generator.pt"):
        synthaug.export(tmp_path / "empty_run", tmp_path / "x.h5", ExportConfig(per_class=1))
    with pytest.raises(SynthaugError, match="per-class"):
        synthaug.export(tmp_path / "empty_run", tmp_path / "x.h5", ExportConfig(per_class=0))


def test_hdf5_validation_names_the_problem(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["synthaug_format_version"] = 1
        f.attrs["class_names"] = ["a", "b"]
        f["images"] = np.zeros((3, 1, 4, 4), np.uint8)
        f["labels"] = np.array([0, 1, 5], np.int64)
    with pytest.raises(DataError, match=r"labels span \[0, 5\]"):
        validate_export(bad)
    with h5py.File(bad, "r+") as f:
        del f["labels"]
        f["labels"] = np.array([0, 1, 1], np.float32)
    with pytest.raises(DataError, match="'labels' must be int64"):
        validate_export(bad)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="not a readable HDF5"):
        validate_export(tmp_path / "junk.h5")


def test_balance_to_tops_up_an_imbalanced_folder(tiny_run, tmp_path):
    from conftest import write_digits

    real = write_digits(tmp_path / "imbalanced", per_class=12)
    for extra in sorted((real / "digit3").glob("*.png"))[:10]:
        extra.unlink()  # digit3 now has 2 images
    out = synthaug.export(tiny_run, tmp_path / "top.h5", ExportConfig(balance_to=str(real)), progress=False)
    _, labels, _ = _arrays(out)
    assert np.bincount(labels, minlength=10).tolist() == [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]
    out = synthaug.export(tiny_run, tmp_path / "t20.h5", ExportConfig(balance_to=str(real), target=20), progress=False)
    _, labels, _ = _arrays(out)
    assert np.bincount(labels, minlength=10).tolist() == [8, 8, 8, 18, 8, 8, 8, 8, 8, 8]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, digits_dir):
    """An MLP cGAN trained for a few epochs on digits: most classes are recognisable."""
    return synthaug.fit(digits_dir, tmp_path_factory.mktemp("mlp") / "run", arch="mlp", epochs=12, batch_size=16,
                        progress=False)


@pytest.mark.slow
def test_min_confidence_keeps_only_confident_images_deterministically(mlp_run, digits_dir, tmp_path):
    """Every kept image passes the real-data classifier at P; counts stay exact; batch size does not matter."""
    tiny_run = mlp_run
    from synthaug.classify import predict
    from synthaug.data.folder import load_image_folder
    from synthaug.sampler import teacher_on

    stats: dict = {}
    a = synthaug.export(tiny_run, tmp_path / "a.h5",
                        ExportConfig(per_class=20, seed=4, batch_size=16, sampling=SamplingConfig(min_confidence=0.5)),
                        progress=False, stats=stats)
    b = synthaug.export(tiny_run, tmp_path / "b.h5",
                        ExportConfig(per_class=20, seed=4, batch_size=128, real=str(digits_dir),
                                     sampling=SamplingConfig(min_confidence=0.5)),
                        progress=False)
    plain = synthaug.export(tiny_run, tmp_path / "p.h5", ExportConfig(per_class=20, seed=4), progress=False)
    images, labels, attrs = _arrays(a)
    assert np.bincount(labels).tolist() == [20] * 10
    assert (_arrays(b)[0] == images).all()  # the same images whatever the batch size
    assert json_attr(attrs)["min_confidence"] == 0.5
    clf = teacher_on(load_image_folder(digits_dir, progress=False), None)  # the filter's teacher
    import torch

    probs = predict(clf, torch.from_numpy(images))
    assert (probs[torch.arange(len(labels)), torch.from_numpy(labels)] >= 0.5).all()
    rates = stats["acceptance"]
    assert set(rates) == {f"digit{i}" for i in range(10)} and all(0 < r <= 1 for r in rates.values())
    if min(rates.values()) < 1:  # something was redrawn, so the filtered export differs from the plain one
        assert not (_arrays(plain)[0] == images).all()


def test_min_confidence_out_of_range(tiny_run, tmp_path):
    with pytest.raises(SynthaugError, match="between 0 and 1"):
        synthaug.export(tiny_run, tmp_path / "x.h5",
                        ExportConfig(per_class=2, sampling=SamplingConfig(min_confidence=1.5)), progress=False)


def json_attr(attrs):
    """The provenance JSON attribute of an export."""
    import json

    return json.loads(attrs["provenance"])


@pytest.mark.slow
def test_engine_options_precision_and_compile(tiny_run, tmp_path):
    plain = synthaug.export(tiny_run, tmp_path / "fp32.h5", ExportConfig(per_class=200, seed=3), progress=False)
    bf16 = synthaug.export(tiny_run, tmp_path / "bf16.h5",
                           ExportConfig(per_class=200, seed=3, precision="bf16"), progress=False)
    compiled = synthaug.export(tiny_run, tmp_path / "c.h5",
                               ExportConfig(per_class=200, seed=3, compile=True), progress=False)
    (a, la, _), (b, lb, _), (c, lc, _) = _arrays(plain), _arrays(bf16), _arrays(compiled)
    assert la.tobytes() == lb.tobytes() == lc.tobytes()
    assert validate_export(bf16).provenance["precision"] == "bf16"
    # bf16 changes pixels a little (it is a different computation), never the picture
    diff = np.abs(a.astype(int) - b.astype(int))
    assert 0 < diff.mean() < 2.0
    # inductor's fused kernels round differently from eager ones, by at most a pixel level here and there
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 2
    with pytest.raises(SynthaugError, match="unknown precision"):
        synthaug.export(tiny_run, tmp_path / "x.h5", ExportConfig(per_class=2, precision="fp8"), progress=False)


def test_a_resume_must_match_the_precision(tiny_run, tmp_path, monkeypatch):
    real_iter = sampler_mod.iter_generated
    monkeypatch.setattr(sampler_mod, "iter_generated", _dies_after_one_window(real_iter))
    out = tmp_path / "p.h5"
    with pytest.raises(KeyboardInterrupt):
        synthaug.export(tiny_run, out, ExportConfig(per_class=4000, seed=9, precision="bf16"), progress=False)
    monkeypatch.setattr(sampler_mod, "iter_generated", real_iter)
    with pytest.raises(SynthaugError, match="other settings"):
        synthaug.export(tiny_run, out, ExportConfig(per_class=4000, seed=9, resume=True), progress=False)
