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
from torch import nn
from torch.optim.swa_utils import AveragedModel
import numpy as np
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from synthaug import distributed
from synthaug._version import __version__
from synthaug.device import resolve_device
from synthaug.augment import diff_augment, parse_policy
from synthaug.runs import GENERATOR_FILE, SNAPSHOTS, TRAINING_STATE, load_safe, save_atomic, save_generator
from synthaug.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_run_config, run_config_to_json
from synthaug.data.folder import SPLIT_NAMES, LabelledImages, load_image_folder, resolve_split
from synthaug.errors import CheckpointError, SynthaugError, is_out_of_memory
from synthaug.fsutil import atomic_path, atomic_write_text
from synthaug.losses import LossPair, get_loss
from synthaug.models import DEFAULT_ARCH, ConditionalGenerator, build_models, get_arch
from synthaug.plots import grid_animation, training_curves

LOG_EVERY = 25
CHECKPOINT_MINUTES = 5.0
COLLAPSE_DIVERSITY = 0.02  # RMS pixel distance in [0, 1]; real Fashion-MNIST classes sit near 0.3


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

    def __post_init__(self) -> None:
        self.g_train = self.g_train or self.g
        self.d_pair = self.d_pair or DiscriminatorPair(self.d)

    @property
    def sampler(self) -> ConditionalGenerator:
        """The generator whose weights are exported."""
        return self.ema.module if self.ema is not None else self.g


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


def d_step(m: Models, loss: LossPair, real: torch.Tensor, labels: torch.Tensor, smoothing: float,
           want_norms: bool, augment: tuple[str, ...] = ()) -> dict[str, float]:
    """One discriminator update on a real batch and an equally sized fake batch of the same labels."""
    device = real.device
    with torch.no_grad(), _autocast(device):
        fake = m.g_train(m.g.sample_latent(real.shape[0], device=device), labels)
    with _autocast(device):
        real_logits, fake_logits = m.d_pair(diff_augment(real, augment), diff_augment(fake.detach(), augment),
                                            labels)
        d_loss = loss.d_loss(real_logits.float(), fake_logits.float(), smoothing)
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


def fixed_grid_inputs(num_classes: int, latent: Callable[..., torch.Tensor], seed: int, per_row: int = 10):
    """Fixed noise and labels for the per-epoch grid: one row per class."""
    gen = torch.Generator().manual_seed(seed + 7919)
    z = latent(num_classes * per_row, generator=gen)
    labels = torch.arange(num_classes).repeat_interleave(per_row)
    return z, labels


@torch.inference_mode()
def save_sample_grid(g: ConditionalGenerator, z: torch.Tensor, labels: torch.Tensor, path: Path,
                     per_row: int = 10) -> torch.Tensor:
    """Write a PNG grid of samples, one row per class; return the grid's images in [0, 1]."""
    from PIL import Image

    was_training = g.training
    g.eval()
    device = next(g.parameters()).device
    images = g(z.to(device), labels.to(device)).float().cpu()
    g.train(was_training)
    images = ((images + 1) / 2).clamp(0, 1)
    grid = make_grid(images, nrow=per_row, padding=2, pad_value=1.0)
    arr = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0]).save(tmp, format="PNG")
    return images


def class_diversity(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Mean pairwise RMS pixel distance between samples of each class (near 0: the class has collapsed)."""
    flat = images.flatten(1).float()
    out = []
    for c in range(num_classes):
        x = flat[labels == c]
        if len(x) < 2:
            out.append(float("nan"))
            continue
        d = torch.cdist(x, x) / flat.shape[1] ** 0.5
        out.append(float(d.sum() / (len(x) * (len(x) - 1))))
    return out


def tensorboard_writer(out: Path):
    """A SummaryWriter into OUT/tensorboard when the optional `tensorboard` extra is installed, else None."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _resolve_train_config(arch: str, overrides: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the architecture's defaults, overridden by what the caller set (None = not set)."""
    values = dict(get_arch(arch).train_defaults)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    if "augment" in values:
        values["augment"] = ",".join(parse_policy(values["augment"]))
    get_loss(values.get("loss", TrainConfig.loss))
    return TrainConfig(**values)


def fit(data_dir: str | Path, out: str | Path | None = None, *, arch: str = DEFAULT_ARCH,
        resolution: int | None = None, resume: bool = False, progress: bool = True, workers: int | None = None,
        width: int = 0, latent_dim: int = 100, ema: bool | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None, **train_settings: Any) -> Path:
    """Train a class-conditional GAN on a labelled image folder and return the run folder.

    Args:
        data_dir: `root/<class>/<image>`, or a folder with a `train/` split.
        out: run folder (default `runs/<folder name>`).
        arch: architecture name (see `synthaug.models.list_archs()`).
        resolution: side length (default: the folder's own, rounded to a supported size).
        resume: continue the run in `out` from its last checkpoint.
        **train_settings: any field of `TrainConfig` (epochs, minutes, batch_size, seed, device, lr_g, ...).

    Under `torchrun` every rank calls this; it joins the process group and trains with DistributedDataParallel
    (batch_size is per process; only rank 0 writes to `out`).
    """
    unknown = set(train_settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise SynthaugError(f"unknown training settings: {sorted(unknown)}")
    info = distributed.init_from_env(train_settings.get("device") or "auto")
    data_dir = resolve_split(data_dir)
    out = Path(out) if out is not None else default_run_dir(data_dir)
    if resume:
        cfg = _resumed_config(out, train_settings)
    else:
        if (out / "config.json").exists():
            raise SynthaugError(f"{out}: already holds a run; pass --resume to continue it or --out for a new one")
        get_arch(arch)
        cfg = None
    distributed.barrier()  # every rank has checked `out` before rank 0 writes to it
    for turn in ("main", "others"):  # rank 0 decodes and fills the cache; the other ranks then read it
        if (turn == "main") == info.is_main:
            data = load_image_folder(data_dir, resolution or (cfg.data.resolution if cfg else None),
                                     cfg.data.channels if cfg else None, workers=workers,
                                     progress=progress and info.is_main)
        distributed.barrier()
    if cfg is None:
        cfg = RunConfig(
            data=DataConfig(str(data_dir.resolve()), int(data.images.shape[-1]), int(data.images.shape[1]),
                            data.class_names, len(data)),
            model=ModelConfig(arch, int(data.images.shape[-1]), int(data.images.shape[1]), len(data.class_names),
                              latent_dim, width or get_arch(arch).default_width,
                              get_arch(arch).ema if ema is None else ema),
            train=_resolve_train_config(arch, train_settings),
            synthaug_version=__version__)
    elif tuple(cfg.data.class_names) != data.class_names:
        raise SynthaugError(f"{data_dir}: classes {list(data.class_names)} differ from the run's "
                            f"{list(cfg.data.class_names)}")
    out.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        for stale in out.glob(".*.tmp"):  # left by a process killed mid-write; the real files are intact
            stale.unlink(missing_ok=True)
        atomic_write_text(out / "config.json", run_config_to_json(cfg))
        if data.skipped:
            atomic_write_text(out / "skipped_files.json", json.dumps(list(data.skipped), indent=1))
    Trainer(cfg, data, out, progress, on_epoch).run(resume)
    return out


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
        self.loss_name = cfg.train.loss
        images = data.images
        if self.device.type == "cuda":
            images = images.pin_memory()
        # The whole uint8 set moves to the device once; batches are gathered and normalised there.
        self.images = images.to(self.device, non_blocking=True)
        self.labels = data.labels.to(self.device, non_blocking=True)
        self.order_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.grid_z, self.grid_labels = fixed_grid_inputs(cfg.model.num_classes, self.models.g.sample_latent,
                                                          cfg.train.seed)
        self.epoch = 0
        self.images_in_epoch = 0  # images of this epoch's permutation already used, by all ranks together
        self.step = 0
        self.order_state = self.order_gen.get_state()
        self.lr_halved = False
        self.halves = False  # set once a batch runs out of memory: batches then train as two halves
        self.augment = parse_policy(cfg.train.augment)
        self.tb = tensorboard_writer(out) if self.dist.is_main else None
        if cfg.train.channels_last:
            # NHWC convolutions are ~1.9x faster on the CPU (oneDNN) and on tensor cores.
            for net in (self.models.g, self.models.d):
                net.to(memory_format=torch.channels_last)
        if cfg.train.compile:
            self.models.g.compile()
            self.models.d.compile()
        if self.dist.enabled:
            self._wrap_ddp()

    def _wrap_ddp(self) -> None:
        """DistributedDataParallel for G and for D's real+fake pair; each rank draws its own noise."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        m = self.models
        # BatchNorm statistics stay per rank (SyncBatchNorm needs a GPU); DDP broadcasts rank 0's buffers.
        m.g_train = DDP(m.g, device_ids=ids)
        m.d_pair = DDP(m.d_pair, device_ids=ids)
        self._reseed_noise()

    def _reseed_noise(self) -> None:
        """A noise stream per (seed, step, rank), so ranks do not draw the same latents."""
        seed = int(np.random.SeedSequence([self.cfg.train.seed, self.step, self.dist.rank]).generate_state(1)[0])
        torch.manual_seed(seed)

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
        return max(1, self.images.shape[0] // self.global_batch)

    @property
    def sample_every(self) -> int:
        """Epochs between sample grids and snapshots (so a tiny data set does not write one every few steps)."""
        return self.cfg.train.sample_every or max(1, math.ceil(200 / self.batches_per_epoch))

    def state_dict(self) -> dict[str, Any]:
        """All that a resume needs, as plain tensors and dicts (loadable with weights_only=True)."""
        m = self.models
        state = {"generator": m.g.state_dict(), "discriminator": m.d.state_dict(),
                 "opt_g": m.opt_g.state_dict(), "opt_d": m.opt_d.state_dict(),
                 "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                 "images_in_epoch": self.images_in_epoch, "world_size": self.dist.world_size,
                 "order_state": self.order_state, "torch_rng": torch.get_rng_state(),
                 "lr_halved": self.lr_halved, "config": run_config_to_json(self.cfg)}
        if m.ema is not None:
            state["generator_ema"] = m.ema.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by `state_dict`."""
        m = self.models
        try:
            m.g.load_state_dict(state["generator"])
            m.d.load_state_dict(state["discriminator"])
            m.opt_g.load_state_dict(state["opt_g"])
            m.opt_d.load_state_dict(state["opt_d"])
            if m.ema is not None:
                m.ema.load_state_dict(state["generator_ema"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.out / TRAINING_STATE}: does not match the run's architecture "
                                  f"{self.cfg.model.arch!r} ({str(exc).splitlines()[0][:160]})") from None
        self.epoch, self.step = state["epoch"], state["step"]
        self.images_in_epoch = int(state.get("images_in_epoch", state["batch_in_epoch"] * self.cfg.train.batch_size))
        self.order_state = state["order_state"]
        self.lr_halved = bool(state.get("lr_halved", False))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available() and not self.dist.enabled:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.dist.enabled:
            self._reseed_noise()

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics drift apart between DDP's broadcasts)."""
        import torch.distributed as dist

        m = self.models
        for net in (m.g, m.d, *([m.ema] if m.ema is not None else [])):
            for buf in net.buffers():
                dist.broadcast(buf.data, src=0)

    def _check_ranks_in_sync(self) -> None:
        """Compare G, D and EMA weights across ranks; rank 0 records the result in distributed.json."""
        import torch.distributed as dist

        m = self.models
        nets = {"generator": m.g, "discriminator": m.d, **({"generator_ema": m.ema} if m.ema is not None else {})}
        mine = {name: [float(v.detach().double().sum()) for v in net.state_dict().values() if v.is_floating_point()]
                for name, net in nets.items()}
        everyone: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(everyone, mine)
        in_sync = {name: all(r[name] == everyone[0][name] for r in everyone) for name in nets}
        if self.dist.is_main:
            atomic_write_text(self.out / "distributed.json", json.dumps(
                {"world_size": self.dist.world_size, "backend": dist.get_backend(), "step": self.step,
                 "global_batch": self.global_batch, "in_sync": in_sync,
                 "checksums": {name: [sum(r[name]) for r in everyone] for name in nets}}, indent=1))
        if not all(in_sync.values()):
            raise SynthaugError(f"ranks disagree on {[k for k, v in in_sync.items() if not v]} after step {self.step}")

    def _decide(self, main_says: bool) -> bool:
        """Rank 0's decision, known to every rank (time-based choices would otherwise differ between ranks)."""
        return distributed.any_rank([main_says and self.dist.is_main], self.device)[0]

    def save(self, full: bool = True) -> None:
        """Write the exportable generator and (when `full`) the training state, each atomically (rank 0 only;
        a full save is a collective call, so no rank reads a checkpoint that is still being written)."""
        if full:
            if self.dist.is_main:
                save_atomic(self.state_dict(), self.out / TRAINING_STATE)
            distributed.barrier()
            self.last_save = time.monotonic()
        if not self.dist.is_main:
            return
        save_generator(self.out / GENERATOR_FILE, self.cfg.model, self.cfg.data.class_names,
                       self.models.sampler.state_dict(), self.step, self.epoch)

    def end_of_epoch(self, means: dict[str, float]) -> None:
        """Sample grid, diversity, curves and a small generator snapshot every epoch; the full state every
        few minutes."""
        full = self._decide(time.monotonic() - self.last_save > CHECKPOINT_MINUTES * 60)
        if not self.dist.is_main:
            self.save(full=full)
            return
        images = save_sample_grid(self.models.sampler, self.grid_z, self.grid_labels,
                                  self.out / "samples" / f"epoch_{self.epoch:04d}.png")
        diversity = class_diversity(images, self.grid_labels, self.cfg.model.num_classes)
        collapsed = [self.cfg.data.class_names[c] for c, d in enumerate(diversity) if d < COLLAPSE_DIVERSITY]
        if collapsed:
            warnings.warn(f"epoch {self.epoch}: samples of {collapsed} barely differ (diversity < "
                          f"{COLLAPSE_DIVERSITY}); the generator may be collapsing", stacklevel=2)
        if self.loss_name in ("bce", "hinge") and means.get("d_fake", 0.0) < -6.0 and \
                means.get("d_real", 0.0) - means.get("d_fake", 0.0) > 8.0:
            warnings.warn(f"epoch {self.epoch}: the discriminator wins outright (mean D(real) {means['d_real']:.1f}, "
                          f"D(fake) {means['d_fake']:.1f}): the generator's gradients vanish; lower --lr-d, add "
                          f"--augment, or try --loss hinge", stacklevel=2)
        row = {"epoch": self.epoch, "step": self.step, **means, "diversity_per_class": diversity}
        with open(self.out / "epochs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        training_curves(self.out / "log.jsonl", self.out / "epochs.jsonl", self.out / "curves.png")
        if self.tb is not None:
            self.tb.add_image("samples", make_grid(images, nrow=10, padding=2, pad_value=1.0), self.step)
            for name, d in zip(self.cfg.data.class_names, diversity):
                self.tb.add_scalar(f"diversity/{name}", d, self.step)
            self.tb.flush()
        self.save(full=full)
        (self.out / SNAPSHOTS).mkdir(exist_ok=True)
        shutil.copyfile(self.out / GENERATOR_FILE, self.out / SNAPSHOTS / f"epoch_{self.epoch:04d}.pt")

    def batches(self):
        """Yield (real images in [-1, 1], labels) for the rest of the current epoch.

        One permutation per epoch, the same on every rank; each step takes the next global batch and rank r
        keeps every world_size-th image from r (the interleaving DistributedSampler uses), so a resume with
        another world size continues at the same place in the permutation.
        """
        self.order_gen.set_state(self.order_state)
        order = epoch_order(self.labels.cpu(), self.order_gen, self.cfg.train.class_balance).to(self.device)
        gb, world, rank = self.global_batch, self.dist.world_size, self.dist.rank
        while self.images_in_epoch + gb <= self.images.shape[0]:
            idx = order[self.images_in_epoch + rank:self.images_in_epoch + gb:world]
            real = self.images[idx].float().div_(127.5).sub_(1.0)
            if self.cfg.train.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            yield real, self.labels[idx]

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
            if self.dist.enabled:
                self._sync_buffers()
            self.save()
            if self.dist.enabled:
                self._check_ranks_in_sync()
            if not self.dist.is_main:
                return
            if status == "stop" and self.batch_in_epoch:
                save_sample_grid(self.models.sampler, self.grid_z, self.grid_labels,
                                 self.out / "samples" / f"step_{self.step:07d}.png")
            grid_animation(sorted((self.out / "samples").glob("epoch_*.png")), self.out / "samples.gif")
            if self.tb is not None:
                self.tb.close()
            if stop.reason:
                warnings.warn(f"stopped by {stop.reason}; checkpoint saved in {self.out}", stacklevel=2)

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
            stats = self._train_step_or_halves(real, labels, smoothing, want)
            self.step += 1
            self.images_in_epoch += self.global_batch
            bar.update(1)
            row = {k: float(v) for k, v in stats.items()} if want else {}
            budget_spent = time.monotonic() > deadline or bool(t.max_steps and self.step >= t.max_steps)
            save_due = time.monotonic() - self.last_save > CHECKPOINT_MINUTES * 60 and self.dist.is_main
            nonfinite = not all(math.isfinite(v) for v in row.values())
            if self.dist.enabled:  # every rank takes the same decision at the same step
                stopping, nonfinite, save_due = distributed.any_rank(
                    [bool(stop.reason) or budget_spent, nonfinite, save_due], self.device)
            else:
                stopping = bool(stop.reason) or budget_spent
            if nonfinite:
                bar.close()
                self._recover(row)
                return "retry", {}
            if want:
                log.write(json.dumps({"step": self.step, "epoch": self.epoch, **row}) + "\n")
                log.flush()
                if self.tb is not None:
                    for k, v in row.items():
                        self.tb.add_scalar(f"train/{k}", v, self.step)
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
        """The D step(s) and the G step on one batch (as two halves once a batch has run out of memory)."""
        if self.halves and real.shape[0] > 1:
            h = real.shape[0] // 2
            self._train_step_plain(real[:h], labels[:h], smoothing, False)
            return self._train_step_plain(real[h:], labels[h:], smoothing, want)
        return self._train_step_plain(real, labels, smoothing, want)

    def _train_step_plain(self, real: torch.Tensor, labels: torch.Tensor, smoothing: float,
                          want: bool) -> dict[str, Any]:
        """One pass of d_steps discriminator updates and one generator update."""
        t = self.cfg.train
        stats: dict[str, Any] = {}
        for _ in range(t.d_steps):
            stats.update(d_step(self.models, self.loss, real, labels, smoothing, want, self.augment))
        stats.update(g_step(self.models, self.loss, labels, want, self.augment, t.mode_seeking))
        return stats

    def _train_step_or_halves(self, real: torch.Tensor, labels: torch.Tensor, smoothing: float,
                              want: bool) -> dict[str, Any]:
        """One training step; out of memory, every batch from then on trains as two half batches (with a warning).
        A second failure, or one at batch 1, stops with one line (the last checkpoint is intact)."""
        try:
            return self._train_step(real, labels, smoothing, want)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
        # Retried here, not inside `except`: the live exception's traceback would keep the activations allocated.
        if self.halves or real.shape[0] < 2:
            raise SynthaugError(f"out of memory at batch {real.shape[0]} on {self.device}; "
                                f"resume with a smaller --batch-size")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.halves = True
        warnings.warn(f"out of memory on {self.device} at batch {real.shape[0]}: each batch now trains as two "
                      f"updates on {real.shape[0] // 2} images", stacklevel=2)
        return self._train_step(real, labels, smoothing, want)

    def _recover(self, row: dict[str, float]) -> None:
        """A non-finite loss: restore the last checkpoint and halve the learning rates once, else stop."""
        if self.lr_halved or not (self.out / TRAINING_STATE).is_file():
            raise SynthaugError(f"training diverged at step {self.step} (losses {row}); "
                                f"lower the learning rates or try another --loss")
        warnings.warn(f"non-finite loss at step {self.step}; restoring the last checkpoint with halved "
                      f"learning rates", stacklevel=2)
        self.load_state_dict(load_safe(self.out / TRAINING_STATE))
        for opt in (self.models.opt_g, self.models.opt_d):
            for group in opt.param_groups:
                group["lr"] *= 0.5
        self.lr_halved = True
