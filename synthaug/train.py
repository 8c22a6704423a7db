"""The training loop: tensors in memory, small d_step/g_step functions, EMA, atomic checkpoints, clean stops."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from synthaug import distributed
from synthaug._version import __version__
from synthaug.device import pin_if_cuda, resolve_device
from synthaug.augment import diff_augment, parse_policy
from synthaug.runs import (GENERATOR_FILE, RUN_CONFIG, SKIPPED_FILES, SNAPSHOTS, TRAINING_STATE, load_safe,
                           save_atomic, save_generator)
from synthaug.config import (DataConfig, FitSettings, ModelConfig, RunConfig, TrainConfig, fit_settings,
                             load_run_config, run_config_to_json)
from synthaug.data.folder import SPLIT_NAMES, LabelledImages, load_image_folder, resolve_split
from synthaug.errors import CheckpointError, SynthaugError, TrainingStopped
from synthaug.fsutil import atomic_write_text, output_lock
from synthaug.losses import LossPair, get_loss
from synthaug.models import ConditionalGenerator, build_models, get_arch
from synthaug.monitor import Monitor, fixed_grid_inputs
from synthaug.recovery import Recovery

LOG_EVERY = 25
CHECKPOINT_MINUTES = 5.0


def default_run_dir(data_dir: str | Path, runs: str | Path = "runs") -> Path:
    """runs/<folder name>, naming a split folder (train/...) by its parent."""
    path = Path(data_dir).resolve()
    name = path.parent.name if path.name in SPLIT_NAMES else path.name
    return Path(runs) / name


class DiscriminatorPair(nn.Module):
    """D on a real and a fake batch in one call, so DistributedDataParallel sees one forward per backward."""

    def __init__(self, d: nn.Module):
        super().__init__()
        self.d = d

    def forward(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor):
        return self.d(real, labels), self.d(fake, labels)


@dataclass
class Models:
    """Everything that trains, plus the generator used for sampling (the EMA copy when enabled).

    `g_train` and `d_pair` are what the steps call: `g` and `DiscriminatorPair(d)` in one process, their
    DistributedDataParallel wrappers under torchrun.
    """

    g: ConditionalGenerator
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: AveragedModel | None
    g_train: nn.Module | None = None
    d_pair: nn.Module | None = None
    lecam_anchors: torch.Tensor | None = None  # moving averages of D's real and fake outputs (LeCam)

    def __post_init__(self) -> None:
        self.g_train = self.g_train or self.g
        self.d_pair = self.d_pair or DiscriminatorPair(self.d)
        if self.lecam_anchors is None:
            self.lecam_anchors = torch.zeros(2, device=next(self.d.parameters()).device)

    @property
    def sampler(self) -> ConditionalGenerator:
        """The generator whose weights are exported."""
        return self.ema.module if self.ema is not None else self.g

    def nets(self) -> dict[str, nn.Module]:
        """The networks by checkpoint name: generator, discriminator and (when used) the EMA generator."""
        ema = {"generator_ema": self.ema} if self.ema is not None else {}
        return {"generator": self.g, "discriminator": self.d, **ema}

    def wrap_ddp(self, device: torch.device) -> None:
        """DistributedDataParallel for G and for D's real+fake pair (BatchNorm statistics stay per rank:
        SyncBatchNorm needs a GPU; rank 0's buffers are broadcast before every checkpoint)."""
        self.g_train = distributed.wrap_ddp(self.g, device)
        self.d_pair = distributed.wrap_ddp(self.d_pair, device)


def ema_with_warmup(decay: float) -> Callable[[list, list, Any], None]:
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)), so early weights fade fast (as TF's EMA does)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
                a.copy_(c)

    return update


def build_training(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device) -> Models:
    """Networks, optimisers (Adam, two time-scale where configured) and the EMA copy, on `device`."""
    g, d = build_models(model_cfg)
    g.to(device)
    d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=train_cfg.lr_g, betas=train_cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=train_cfg.lr_d, betas=train_cfg.betas)
    ema = None
    if model_cfg.ema:
        ema = AveragedModel(g, multi_avg_fn=ema_with_warmup(train_cfg.ema_decay), use_buffers=True)
        ema.eval()
    return Models(g, d, opt_g, opt_d, ema)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _grad_norm(module: nn.Module) -> float:
    """Total L2 norm of a module's gradients."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


LECAM_DECAY = 0.99  # of the anchors' moving averages, as in Tseng et al. 2021


def lecam_term(real_logits: torch.Tensor, fake_logits: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021, arXiv:2104.03310): keeps D's real outputs from drifting above its
    average fake output and its fake outputs below its average real one, which bounds D on limited data. Updates
    `anchors` (real, fake) in place."""
    term = F.relu(real_logits - anchors[1]).pow(2).mean() + F.relu(anchors[0] - fake_logits).pow(2).mean()
    with torch.no_grad():
        anchors.mul_(LECAM_DECAY).add_((1 - LECAM_DECAY) * torch.stack([real_logits.mean(), fake_logits.mean()]))
    return term


def d_step(m: Models, loss: LossPair, real: torch.Tensor, labels: torch.Tensor, smoothing: float,
           want_norms: bool, augment: tuple[str, ...] = (), lecam: float = 0.0) -> dict[str, float]:
    """One discriminator update on a real batch and an equally sized fake batch of the same labels (plus the LeCam
    term at weight `lecam`)."""
    device = real.device
    with torch.no_grad(), _autocast(device):
        fake = m.g_train(m.g.sample_latent(real.shape[0], device=device), labels)
    with _autocast(device):
        real_logits, fake_logits = m.d_pair(diff_augment(real, augment), diff_augment(fake.detach(), augment),
                                            labels)
        d_loss = loss.d_loss(real_logits.float(), fake_logits.float(), smoothing)
        if lecam > 0:
            d_loss = d_loss + lecam * lecam_term(real_logits.float(), fake_logits.float(), m.lecam_anchors)
    m.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    out = {"d_loss": d_loss.detach(), "d_real": real_logits.detach().float().mean(),
           "d_fake": fake_logits.detach().float().mean()}
    if want_norms:
        out["d_grad_norm"] = _grad_norm(m.d)
    m.opt_d.step()
    return out


def g_step(m: Models, loss: LossPair, labels: torch.Tensor, want_norms: bool,
           augment: tuple[str, ...] = (), mode_seeking: float = 0.0) -> dict[str, float]:
    """One generator update against the current discriminator (through the same augmentation as D saw).

    With `mode_seeking` > 0 the two halves of the batch share their labels and the loss adds
    mode_seeking / (|G(z1, y) - G(z2, y)| / |z1 - z2|), which punishes a generator for ignoring its noise
    (Mao et al. 2019, MSGAN).
    """
    device = labels.device
    half = labels.shape[0] // 2
    if mode_seeking > 0 and half:
        labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])
    with _autocast(device):
        z = m.g.sample_latent(labels.shape[0], device=device)
        fake = m.g_train(z, labels)
        # The bare D: its gradients here are never applied (d_step clears them), so they need no all-reduce.
        g_loss = loss.g_loss(m.d(diff_augment(fake, augment), labels).float())
        out = {}
        if mode_seeking > 0 and half:
            ratio = (fake[:half] - fake[half:2 * half]).float().abs().flatten(1).mean(1) / \
                (z[:half] - z[half:2 * half]).abs().mean(1)
            ms = mode_seeking / (ratio.mean() + 1e-5)
            g_loss = g_loss + ms
            out["mode_seeking"] = ms.detach()
    m.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    out["g_loss"] = g_loss.detach()
    if want_norms:
        out["g_grad_norm"] = _grad_norm(m.g)
    m.opt_g.step()
    if m.ema is not None:
        m.ema.update_parameters(m.g)
    return out


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a stop saves a checkpoint first."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.reason is not None:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def epoch_order(labels: torch.Tensor, generator: torch.Generator, class_balance: bool = False) -> torch.Tensor:
    """One epoch's image indices: a permutation, or with `class_balance` as many draws with replacement, each
    class equally likely (the generator's labels follow the real batch, so a rare class would otherwise get
    almost no generator updates)."""
    if not class_balance:
        return torch.randperm(len(labels), generator=generator)
    weights = 1.0 / torch.bincount(labels).double()[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


@dataclass(frozen=True)
class ResolvedFit:
    """What a new fit trains: the architecture, its shape settings and the validated TrainConfig, with the default
    recipe's reasons (empty when the caller chose the architecture)."""

    arch: str
    resolution: int | None  # None: the folder's own
    width: int
    ema: bool
    train: TrainConfig
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        """The recipe's reasons, then one line of the resolved settings."""
        t = self.train
        budget = (f"{t.minutes:g} minutes" if t.minutes else f"{t.epochs} epochs") + \
            (f", at most {t.max_steps} steps" if t.max_steps else "")
        side = self.resolution or "the folder's own"
        line = (f"  fit: {self.arch}, width {self.width}, EMA {'on' if self.ema else 'off'}, "
                f"resolution {side}; {budget}, batch {t.batch_size}, loss {t.loss}, "
                f"lr {t.lr_g:g}/{t.lr_d:g}, DiffAugment {t.augment or 'off'}, mode seeking {t.mode_seeking:g}, "
                f"LeCam {t.lecam:g}, "
                f"class balance {'on' if t.class_balance else 'off'}, seed {t.seed}")
        return "\n".join([f"  {r}" for r in self.reasons] + [line])


def resolve_fit(data_dir: str | Path, settings: FitSettings, device: torch.device) -> ResolvedFit:
    """The one place fit settings are resolved: what the caller set, then the default recipe's choices (when no
    architecture is set), then the architecture's defaults."""
    user = settings.set()
    reasons: tuple[str, ...] = ()
    arch, resolution, ema, recipe_settings, recipe_width = settings.arch, settings.resolution, settings.ema, {}, None
    if arch is None:
        from synthaug.recipes import recipe_for_folder

        recipe = recipe_for_folder(data_dir, device, resolution, user)
        arch, resolution, reasons, recipe_settings = recipe.arch, recipe.resolution, recipe.reasons, recipe.settings
        ema, recipe_width = (recipe.ema if ema is None else ema), recipe.width
    spec = get_arch(arch)
    width = settings.width or recipe_width or spec.default_width
    values = {**spec.train_defaults, **recipe_settings, **settings.train_fields()}
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    if values.get("augment"):
        values["augment"] = ",".join(parse_policy(values["augment"]))
    get_loss(values.get("loss", TrainConfig.loss))
    return ResolvedFit(arch, resolution, width, spec.ema if ema is None else ema, TrainConfig(**values), reasons)


def fit(data_dir: str | Path, out: str | Path | None = None, settings: FitSettings | None = None, *,
        resume: bool = False, progress: bool = True, workers: int | None = None, latent_dim: int = 100,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None, **fields: Any) -> Path:
    """Train a class-conditional GAN on a labelled image folder and return the run folder.

    Args:
        data_dir: `root/<class>/<image>`, or a folder with a `train/` split.
        out: run folder (default `runs/<folder name>`).
        settings: what to train (`FitSettings`; `fields` set any of its fields on top, e.g. `arch="sngan"`,
            `max_steps=500`). Unset fields come from the default recipe (`synthaug.recipes.default_recipe`: with
            no architecture set, it picks architecture, resolution, DiffAugment, class balance and the epoch budget
            for the folder and device) and then the architecture's defaults, resolved once by `resolve_fit`,
            printed when `progress` and recorded in config.json.
        resume: continue the run in `out` from its last checkpoint (only the budget and device may change).

    Under `torchrun` every rank calls this; it joins the process group and trains with DistributedDataParallel
    (batch_size is per process; only rank 0 writes to `out`).
    """
    settings = fit_settings(settings, **fields)
    info = distributed.init_from_env(settings.device or "auto")
    data_dir = resolve_split(data_dir)
    out = Path(out) if out is not None else default_run_dir(data_dir)
    with output_lock(out) if info.is_main else nullcontext():
        return _fit_locked(data_dir, out, settings, info, resume, progress, workers, latent_dim, on_epoch)


def _fit_locked(data_dir: Path, out: Path, settings: FitSettings, info: Any, resume: bool, progress: bool,
                workers: int | None, latent_dim: int,
                on_epoch: Callable[[int, dict[str, float]], None] | None) -> Path:
    """`fit` while this process holds the run folder's lock."""
    if resume:
        cfg, resolved = _resumed_config(out, settings.train_fields()), None
    else:
        if (out / RUN_CONFIG).exists():
            raise SynthaugError(f"{out}: already holds a run; pass --resume to continue it or --out for a new one")
        resolved = resolve_fit(data_dir, settings, resolve_device(settings.device))
        cfg = None
        if progress and info.is_main:
            tqdm.write("fit settings (synthaug.train.resolve_fit):\n" + resolved.describe())
    distributed.barrier()  # every rank has checked `out` before rank 0 writes to it
    for turn in ("main", "others"):  # rank 0 decodes and fills the cache; the other ranks then read it
        if (turn == "main") == info.is_main:
            data = load_image_folder(data_dir, resolved.resolution if resolved else cfg.data.resolution,
                                     cfg.data.channels if cfg else None, workers=workers,
                                     progress=progress and info.is_main)
        distributed.barrier()
    if cfg is None:
        res, ch = int(data.images.shape[-1]), int(data.images.shape[1])
        cfg = RunConfig(
            data=DataConfig(str(data_dir.resolve()), res, ch, data.class_names, len(data)),
            model=ModelConfig(resolved.arch, res, ch, len(data.class_names), latent_dim, resolved.width,
                              resolved.ema),
            train=_batch_for(resolved.train, len(data), data_dir), synthaug_version=__version__,
            extra={"recipe": list(resolved.reasons)} if resolved.reasons else {})
    elif tuple(cfg.data.class_names) != data.class_names:
        raise SynthaugError(f"{data_dir}: classes {list(data.class_names)} differ from the run's "
                            f"{list(cfg.data.class_names)}")
    out.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        for stale in out.glob(".*.tmp"):  # left by a process killed mid-write; the real files are intact
            stale.unlink(missing_ok=True)
        atomic_write_text(out / RUN_CONFIG, run_config_to_json(cfg))
        if data.skipped:
            atomic_write_text(out / SKIPPED_FILES, json.dumps(list(data.skipped), indent=1))
    Trainer(cfg, data, out, progress, on_epoch).run(resume)
    return out


def _batch_for(train: TrainConfig, images: int, data_dir: Path) -> TrainConfig:
    """Epochs drop their last partial batch: a folder smaller than the batch would train no step at all, so the
    batch shrinks to the folder, with a warning that says so."""
    per_rank = max(1, images // max(1, distributed.current().world_size))
    if per_rank >= train.batch_size:
        return train
    warnings.warn(f"{data_dir}: {images} images, fewer than a batch of {train.batch_size}; training with batch "
                  f"{per_rank}", stacklevel=3)
    return dataclasses.replace(train, batch_size=per_rank)


def _resumed_config(out: Path, overrides: dict[str, Any]) -> RunConfig:
    """The run's saved config, with the budget settings a resume may change."""
    if not (out / TRAINING_STATE).is_file():
        raise CheckpointError(f"{out}: nothing to resume (no {TRAINING_STATE})")
    cfg = load_run_config(out)
    allowed = {"epochs", "minutes", "max_steps", "device"}
    changed = {k: v for k, v in overrides.items() if v is not None and v != getattr(cfg.train, k)}
    if set(changed) - allowed:
        raise SynthaugError(f"--resume keeps the run's settings; only {sorted(allowed)} may change "
                            f"(got {sorted(set(changed) - allowed)})")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changed))


def models_state(m: Models) -> dict[str, Any]:
    """The state dicts of both networks, their optimisers and the EMA copy."""
    state = {"generator": m.g.state_dict(), "discriminator": m.d.state_dict(),
             "opt_g": m.opt_g.state_dict(), "opt_d": m.opt_d.state_dict(), "lecam_anchors": m.lecam_anchors.cpu()}
    if m.ema is not None:
        state["generator_ema"] = m.ema.state_dict()
    return state


def load_models_state(m: Models, state: dict[str, Any], where: str, arch: str) -> None:
    """Restore what `models_state` saved; a mismatch is a one-line CheckpointError."""
    try:
        for net, key in ((m.g, "generator"), (m.d, "discriminator"), (m.opt_g, "opt_g"), (m.opt_d, "opt_d"),
                         *([(m.ema, "generator_ema")] if m.ema is not None else [])):
            net.load_state_dict(state[key])
        if "lecam_anchors" in state:  # checkpoints from before LeCam have none: zeros, as at the start
            m.lecam_anchors.copy_(state["lecam_anchors"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: does not match the run's architecture {arch!r} "
                              f"({str(exc).splitlines()[0][:160]})") from None


def rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) random states, for a checkpoint."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], cuda: bool) -> None:
    """Restore what `rng_state` saved (the CUDA states only when `cuda`: under DDP each rank reseeds instead)."""
    torch.set_rng_state(state["torch_rng"])
    if cuda and "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def rank_batch(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, start: int, global_batch: int,
               channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the global batch at `start` of the epoch's permutation, in [-1, 1].

    One permutation per epoch, the same on every rank; rank r keeps every world_size-th image from r (the
    interleaving DistributedSampler uses), so a resume with another world size continues at the same place.
    """
    info = distributed.current()
    idx = order[start + info.rank:start + global_batch:info.world_size]
    real = images[idx].float().div_(127.5).sub_(1.0)
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    return real, labels[idx]


class Trainer:
    """Holds the state of one run; `run()` trains until the epoch, step or time budget is spent."""

    def __init__(self, cfg: RunConfig, data: LabelledImages, out: Path, progress: bool,
                 on_epoch: Callable[[int, dict[str, float]], None] | None):
        self.cfg, self.out, self.on_epoch = cfg, out, on_epoch
        self.dist = distributed.current()
        self.progress = progress and self.dist.is_main
        self.device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.models = build_training(cfg.model, cfg.train, self.device)
        self.models.g.class_names = data.class_names
        self.loss = get_loss(cfg.train.loss)
        # The whole uint8 set moves to the device once; batches are gathered and normalised there.
        self.images = pin_if_cuda(data.images, self.device).to(self.device, non_blocking=True)
        self.labels = data.labels.to(self.device, non_blocking=True)
        self.order_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
        grid = fixed_grid_inputs(cfg.model.num_classes, self.models.g.sample_latent, cfg.train.seed)
        self.monitor = Monitor(out, cfg.data.class_names, cfg.train.loss, grid, self.dist.is_main)
        # images_in_epoch: images of this epoch's permutation already used, by all ranks together
        self.epoch = self.step = self.images_in_epoch = 0
        self.order_state = self.order_gen.get_state()
        self.recovery = Recovery(self.device)
        self.augment = parse_policy(cfg.train.augment)
        if cfg.train.channels_last:  # NHWC convolutions are ~1.9x faster on the CPU (oneDNN) and on tensor cores
            for net in (self.models.g, self.models.d):
                net.to(memory_format=torch.channels_last)
        if cfg.train.compile:
            self.models.g.compile()
            self.models.d.compile()
        if self.dist.enabled:
            self.models.wrap_ddp(self.device)
            distributed.reseed_noise(cfg.train.seed, self.step)

    @property
    def global_batch(self) -> int:
        """Images per step over all ranks: the per-process batch size times the world size."""
        return self.cfg.train.batch_size * self.dist.world_size

    @property
    def batch_in_epoch(self) -> int:
        """Steps taken in the current epoch (at the current world size)."""
        return self.images_in_epoch // self.global_batch

    @property
    def batches_per_epoch(self) -> int:
        """Steps in a whole epoch."""
        return max(1, self.images.shape[0] // self.global_batch)

    @property
    def sample_every(self) -> int:
        """Epochs between sample grids and snapshots (so a tiny data set does not write one every few steps)."""
        return self.cfg.train.sample_every or max(1, math.ceil(200 / self.batches_per_epoch))

    def state_dict(self) -> dict[str, Any]:
        """All that a resume needs, as plain tensors and dicts (loadable with weights_only=True)."""
        return {**models_state(self.models), "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "step": self.step, "images_in_epoch": self.images_in_epoch, "world_size": self.dist.world_size,
                "order_state": self.order_state, **rng_state(), "lr_halved": self.recovery.lr_halved,
                "config": run_config_to_json(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by `state_dict`."""
        load_models_state(self.models, state, f"{self.out / TRAINING_STATE}", self.cfg.model.arch)
        self.epoch, self.step = state["epoch"], state["step"]
        self.images_in_epoch = int(state.get("images_in_epoch", state["batch_in_epoch"] * self.cfg.train.batch_size))
        self.order_state = state["order_state"]
        self.recovery.lr_halved = bool(state.get("lr_halved", False))
        restore_rng_state(state, cuda=not self.dist.enabled)
        if self.dist.enabled:
            distributed.reseed_noise(self.cfg.train.seed, self.step)

    def save(self, full: bool = True) -> None:
        """Write the exportable generator and (when `full`) the training state, each atomically (rank 0 only;
        a full save is a collective call, so no rank reads a checkpoint that is still being written)."""
        if full:
            if self.dist.is_main:
                save_atomic(self.state_dict(), self.out / TRAINING_STATE)
            distributed.barrier()
            self.last_save = time.monotonic()
        if self.dist.is_main:
            save_generator(self.out / GENERATOR_FILE, self.cfg.model, self.cfg.data.class_names,
                           self.models.sampler.state_dict(), self.step, self.epoch)

    def end_of_epoch(self, means: dict[str, float]) -> None:
        """Monitoring and a generator snapshot every epoch; the full state every few minutes."""
        full = distributed.main_decides(time.monotonic() - self.last_save > CHECKPOINT_MINUTES * 60, self.device)
        if self.dist.is_main:
            self.monitor.epoch(self.models.sampler, self.epoch, self.step, means)
        self.save(full=full)
        if self.dist.is_main:
            (self.out / SNAPSHOTS).mkdir(exist_ok=True)
            shutil.copyfile(self.out / GENERATOR_FILE, self.out / SNAPSHOTS / f"epoch_{self.epoch:04d}.pt")

    def batches(self):
        """Yield (real images in [-1, 1], labels) for the rest of the current epoch (see `rank_batches`)."""
        self.order_gen.set_state(self.order_state)
        order = epoch_order(self.labels.cpu(), self.order_gen, self.cfg.train.class_balance).to(self.device)
        while self.images_in_epoch + self.global_batch <= self.images.shape[0]:
            yield rank_batch(self.images, self.labels, order, self.images_in_epoch, self.global_batch,
                             self.cfg.train.channels_last)

    def run(self, resume: bool) -> None:
        """Train until a budget is spent or a stop is requested, checkpointing as it goes."""
        if resume:
            self.load_state_dict(load_safe(self.out / TRAINING_STATE))
        t = self.cfg.train
        if resume and self.epoch >= t.epochs and self.dist.is_main:
            warnings.warn(f"{self.out}: already trained {self.epoch} of {t.epochs} epochs; pass a larger --epochs "
                          f"to train on", stacklevel=2)
        deadline = time.monotonic() + t.minutes * 60 if t.minutes else math.inf
        log = open(self.out / "log.jsonl" if self.dist.is_main else os.devnull, "a", encoding="utf-8")
        self.models.g.train()
        self.models.d.train()
        if not resume:
            self.save()  # a state to fall back on from the first step
        self.last_save = time.monotonic()
        with StopFlag() as stop, log:
            status = "done"
            while self.epoch < t.epochs and status != "stop":
                status, means = self._run_epoch(log, stop, deadline)
                if status == "done" and (self.epoch % self.sample_every == 0 or self.epoch == t.epochs):
                    self.end_of_epoch(means)
            self._finish(status, stop)

    def _finish(self, status: str, stop: StopFlag) -> None:
        """The last checkpoint (ranks agreed and checked first), the closing grid and animation."""
        m = self.models
        if self.dist.enabled:  # ranks agree on buffers before the last checkpoint, and are checked after it
            distributed.broadcast_buffers(list(m.nets().values()))
        self.save()
        if self.dist.enabled:
            distributed.check_in_sync(m.nets(), {"step": self.step, "global_batch": self.global_batch},
                                      self.out / "distributed.json")
        if self.dist.is_main:
            self.monitor.close(m.sampler, self.step, status == "stop" and self.batch_in_epoch > 0)
        if stop.reason:  # not a finished run: callers (the protocols) must not take it for one
            raise TrainingStopped(f"{self.out}: stopped by {stop.reason} at step {self.step}; checkpoint saved "
                                  f"(continue with --resume)")

    def _run_epoch(self, log, stop: StopFlag, deadline: float) -> tuple[str, dict[str, float]]:
        """Train on the rest of one epoch: 'done', 'stop' (budget or signal) or 'retry' (after a recovery),
        with the epoch's mean logged statistics."""
        t = self.cfg.train
        smoothing = t.label_smoothing if self.loss.uses_smoothing else 1.0
        bar = tqdm(total=self.batches_per_epoch, initial=self.batch_in_epoch, disable=not self.progress,
                   desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="batch", leave=False)
        sums: dict[str, float] = {}
        n = 0
        for real, labels in self.batches():
            want = self.step % LOG_EVERY == 0
            stats = self.recovery.step(lambda r, y, w: self._train_step(r, y, smoothing, w), real, labels, want)
            self.step += 1
            self.images_in_epoch += self.global_batch
            bar.update(1)
            row = {k: float(v) for k, v in stats.items()} if want else {}
            budget_spent = time.monotonic() > deadline or bool(t.max_steps and self.step >= t.max_steps)
            save_due = time.monotonic() - self.last_save > CHECKPOINT_MINUTES * 60 and self.dist.is_main
            nonfinite = not all(math.isfinite(v) for v in row.values())
            # every rank takes the same decision at the same step (a no-op in one process)
            stopping, nonfinite, save_due = distributed.any_rank(
                [bool(stop.reason) or budget_spent, nonfinite, save_due], self.device)
            if nonfinite:
                bar.close()
                restore = (lambda: self.load_state_dict(load_safe(self.out / TRAINING_STATE))) \
                    if (self.out / TRAINING_STATE).is_file() else None
                self.recovery.nonfinite(self.step, row, restore, [self.models.opt_g, self.models.opt_d])
                return "retry", {}
            if want:
                self.monitor.step(log, self.step, self.epoch, row)
                bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
                for k, v in row.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
            if stopping:
                bar.close()
                return "stop", {}
            if save_due:
                self.save()
        bar.close()
        self.epoch += 1
        self.images_in_epoch = 0
        self.order_state = self.order_gen.get_state()
        means = {k: v / max(n, 1) for k, v in sums.items()}
        if self.on_epoch is not None:
            self.on_epoch(self.epoch, means)
        return "done", means

    def _train_step(self, real: torch.Tensor, labels: torch.Tensor, smoothing: float,
                    want: bool) -> dict[str, Any]:
        """One pass of d_steps discriminator updates and one generator update."""
        t = self.cfg.train
        stats: dict[str, Any] = {}
        for _ in range(t.d_steps):
            stats.update(d_step(self.models, self.loss, real, labels, smoothing, want, self.augment, t.lecam))
        stats.update(g_step(self.models, self.loss, labels, want, self.augment, t.mode_seeking))
        return stats
