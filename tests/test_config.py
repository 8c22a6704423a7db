"""Configs: the strict JSON round trip, unknown keys rejected, the export and sampling rules; atomic writes."""
from __future__ import annotations

import json
import os

import pytest

from synthaug.config import (DataConfig, ExportConfig, ModelConfig, RunConfig, SamplingConfig, TrainConfig,
                             config_from_json, config_to_json, run_config_from_json, run_config_to_json)
from synthaug.errors import SynthaugError
from synthaug.fsutil import atomic_path, atomic_write_text


def _run() -> RunConfig:
    return RunConfig(DataConfig("/d", 28, 1, ("a", "b"), 10), ModelConfig("dcgan", 28, 1, 2), TrainConfig())


def test_run_config_round_trips_exactly():
    cfg = _run()
    assert run_config_from_json(run_config_to_json(cfg)) == cfg


@pytest.mark.parametrize("where, key", [((), "colour"), (("train",), "learning_rate"), (("model",), "depth")])
def test_unknown_keys_are_rejected_with_their_place(where, key):
    raw = json.loads(run_config_to_json(_run()))
    node = raw
    for part in where:
        node = node[part]
    node[key] = 1
    with pytest.raises(SynthaugError, match=rf"unknown keys \['{key}'\]"):
        run_config_from_json(json.dumps(raw), "config.json")


def test_export_config_rules():
    assert ExportConfig(per_class=3).sampling is None
    for kwargs, text in (({}, "exactly one of per-class"), ({"per_class": 2, "balance_to": "x"}, "exactly one"),
                         ({"per_class": 0}, "at least 1"), ({"per_class": 1, "target": 5}, "only meaningful"),
                         ({"per_class": 1, "precision": "fp8"}, "unknown precision"),
                         ({"balance_to": "x", "classes": ("a",)}, "do not combine"),
                         ({"per_class": 1, "batch_size": 0}, "batch size must be at least 1")):
        with pytest.raises(SynthaugError, match=text):
            ExportConfig(**kwargs)
    cfg = ExportConfig(per_class=5, sampling=SamplingConfig(latent_scale=1.25, soft_labels=True))
    assert config_from_json(ExportConfig, config_to_json(cfg), "export.json") == cfg
    with pytest.raises(SynthaugError, match=r"export.json.sampling: unknown keys \['temperature'\]"):
        raw = json.loads(config_to_json(cfg))
        raw["sampling"]["temperature"] = 2
        config_from_json(ExportConfig, json.dumps(raw), "export.json")


def test_sampling_config_rules():
    assert SamplingConfig().needs_teacher is False and SamplingConfig(min_confidence=0.5).needs_teacher
    for kwargs, text in (({"truncation": 0}, "truncation must be positive"), ({"teacher_steps": 0}, "at least 1"),
                         ({"min_confidence": 1.0}, "strictly between"), ({"snapshots": ()}, "at least one")):
        with pytest.raises(SynthaugError, match=text):
            SamplingConfig(**kwargs)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
