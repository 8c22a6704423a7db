"""SIGKILL at an arbitrary moment loses at most the work since the last checkpoint or chunk; resume completes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import pytest

from synthaug.runs import load_safe


def _env(tmp_path):
    return {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache"), "HDF5_USE_FILE_LOCKING": "FALSE"}


def _cli(*args):
    return [sys.executable, "-m", "synthaug_cli", *args]


@pytest.mark.slow
def test_killed_export_resumes_to_the_same_bytes(tiny_run, tmp_path):
    args = ["export", "--run", str(tiny_run), "--per-class", "20000", "--seed", "3", "--quiet"]
    env = _env(tmp_path)
    proc = subprocess.Popen(_cli(*args, "--out", str(tmp_path / "killed.h5")), env=env)
    partial = tmp_path / ".killed.h5.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not partial.exists():
        time.sleep(0.05)
    time.sleep(1.0)  # the partial file is preallocated at full size: let some chunks land before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.h5").exists()
    p = subprocess.run(_cli(*args, "--out", str(tmp_path / "killed.h5"), "--resume"), env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(_cli(*args, "--out", str(tmp_path / "whole.h5"), "--batch-size", "4096"), env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    with h5py.File(tmp_path / "killed.h5") as a, h5py.File(tmp_path / "whole.h5") as b:
        assert a["images"][()].tobytes() == b["images"][()].tobytes()
        assert a["labels"][()].tobytes() == b["labels"][()].tobytes()


@pytest.mark.slow
def test_killed_fit_leaves_a_loadable_checkpoint_and_resumes(digits_dir, tmp_path):
    run = tmp_path / "run"
    env = _env(tmp_path)
    args = ["fit", str(digits_dir), "--out", str(run), "--arch", "mlp", "--epochs", "100000", "--batch-size", "16",
            "--quiet"]
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "log.jsonl").is_file() and len((run / "log.jsonl").read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_safe(run / "checkpoint.pt")  # never torn: written to a temporary file and renamed
    p = subprocess.run(_cli(*args[:-1], "--resume", "--max-steps", str(state["step"] + 5), "--quiet"), env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert load_safe(run / "checkpoint.pt")["step"] == state["step"] + 5
