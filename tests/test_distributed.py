"""Real torchrun processes (gloo on the CPU): DDP training stays in sync, resumes in one process, and a 2-rank
export equals the 1-rank export item for item."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import pytest

from synthaug.runs import load_safe


def _torchrun(args, tmp_path, nproc=2):
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "synthaug_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def _cli(args, tmp_path):
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "synthaug_cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_two_ranks_train_in_sync_resume_in_one_and_export_identically(digits_dir, tmp_path):
    run = tmp_path / "run"
    p = _torchrun(["fit", str(digits_dir), "--out", str(run), "--max-steps", "6", "--batch-size", "16", "--quiet"],
                  tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("run folder:") == 1  # only rank 0 speaks
    report = json.loads((run / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "gloo" and report["global_batch"] == 32
    assert report["in_sync"] == {"generator": True, "discriminator": True, "generator_ema": True}
    state = load_safe(run / "checkpoint.pt")
    assert state["step"] == 6 and state["world_size"] == 2 and state["images_in_epoch"] == 6 * 32

    p = _cli(["fit", str(digits_dir), "--out", str(run), "--resume", "--max-steps", "10", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    state = load_safe(run / "checkpoint.pt")
    assert state["step"] == 10 and state["world_size"] == 1 and state["images_in_epoch"] == 6 * 32 + 4 * 16

    p = _cli(["export", "--run", str(run), "--per-class", "200", "--out", "one.h5", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    p = _torchrun(["export", "--source", str(run), "--per-class", "200", "--out", "two.h5", "--batch-size", "64",
                   "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    with h5py.File(tmp_path / "one.h5") as a, h5py.File(tmp_path / "two.h5") as b:
        assert a["images"][()].tobytes() == b["images"][()].tobytes()
        assert a["labels"][()].tobytes() == b["labels"][()].tobytes()
        assert list(a.attrs["class_names"]) == list(b.attrs["class_names"])
        assert json.loads(b.attrs["provenance"])["world_size"] == 2
    assert not list(tmp_path.glob(".two.h5.shard*"))  # shards are removed once joined
