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
    width: int | None = None  # None: the architecture's own default width
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
    augment: str | None = None  # DiffAugment policy, e.g. "translation,cutout,color" (synthaug/augment.py)
    mode_seeking: float = 0.0  # weight of the MSGAN mode-seeking term in the generator loss (0: off)
    lecam: float = 0.0  # weight of the LeCam regulariser of the discriminator (Tseng et al. 2021; 0: off)
    sample_every: int | None = None  # epochs between grids/snapshots; None: every epoch (~200 steps on tiny data)
    class_balance: bool = False  # draw training images with equal total probability per class (rare classes)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "d_steps"):
            if getattr(self, name) < 1:
                raise SynthaugError(f"{name.replace('_', ' ')} must be at least 1 (got {getattr(self, name)})")
        if self.max_steps is not None and self.max_steps < 1:
            raise SynthaugError(f"max steps must be at least 1 (got {self.max_steps})")
        if self.minutes is not None and not self.minutes > 0:
            raise SynthaugError(f"minutes must be positive (got {self.minutes})")
        if self.lecam < 0 or self.mode_seeking < 0:
            raise SynthaugError(f"regulariser weights must be >= 0 (got lecam {self.lecam}, mode seeking "
                                f"{self.mode_seeking})")
        if self.sample_every is not None and self.sample_every < 1:
            raise SynthaugError(f"sample every must be at least 1 (got {self.sample_every})")


@dataclass(frozen=True)
class FitSettings:
    """The fit settings a caller sets, `None` for not set: `train.resolve_fit` resolves them once, over the default
    recipe's choices (`recipes.default_recipe`) and the architecture's defaults, into a `ModelConfig` and a
    validated `TrainConfig`."""

    arch: str | None = None
    resolution: int | None = None
    width: int | None = None
    ema: bool | None = None
    epochs: int | None = None
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    loss: str | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    augment: str | None = None
    mode_seeking: float | None = None
    lecam: float | None = None
    class_balance: bool | None = None
    sample_every: int | None = None
    seed: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("resolution", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SynthaugError(f"{name} must be at least 1 (got {value})")

    def set(self) -> dict[str, Any]:
        """The fields a caller set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def train_fields(self) -> dict[str, Any]:
        """The set fields that belong to `TrainConfig`."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return {k: v for k, v in self.set().items() if k in names}


@dataclass(frozen=True)
class SamplingConfig:
    """How a trained generator is sampled, apart from its weights (saved as a run's sampling.json by `tune`).

    `latent_scale` multiplies the normal prior (> 1 widens it, < 1 narrows it), applied after `truncation` (which
    resamples |z| above it in the unit prior). `snapshots` pools several generator files of the run (names under
    run/generators/, or paths), each drawing an equal share of every class; None uses the run's generator.pt.
    `min_confidence` keeps only images the teacher gives their class with at least that probability.
    `soft_labels` stores the teacher's class probabilities beside the hard labels.
    """

    truncation: float | None = None
    latent_scale: float = 1.0
    snapshots: tuple[str, ...] | None = None
    min_confidence: float | None = None
    soft_labels: bool = False
    teacher_steps: int | None = None  # None: the budget follows the real folder's size (`classify.teacher_budget`)
    teacher_baseline: str | None = None  # the teacher's classifier baseline, e.g. "logit-adjusted" (None: plain)

    def __post_init__(self) -> None:
        if self.truncation is not None and not self.truncation > 0:
            raise SynthaugError(f"truncation must be positive (got {self.truncation})")
        if not 0.0 < self.latent_scale <= 10.0:
            raise SynthaugError(f"latent scale must lie in (0, 10] (got {self.latent_scale})")
        if self.min_confidence is not None and not 0.0 < self.min_confidence < 1.0:
            raise SynthaugError(f"min-confidence must lie strictly between 0 and 1 (got {self.min_confidence})")
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise SynthaugError(f"teacher steps must be at least 1 (got {self.teacher_steps})")
        if self.snapshots is not None and not self.snapshots:
            raise SynthaugError("snapshots, when given, must name at least one generator file")

    @property
    def needs_teacher(self) -> bool:
        """Whether sampling this way needs a classifier trained on the real training folder."""
        return self.soft_labels or self.min_confidence is not None


@dataclass(frozen=True)
class ExportConfig:
    """What an export holds and how it is written; saved in the export's provenance.

    Exactly one of `per_class` (images of each class in `classes`, all by default) and `balance_to` (a real folder
    whose classes are topped up to `target`, default its largest class) says how many images each class gets.
    `real` is the folder the teacher learns from (default: the run's training folder).
    """

    per_class: int | None = None
    balance_to: str | None = None
    target: int | None = None
    classes: tuple[str, ...] | None = None
    seed: int = 0
    fmt: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    compression: str | None = None
    precision: str = "fp32"
    compile: bool = False
    resume: bool = False
    overwrite: bool = False
    real: str | None = None
    sampling: SamplingConfig | None = None  # None: the run's sampling.json (from `tune`), else the defaults

    def __post_init__(self) -> None:
        if (self.per_class is None) == (self.balance_to is None):
            raise SynthaugError("give exactly one of per-class N and balance-to DIR")
        if self.per_class is not None and self.per_class < 1:
            raise SynthaugError(f"per-class count must be at least 1 (got {self.per_class})")
        if self.target is not None and self.balance_to is None:
            raise SynthaugError("target is only meaningful with balance-to")
        if self.target is not None and self.target < 1:
            raise SynthaugError(f"target must be at least 1 (got {self.target})")
        if self.batch_size is not None and self.batch_size < 1:
            raise SynthaugError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise SynthaugError(f"unknown precision {self.precision!r} (one of fp32, bf16, fp16)")
        if self.classes is not None and self.balance_to is not None:
            raise SynthaugError("classes and balance-to do not combine (balance-to tops up every class)")


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
        if sub is not None and value is not None:
            value = _build(sub, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SynthaugError(f"{where}: {exc}") from None
    except SynthaugError as exc:
        raise SynthaugError(f"{where}: {exc}") from None


_NESTED = {(RunConfig, "data"): DataConfig, (RunConfig, "model"): ModelConfig, (RunConfig, "train"): TrainConfig,
           (ExportConfig, "sampling"): SamplingConfig}


def fit_settings(settings: FitSettings | None = None, **fields: Any) -> FitSettings:
    """`settings` with `fields` set on top (None: not set); an unknown field is a one-line error."""
    base = settings or FitSettings()
    unknown = set(fields) - {f.name for f in dataclasses.fields(FitSettings)}
    if unknown:
        raise SynthaugError(f"unknown fit settings: {sorted(unknown)}")
    changed = {k: v for k, v in fields.items() if v is not None}
    return dataclasses.replace(base, **changed) if changed else base


def config_to_json(cfg: Any) -> str:
    """Serialise any of these configs as indented JSON."""
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)


def config_from_json(cls: type[T], text: str, where: str) -> T:
    """Parse and validate a config of type `cls`, rejecting unknown keys."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynthaugError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return _build(cls, raw, where)


def run_config_to_json(cfg: RunConfig) -> str:
    """Serialise a run config as indented JSON."""
    return config_to_json(cfg)


def run_config_from_json(text: str, where: str = "config.json") -> RunConfig:
    """Parse and validate a run config."""
    return config_from_json(RunConfig, text, where)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """Read `config.json` from a run folder."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise SynthaugError(f"{path}: no config.json (is this a synthaug run folder?)")
    return run_config_from_json(path.read_text(encoding="utf-8"), str(path))
