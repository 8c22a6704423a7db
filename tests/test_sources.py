"""Synthetic sources resolved once, by content: exports, run folders, generator files, pretrained names."""
from __future__ import annotations

import shutil

import pytest

import synthaug
from synthaug import ExportConfig
from synthaug.errors import DataError, SynthaugError
from synthaug.sources import ExportSource, GeneratorSource, resolve_source


def test_sources_are_known_by_what_they_hold(tiny_run, digits_dir, tmp_path):
    export = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=2), progress=False)
    renamed = shutil.copy(export, tmp_path / "synthetic.data")  # an HDF5 file by its bytes, not its suffix
    for path in (export, renamed):
        source = resolve_source(path)
        assert isinstance(source, ExportSource) and source.image_shape == (1, 8, 8)
        assert source.training_folder().resolve() == digits_dir.resolve()  # from the provenance and the run
    run = resolve_source(tiny_run)
    assert isinstance(run, GeneratorSource) and run.image_shape == (1, 8, 8) and len(run.class_names) == 10
    shipped = resolve_source("fashion-mnist")
    assert isinstance(shipped, GeneratorSource) and shipped.image_shape == (1, 28, 28)
    assert resolve_source(shipped) is shipped
    with pytest.raises(DataError, match="no such export, run folder, generator file or pretrained name"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(SynthaugError, match="no run config to find the real training folder"):
        shipped.training_folder()
