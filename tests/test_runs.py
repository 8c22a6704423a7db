"""Checkpoints are loaded safely: a malicious pickle does not run, mismatched weights are named."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

import synthaug
from synthaug.runs import load_safe
from synthaug.errors import CheckpointError


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "generator.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"model_config": _Evil(str(marker))}, fh)
    with pytest.raises(CheckpointError, match="not a loadable synthaug checkpoint"):
        synthaug.load_generator(bad)
    assert not marker.exists()


def test_weights_that_do_not_match_the_config_are_named(tiny_run, tmp_path):
    obj = load_safe(tiny_run / "generator.pt")
    obj["model_config"]["arch"] = "dcgan"
    torch.save(obj, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="declares a generator of [0-9,]+ parameters, but the file holds"):
        synthaug.load_generator(tmp_path / "g.pt")  # dcgan at this width is larger than the conv weights held
    obj["model_config"]["arch"], obj["model_config"]["width"] = "conv", 10**7  # a width no machine could hold
    torch.save(obj, tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match="declares a generator of"):
        synthaug.load_generator(tmp_path / "wide.pt")
    obj["model_config"]["width"] = load_safe(tiny_run / "generator.pt")["model_config"]["width"]
    obj["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in obj["state_dict"].items()}
    obj["state_dict"]["padding"] = torch.zeros(10**6)  # enough numbers, the wrong shapes
    torch.save(obj, tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError, match="do not match architecture 'conv'"):
        synthaug.load_generator(tmp_path / "shapes.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.pt"):
        synthaug.load_generator(tmp_path / "junk.pt")
