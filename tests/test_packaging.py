"""The package as users install it: a wheel with the pretrained weights, built without warnings; --version."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import synthaug
from synthaug_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_weights_and_builds_without_warnings(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    log = p.stdout + p.stderr
    assert "Warning" not in log.replace("WARNING: Location", ""), log[-3000:]
    wheel = next(tmp_path.glob("synthaug-*.whl"))
    assert wheel.name.startswith(f"synthaug-{synthaug.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    for name in synthaug.list_pretrained():
        assert f"synthaug/pretrained/{name}.pt" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "synthaug_cli/main.py" in names and "synthaug/_version.py" in names


def test_the_command_starts_without_torchvision_or_sklearn():
    # each costs every command seconds of start-up; they load where they are used
    code = ("import sys, synthaug_cli.main; "
            "print(sorted(m for m in ('torchvision', 'sklearn') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"


def test_version_flag_says_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"synthaug, version {synthaug.__version__}"


@pytest.mark.parametrize("args, text", [
    (["--mix-recipe", "blend"], "unknown mix recipe 'blend'"),
    (["--mix-recipe", "weighted:2"], "the share must lie strictly between 0 and 1"),
    (["--ratios", "a,b"], "is not a comma-separated list of numbers"),
    (["--ratios", "-1"], "--ratios must be positive"),
    (["--labels", "soft"], "has no soft labels"),
    (["--top-up"], "top-up needs a run or generator file"),
    (["--real-fraction", "0.5", "--fit-steps", "0"], "Invalid value for '--fit-steps': 0 is not in the range x>=1"),
])
def test_benchmark_flags_give_one_line_errors(tiny_run, digits_splits, tmp_path, args, text):
    out = synthaug.export(tiny_run, tmp_path / "s.h5", synthaug.ExportConfig(per_class=3), progress=False)
    real = digits_splits / "train"
    p = subprocess.run([sys.executable, "-m", "synthaug_cli", "benchmark", "--synthetic", str(out), "--real", str(real),
                        *args, "--quiet"], capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], p.stderr
