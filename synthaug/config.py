"""Frozen dataclasses, one per concern, with a strict JSON round trip."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from synthaug.errors import SynthaugError

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Where the training images come from and how they are shaped."""

    root: str
    resolution: int
    channels: int
    class_names: tuple[str, ...]
    num_images: int


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture, at which size."""

    arch: str
    resolution: int
    channels: int
    num_classes: int
    latent_dim: int = 100
    width: int = 0  # 0: the architecture's own default width
    ema: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """How the GAN is optimised."""

    epochs: int = 20
    minutes: float | None = None
    batch_size: int = 64
    loss: str = "bce"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    label_smoothing: float = 0.9
    d_steps: int = 1
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    channels_last: bool = True
    max_steps: int | None = None
    augment: str = ""  # DiffAugment policy, e.g. "translation,cutout,color" (synthaug/augment.py)
    mode_seeking: float = 0.0  # weight of the MSGAN mode-seeking term in the generator loss (0: off)
    sample_every: int = 0  # epochs between grids/snapshots; 0: every epoch, or every ~200 steps on tiny data
    class_balance: bool = False  # draw training images with equal total probability per class (rare classes)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to reproduce or resume a run from its folder alone."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    synthaug_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _build(cls: type[T], raw: dict[str, Any], where: str) -> T:
    """Build a dataclass from a dict, rejecting unknown keys and converting lists to tuples."""
    if not isinstance(raw, dict):
        raise SynthaugError(f"{where}: expected an object, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(names)
    if unknown:
        raise SynthaugError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for key, value in raw.items():
        sub = _NESTED.get((cls, key))
        if sub is not None:
            value = _build(sub, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SynthaugError(f"{where}: {exc}") from None


_NESTED = {(RunConfig, "data"): DataConfig, (RunConfig, "model"): ModelConfig, (RunConfig, "train"): TrainConfig}


def run_config_to_json(cfg: RunConfig) -> str:
    """Serialise a run config as indented JSON."""
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)


def run_config_from_json(text: str, where: str = "config.json") -> RunConfig:
    """Parse and validate a run config."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynthaugError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return _build(RunConfig, raw, where)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """Read `config.json` from a run folder."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise SynthaugError(f"{path}: no config.json (is this a synthaug run folder?)")
    return run_config_from_json(path.read_text(encoding="utf-8"), str(path))
