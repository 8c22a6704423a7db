"""Run folders: their layout, checkpoints (atomic save, safe load), the generator file format (written and read
here), a run's training folder and its sampling settings."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from synthaug.config import (ModelConfig, RunConfig, SamplingConfig, _build, config_from_json, config_to_json,
                             load_run_config)
from synthaug.data.names import check_class_names
from synthaug.errors import CheckpointError, DataError, SynthaugError
from synthaug.fsutil import atomic_copy, atomic_path, atomic_write_text
from synthaug.models import ConditionalGenerator, build_models

RUN_CONFIG = "config.json"  # every setting of the run, resolved
SKIPPED_FILES = "skipped_files.json"  # the training folder's files that could not be decoded
TRAINING_STATE = "checkpoint.pt"  # generator, EMA, discriminator, optimisers, step, RNG states
GENERATOR_FILE = "generator.pt"  # the sampling weights only (EMA when used) plus the model config
SNAPSHOTS = "generators"  # per-epoch copies of generator.pt: generators/epoch_NNNN.pt
SAMPLING_FILE = "sampling.json"  # how to sample the run's generator, as chosen by `synthaug tune`
LAST_GENERATOR = "generator-last.pt"  # the final generator, kept when select-best installs an earlier snapshot
SELECTION_FILE = "selection.json"  # select-best's scores of every snapshot
FINISHED = ".done"  # marks a run a protocol fitted to the end of its budget
GENERATOR_FORMAT = "synthaug-generator"


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


def save_keyed(module: torch.nn.Module, path: str | Path, key: dict[str, Any]) -> None:
    """A module's weights and `key` (what made them: data digest, settings), written atomically."""
    save_atomic({"state": module.state_dict(), "key": json.dumps(key, sort_keys=True)}, path)


def load_keyed(path: str | Path, key: dict[str, Any], module: torch.nn.Module) -> torch.nn.Module | None:
    """`module` (built as saved) with the weights kept at `path` if `key` made them, else None."""
    if not Path(path).is_file():
        return None
    saved = load_safe(path)
    if saved.get("key") != json.dumps(key, sort_keys=True):
        return None
    module.load_state_dict(saved["state"])
    return module.eval()


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


def save_generator(path: str | Path, model_config: ModelConfig, class_names: tuple[str, ...],
                   state_dict: dict[str, torch.Tensor], step: int, epoch: int) -> None:
    """Write a generator file: the sampling weights, the model config and the class names (atomically)."""
    save_atomic({"format": GENERATOR_FORMAT, "model_config": dataclasses.asdict(model_config),
                 "class_names": list(class_names),
                 "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                 "step": step, "epoch": epoch}, path)


def load_generator(run_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> ConditionalGenerator:
    """Load the sampling generator (EMA weights when trained with EMA) in eval mode.

    The result maps z (N, latent_dim) and int64 labels (N,) to images (N, C, H, W) in [-1, 1], and carries
    `latent_dim`, `num_classes`, `class_names`, `image_shape` and `source_path`.
    """
    path = generator_file(run_or_checkpoint)
    obj = load_safe(path)
    cfg = model_config_from(obj, str(path))
    _check_declared_network(cfg, obj, path)
    gen, _ = build_models(cfg)
    try:
        gen.load_state_dict(obj["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match architecture {cfg.arch!r} of its config "
                              f"({str(exc).splitlines()[0][:160]})") from None
    names = obj.get("class_names")
    if not isinstance(names, list) or len(names) != cfg.num_classes:
        raise CheckpointError(f"{path}: class_names missing or not {cfg.num_classes} long")
    try:
        gen.class_names = check_class_names(names, path)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    gen.source_path = path
    gen.requires_grad_(False)
    return gen.eval().to(device)


def _check_declared_network(cfg: ModelConfig, obj: dict[str, Any], path: Path) -> None:
    """A generator file's config must not declare a larger network than the weights it holds: the network is sized
    on the meta device (nothing allocated) before it is built for real."""
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: has no state_dict (not a synthaug generator file)")
    try:
        with torch.device("meta"):
            declared = sum(p.numel() for p in build_models(cfg)[0].parameters())
    except (RuntimeError, ValueError, TypeError, SynthaugError) as exc:
        raise CheckpointError(f"{path}: its model_config does not describe a network "
                              f"({str(exc).splitlines()[0][:120]})") from None
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    if declared > held:
        raise CheckpointError(f"{path}: its model_config declares a generator of {declared:,} parameters, but the "
                              f"file holds {held:,}")


def run_folder_of(run_or_checkpoint: str | Path) -> Path | None:
    """The run folder a run, its generator.pt or one of its snapshots belongs to (None for a bare file)."""
    path = Path(run_or_checkpoint)
    for run in (path, path.parent, path.parent.parent):  # a run, its generator.pt, or generators/epoch_N.pt
        if (run / "config.json").is_file():
            return run
    return None


def training_folder(run_or_checkpoint: str | Path) -> Path:
    """The real training folder recorded in a run's config.json."""
    run = run_folder_of(run_or_checkpoint)
    if run is None:
        raise SynthaugError(f"{run_or_checkpoint}: no run config to find the real training folder; pass --real DIR")
    return Path(read_run_config(run).data.root)


def snapshot_files(run: str | Path) -> list[Path]:
    """The run's per-epoch generator snapshots, oldest first."""
    folder = Path(run) / SNAPSHOTS
    return sorted(p for p in folder.glob("epoch_*.pt") if p.stem.split("_")[-1].isdigit())


def snapshot_epoch(path: Path) -> int:
    """The epoch number of a snapshot file name (epoch_0012.pt -> 12)."""
    return int(path.stem.split("_")[-1])


def generator_files(source: str | Path, snapshots: tuple[str, ...] | None) -> list[Path]:
    """The generator files a source samples from: its generator.pt, or the named snapshots of its run."""
    if not snapshots:
        return [generator_file(source)]
    run = run_folder_of(source) or Path(source)
    files = []
    for name in snapshots:
        path = Path(name) if Path(name).is_absolute() else run / SNAPSHOTS / name
        if not path.is_file():
            raise CheckpointError(f"{path}: no such generator snapshot")
        files.append(path)
    return files


def _sampling_json(run_or_checkpoint: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """(path, contents) of a run's sampling.json, None when it has none."""
    run = run_folder_of(run_or_checkpoint)
    path = run / SAMPLING_FILE if run is not None else None
    if path is None or not path.is_file():
        return None
    return path, json.loads(path.read_text(encoding="utf-8") or "{}")


def read_sampling(run_or_checkpoint: str | Path) -> SamplingConfig | None:
    """The sampling settings `tune` saved in a run (None when there are none)."""
    found = _sampling_json(run_or_checkpoint)
    if found is None:
        return None
    path, raw = found
    return config_from_json(SamplingConfig, json.dumps(raw.get("sampling", raw)), str(path))


def read_advice(run_or_checkpoint: str | Path) -> dict[str, Any] | None:
    """The whole recipe `tune` advised for a run (classifier baseline, synthetic use), None when it has none."""
    found = _sampling_json(run_or_checkpoint)
    return found[1].get("search", {}).get("advice") if found else None


def write_sampling(run: str | Path, sampling: SamplingConfig, record: dict[str, Any]) -> Path:
    """Save the chosen sampling settings, with the search that chose them, as run/sampling.json."""
    path = Path(run) / SAMPLING_FILE
    atomic_write_text(path, json.dumps({"sampling": json.loads(config_to_json(sampling)), "search": record},
                                       indent=1, sort_keys=True))
    return path


def install_snapshot(run: str | Path, snapshot: str, record: dict[str, Any]) -> Path:
    """Make the snapshot `snapshot` (a name under generators/) the run's generator.pt, keeping the last generator as
    generator-last.pt, and save `record` (the scores that chose it) as selection.json; every write atomic."""
    run = Path(run)
    last = run / LAST_GENERATOR
    if not last.exists():
        atomic_copy(run / GENERATOR_FILE, last)
    atomic_copy(run / SNAPSHOTS / snapshot, run / GENERATOR_FILE)
    atomic_write_text(run / SELECTION_FILE, json.dumps(record, indent=1))
    return run / GENERATOR_FILE


def is_finished(run: str | Path) -> bool:
    """Whether a run was fitted to the end of its budget (and marked so) with its generator in place."""
    return (Path(run) / GENERATOR_FILE).is_file() and (Path(run) / FINISHED).is_file()


def mark_finished(run: str | Path) -> None:
    """Mark a run as fitted to the end of its budget."""
    atomic_write_text(Path(run) / FINISHED, "")


def has_training_state(run: str | Path) -> bool:
    """Whether a run folder holds a resumable checkpoint."""
    return (Path(run) / TRAINING_STATE).is_file()
