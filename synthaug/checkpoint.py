"""Run folders and checkpoints: atomic save, safe load (weights_only), resolution of what the user points at."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from synthaug.config import ModelConfig, RunConfig, _build, load_run_config
from synthaug.errors import CheckpointError, SynthaugError
from synthaug.fsutil import atomic_path

TRAINING_STATE = "checkpoint.pt"  # generator, EMA, discriminator, optimisers, step, RNG states
GENERATOR_FILE = "generator.pt"  # the sampling weights only (EMA when used) plus the model config


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file, fsync, rename: a crash never leaves a torn checkpoint."""
    try:
        with atomic_path(path, ".pt") as tmp:
            torch.save(obj, tmp)
    except RuntimeError as exc:  # torch's zip writer reports a failed write (full disk, size limit) this way
        raise CheckpointError(f"{path}: could not be written ({str(exc).splitlines()[0][:120]}; is the disk "
                              f"full?); the previous file is intact") from None


def load_safe(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad file, reported in one line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable synthaug checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a synthaug checkpoint (top level is {type(obj).__name__})")
    return obj


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The most recently modified run folder (one holding generator.pt) under `runs_dir`."""
    runs_dir = Path(runs_dir)
    candidates = [p.parent for p in runs_dir.glob(f"*/{GENERATOR_FILE}")] if runs_dir.is_dir() else []
    if not candidates:
        raise CheckpointError(f"{runs_dir}: no run folder with a {GENERATOR_FILE} (train one with `synthaug fit`)")
    return max(candidates, key=lambda p: (p / GENERATOR_FILE).stat().st_mtime)


def generator_file(run_or_checkpoint: str | Path) -> Path:
    """The generator weights a run folder or a .pt path refers to."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / GENERATOR_FILE
        if not path.is_file():
            raise CheckpointError(f"{path.parent}: run folder has no {GENERATOR_FILE} "
                                  f"(did training save a checkpoint?)")
    elif not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint")
    return path


def model_config_from(obj: dict[str, Any], where: str) -> ModelConfig:
    """The ModelConfig stored in a generator file."""
    raw = obj.get("model_config")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: has no model_config (not a synthaug generator file)")
    try:
        return _build(ModelConfig, raw, f"{where}: model_config")
    except SynthaugError as exc:
        raise CheckpointError(str(exc)) from None


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The RunConfig of a run folder, as a CheckpointError when missing or invalid."""
    try:
        return load_run_config(run_dir)
    except SynthaugError as exc:
        raise CheckpointError(str(exc)) from None
