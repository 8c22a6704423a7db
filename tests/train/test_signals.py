"""SIGTERM and SIGINT during fit save a checkpoint and stop with one line (exit 130); the run then resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from synthaug.runs import load_safe


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_resume_continues(digits_dir, tmp_path, sig):
    run = tmp_path / "run"
    env = {**os.environ, "SYNTHAUG_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "synthaug_cli", "fit", str(digits_dir), "--out", str(run), "--arch", "mlp",
           "--epochs", "100000", "--batch-size", "16", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log = run / "log.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"stopped by {sig.name} at step" in err and "Traceback" not in err
    step = load_safe(run / "checkpoint.pt")["step"]
    assert step >= 51
    p = subprocess.run([*cmd[:-1], "--resume", "--max-steps", str(step + 10), "--quiet"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert load_safe(run / "checkpoint.pt")["step"] == step + 10
