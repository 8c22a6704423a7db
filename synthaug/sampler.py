"""The one way to sample a trained generator: its files, the sampling settings and the teacher they need.

Export, `GeneratedDataset`, the benchmark's fresh pools and `tune` all draw through a `Sampler`; it is the only
place that loads generator files for sampling and decides whether a teacher is needed. The generation engine
(`synthaug.engine`) below it knows nothing of files or classifiers: the teacher reaches it as a function.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaug.classify import predict, teacher_budget, teacher_recipe, trained_on_real, weights_sha256
from synthaug.data.folder import LabelledImages, load_image_folder
from synthaug.config import SamplingConfig
from synthaug.device import resolve_device
from synthaug.errors import SynthaugError
from synthaug.engine import (Block, GenerationPlan, SampleFilter, balance_plan, class_balanced_plan,
                               iter_generated)
from synthaug.models import ConditionalGenerator
from synthaug.runs import generator_files, load_generator, read_sampling, sha256_file, training_folder


def resolve_sampling(source: str | Path, sampling: SamplingConfig | None,
                     overrides: Mapping[str, Any] | None = None) -> SamplingConfig:
    """The sampling settings to use: `sampling`, else the run's sampling.json, else the defaults; then `overrides`
    (the fields a caller set; None means not set)."""
    base = sampling or read_sampling(source) or SamplingConfig()
    changed = {k: v for k, v in (overrides or {}).items() if v is not None}
    return dataclasses.replace(base, **changed) if changed else base


def needs_teacher(sampling: SamplingConfig, soft: bool) -> bool:
    """Whether sampling this way needs a teacher: for soft labels, or for the confidence filter."""
    return soft or sampling.min_confidence is not None


def load_generators(source: str | Path, sampling: SamplingConfig,
                    device: str | torch.device = "cpu") -> list[ConditionalGenerator]:
    """The generator (or pool of snapshot generators) a source samples with."""
    gens = [load_generator(p, device) for p in generator_files(source, sampling.snapshots)]
    if any(g.class_names != gens[0].class_names or g.image_shape != gens[0].image_shape for g in gens):
        raise SynthaugError(f"{source}: the pooled snapshots differ in classes or image shape")
    return gens


def teacher_on(real: LabelledImages, steps: int | None, device: str | torch.device = "cpu", progress: bool = False,
               desc: str = "teacher", baseline: str | None = None) -> torch.nn.Module:
    """The soft-label and filter teacher: `teacher_recipe(steps, baseline)` trained (and cached) on the real images
    `real` (a training folder, or the training part of a validation split; never a test split); `steps` None:
    `teacher_budget` of the folder. The model's `trained_recipe` says which recipe made it."""
    steps = steps or teacher_budget(len(real))
    return trained_on_real(real, teacher_recipe(steps, baseline), device, progress, desc=desc)


def teacher_for_folder(real_dir: str | Path, image_shape: Sequence[int], class_names: Sequence[str],
                       steps: int | None, device: str | torch.device = "cpu", progress: bool = False,
                       baseline: str | None = None) -> torch.nn.Module:
    """`teacher_on` the real folder `real_dir` decoded at `image_shape` (C, H, W), whose classes must be
    `class_names` in that order."""
    data = load_image_folder(real_dir, image_shape[-1], image_shape[0], progress=progress)
    if set(data.class_names) != set(class_names):
        raise SynthaugError(f"{real_dir}: classes {list(data.class_names)} differ from the generator's "
                            f"{list(class_names)}")
    if data.class_names != tuple(class_names):
        raise SynthaugError(f"{real_dir}: class order differs from the generator's")
    return teacher_on(data, steps, device, progress, baseline=baseline)


def epoch_seed(seed: int, epoch: int) -> int:
    """The plan seed of a fresh epoch: epoch 0 is `seed` itself (an export with that seed), later epochs are
    well-mixed seeds of (seed, epoch)."""
    if epoch == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(epoch), 0x5EED]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Sampler:
    """A source's generators (one, or a pool of snapshots), its sampling settings and, when they need one, the
    teacher; plans and yields blocks through the one generation engine.

    `soft` adds the teacher's class probabilities to every block. The teacher is given (`teacher`), or trained on
    the real folder `real` (default: the run's training folder) when `needs_teacher` says so. A sampler pickles
    without its generators (DataLoader workers reload them on the CPU).
    """

    def __init__(self, source: str | Path, sampling: SamplingConfig | None = None, *,
                 device: str | torch.device = "cpu", soft: bool | None = None, teacher: torch.nn.Module | None = None,
                 real: str | Path | None = None, progress: bool = False):
        self.source = Path(source)
        self.sampling = resolve_sampling(source, sampling)
        self.soft = self.sampling.soft_labels if soft is None else soft
        self.device = resolve_device(device) if isinstance(device, str) else device
        self._generators: list[ConditionalGenerator] | None = load_generators(source, self.sampling, self.device)
        self.class_names: tuple[str, ...] = tuple(self.gen.class_names)  # the label order
        self.image_shape: tuple[int, ...] = tuple(self.gen.image_shape)  # (C, H, W) of the images it draws
        self.real: Path | None = None
        if teacher is None and needs_teacher(self.sampling, self.soft):
            self.real = Path(real) if real is not None else training_folder(source)
            teacher = teacher_for_folder(self.real, self.image_shape, self.class_names, self.sampling.teacher_steps,
                                         self.device, progress, self.sampling.teacher_baseline)
        self.teacher = teacher

    @property
    def generators(self) -> list[ConditionalGenerator]:
        """The pool (loaded again after unpickling)."""
        if self._generators is None:
            self._generators = load_generators(self.source, self.sampling, self.device)
        return self._generators

    @property
    def gen(self) -> ConditionalGenerator:
        """The first (or only) generator: shape and classes are the same for every one of a pool."""
        return self.generators[0]

    @functools.cached_property
    def generator_sha256(self) -> list[str]:
        """The SHA-256 of every generator file of the pool."""
        return [sha256_file(g.source_path) for g in self.generators]

    @functools.cached_property
    def teacher_sha256(self) -> str | None:
        """A digest of the teacher's weights (None without one)."""
        return weights_sha256(self.teacher) if self.teacher is not None else None

    def per_class_plan(self, per_class: int, seed: int, classes: Sequence[str] | None = None) -> GenerationPlan:
        """`per_class` images of each of `classes` (default all), with this sampler's latent settings."""
        s = self.sampling
        return class_balanced_plan(self.class_names, per_class, seed, self.image_shape, classes, s.truncation,
                                   s.latent_scale)

    def top_up_plan(self, counts: Mapping[str, int], seed: int, target: int | None = None) -> GenerationPlan:
        """Every class topped up from its real `counts` to `target` (default the largest count)."""
        s = self.sampling
        return balance_plan(self.class_names, dict(counts), seed, self.image_shape, target, s.truncation,
                            s.latent_scale)

    def new_filter(self) -> SampleFilter | None:
        """A fresh confidence filter (its own acceptance counts), or None when the settings have none."""
        if self.sampling.min_confidence is None:
            return None
        return SampleFilter(functools.partial(predict, self.teacher), self.sampling.min_confidence)

    def blocks(self, plan: GenerationPlan, *, sample_filter: SampleFilter | None = None, soft: bool | None = None,
               **engine: Any) -> Iterator[Block]:
        """The engine's blocks of `plan` (`engine`: batch_size, precision, compile, start_chunk, chunks); a new
        filter per call unless `sample_filter` is given; soft labels when `soft` (default: the sampler's own)."""
        keep = sample_filter if sample_filter is not None else self.new_filter()
        soft = self.soft if soft is None else soft
        if soft and self.teacher is None:
            raise SynthaugError(f"{self.source}: soft labels need a teacher (open the sampler with soft=True)")
        teacher = None
        if soft:  # the filter's own teacher where there is one: its probabilities of the kept images are reused
            teacher = keep.probabilities if keep is not None else functools.partial(predict, self.teacher)
        return iter_generated(self.generators, plan, sample_filter=keep, teacher=teacher, **engine)

    def epoch(self, plan: GenerationPlan, epoch: int) -> GenerationPlan:
        """`plan` with the seed of fresh epoch `epoch` (epoch 0 is the plan itself)."""
        return dataclasses.replace(plan, seed=epoch_seed(plan.seed, epoch))

    def remap_to(self, class_names: Sequence[str], where: str | Path) -> torch.Tensor:
        """Indices that turn this generator's labels into `class_names`' order (the same set of classes)."""
        if set(self.class_names) != set(class_names):
            raise SynthaugError(f"{where}: generator classes {list(self.class_names)} differ from the real folder's "
                                f"{list(class_names)}")
        return torch.tensor([list(class_names).index(c) for c in self.class_names])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_generators"] = None
        state["device"] = torch.device("cpu")
        return state
