"""A full disk (simulated with RLIMIT_FSIZE: writes past the limit fail with EFBIG, as ENOSPC would) fails with
one line and leaves what existed intact."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import h5py
import pytest

import synthaug
from synthaug import ExportConfig
from synthaug.runs import load_safe


def _limited(args, tmp_path, limit_bytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "synthaug_cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600, preexec_fn=limit)


def test_export_that_runs_out_of_space_keeps_the_old_file(tiny_run, tmp_path):
    out = synthaug.export(tiny_run, tmp_path / "s.h5", ExportConfig(per_class=5), progress=False)
    before = out.read_bytes()
    p = _limited(["export", "--run", str(tiny_run), "--per-class", "3000", "--out", str(out), "--overwrite",
                  "--quiet"], tmp_path, 200_000)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("Error: ") and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "too large" in p.stderr.lower() or "space" in p.stderr.lower()
    assert out.read_bytes() == before  # the complete old export is untouched
    with h5py.File(out) as f:
        assert f["labels"].shape == (50,)


@pytest.mark.slow
def test_fit_that_runs_out_of_space_keeps_the_last_checkpoint(digits_dir, tmp_path):
    run = synthaug.fit(digits_dir, tmp_path / "run", arch="dcgan", max_steps=3, batch_size=16, progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    p = _limited(["fit", str(digits_dir), "--out", str(run), "--resume", "--max-steps", "6", "--quiet"], tmp_path,
                 len(before) // 2)
    assert p.returncode == 1, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert (run / "checkpoint.pt").read_bytes() == before
    assert load_safe(run / "checkpoint.pt")["step"] == 3
    assert not list(run.glob(".*.tmp"))  # no half-written temporary left behind
