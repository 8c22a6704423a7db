"""The one generation engine: deterministic plans, large batches, uint8 on the device, pinned async copies."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from synthaug.errors import SynthaugError, is_out_of_memory
from synthaug.models import ConditionalGenerator

CPU_BATCH = 16  # best measured on 2 CPU cores (benchmarks/bench_generation.py): small batches stay in cache
HOPELESS_ROUNDS = 10  # redraw rounds after which a class with no accepted image at all is given up
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtypes by name

Probabilities = Callable[[torch.Tensor], torch.Tensor]  # uint8 images (N, C, H, W) -> class probabilities (N, K)


def chunk_seed(seed: int, chunk: int, redraw: int = 0) -> int:
    """A well-mixed 63-bit seed for one chunk (and redraw round), so chunks draw independent noise."""
    key = [int(seed), int(chunk)] + ([int(redraw)] if redraw else [])
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))


def chunk_rows_for(image_shape: Sequence[int], target_bytes: int = 1 << 20) -> int:
    """Images per chunk: about `target_bytes` of uint8, a multiple of 64 (at least 64)."""
    per_image = int(np.prod(image_shape))
    return max(64, (target_bytes // per_image) // 64 * 64)


@dataclass(frozen=True)
class GenerationPlan:
    """Which label each output image has, split into fixed chunks whose noise depends only on (seed, chunk)."""

    labels: np.ndarray  # (N,) int64
    seed: int
    chunk_rows: int
    truncation: float | None = None
    latent_scale: float = 1.0

    @property
    def total(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_chunks(self) -> int:
        return -(-self.total // self.chunk_rows)

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """[start, stop) of chunk i."""
        return i * self.chunk_rows, min((i + 1) * self.chunk_rows, self.total)

    def counts(self) -> dict[int, int]:
        """Images per label."""
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}


def class_balanced_plan(class_names: Sequence[str], per_class: int, seed: int, image_shape: Sequence[int],
                        classes: Sequence[str] | None = None, truncation: float | None = None,
                        latent_scale: float = 1.0) -> GenerationPlan:
    """Exactly `per_class` images of each chosen class (all by default), class by class."""
    if per_class < 1:
        raise SynthaugError(f"per-class count must be at least 1 (got {per_class})")
    chosen = list(range(len(class_names)))
    if classes:
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            raise SynthaugError(f"unknown class(es) {unknown}; the generator knows {list(class_names)}")
        chosen = sorted(class_names.index(c) for c in dict.fromkeys(classes))
    labels = np.repeat(np.asarray(chosen, dtype=np.int64), per_class)
    return GenerationPlan(labels, seed, chunk_rows_for(image_shape), truncation, latent_scale)


def balance_plan(class_names: Sequence[str], counts: dict[str, int], seed: int, image_shape: Sequence[int],
                 target: int | None = None, truncation: float | None = None,
                 latent_scale: float = 1.0) -> GenerationPlan:
    """Top every class up to `target` images (default: the largest class's count) given its real `counts`."""
    unknown = set(counts) - set(class_names)
    if unknown:
        raise SynthaugError(f"classes {sorted(unknown)} of the real folder are unknown to the generator")
    target = target if target is not None else max(counts.values())
    need = [(class_names.index(c), target - counts.get(c, 0)) for c in class_names]
    labels = np.concatenate([np.full(max(n, 0), i, dtype=np.int64) for i, n in need])
    if labels.size == 0:
        raise SynthaugError(f"every class already has at least {target} images; nothing to top up")
    return GenerationPlan(labels, seed, chunk_rows_for(image_shape), truncation, latent_scale)


@dataclass
class SampleFilter:
    """Keep a sample only when `probabilities` (a teacher) gives its conditioning class >= `min_confidence`;
    rejected rows are redrawn with fresh noise (round r of chunk c seeded by (seed, c, r)) until accepted.

    `drawn` and `accepted` count per class what this process generated, for the acceptance rate.
    """

    probabilities: Probabilities
    min_confidence: float
    max_rounds: int = 200
    drawn: dict[int, int] = field(default_factory=dict)
    accepted: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_confidence < 1.0:
            raise SynthaugError(f"min-confidence must lie strictly between 0 and 1 (got {self.min_confidence})")

    def keep(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Boolean mask (CPU) of the rows to keep, counting draws and acceptances per class."""
        return self.judge(images, labels)[0]

    def judge(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`keep`'s mask and the teacher's probabilities (N, K) it was decided on."""
        probs = self.probabilities(images)
        ok = probs[torch.arange(len(labels)), labels] >= self.min_confidence
        for c, n in zip(*np.unique(labels.numpy(), return_counts=True)):
            self.drawn[int(c)] = self.drawn.get(int(c), 0) + int(n)
            self.accepted[int(c)] = self.accepted.get(int(c), 0) + int(ok[labels == c].sum())
        return ok, probs

    def acceptance(self) -> dict[int, float]:
        """Accepted / drawn per class."""
        return {c: self.accepted.get(c, 0) / n for c, n in sorted(self.drawn.items())}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to uint8 pixels (round half to even), computed where the images are."""
    return images.float().add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def draw_latent(gen: ConditionalGenerator, plan: GenerationPlan, n: int, rng: torch.Generator) -> torch.Tensor:
    """n latent vectors of the plan's prior: truncated (in the unit prior) first, then scaled."""
    z = gen.sample_latent(n, generator=rng, truncation=plan.truncation)
    return z if plan.latent_scale == 1.0 else z.mul_(plan.latent_scale)


def _chunk_inputs(gen: ConditionalGenerator, plan: GenerationPlan, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and labels of one chunk, drawn on the CPU so every device gets the same inputs."""
    start, stop = plan.chunk_bounds(chunk)
    rng = torch.Generator().manual_seed(chunk_seed(plan.seed, chunk))
    return draw_latent(gen, plan, stop - start, rng), torch.from_numpy(plan.labels[start:stop])


def default_batch_size(gen: ConditionalGenerator, device: torch.device) -> int:
    """The CPU's best measured batch, or on CUDA a large batch that fits in a quarter of free memory."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    per_image = 4 * int(np.prod(gen.image_shape)) * 64  # activations ~64x the output, fp32, a safe guess
    return int(max(256, min(16384, free // 4 // per_image)) // 256 * 256)


def has_convolutions(module: torch.nn.Module) -> bool:
    """Whether `module` has 2-d (transposed) convolutions, i.e. whether channels_last storage can matter."""
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in module.modules())


class Block(NamedTuple):
    """One chunk-aligned piece of generated output, in plan order."""

    first: int  # first chunk
    end: int  # one past the last chunk
    images: np.ndarray  # (n, C, H, W) uint8
    labels: np.ndarray  # (n,) int64
    soft: np.ndarray | None  # (n, K) float32 teacher probabilities, when a teacher was given


def _prepare(gen: ConditionalGenerator, channels_last: bool | None, compile: bool) -> ConditionalGenerator:
    """The generator in the engine's storage format (NHWC for convolutions), compiled when asked."""
    if channels_last is None:
        channels_last = has_convolutions(gen)
    if channels_last:
        gen = gen.to(memory_format=torch.channels_last)
    return torch.compile(gen) if compile else gen  # attributes (sample_latent, class_names, ...) still reach it


def iter_generated(gen: ConditionalGenerator | Sequence[ConditionalGenerator], plan: GenerationPlan,
                   batch_size: int | None = None, start_chunk: int = 0, precision: str = "fp32",
                   compile: bool = False, channels_last: bool | None = None,
                   sample_filter: SampleFilter | None = None, chunks: Sequence[int] | None = None,
                   teacher: Probabilities | None = None) -> Iterator[Block]:
    """Yield `Block`s (first chunk, end chunk, uint8 images, labels, teacher probabilities), chunk-aligned, in order.

    Each forward pass covers whole chunks or slices of one, so results do not depend on `batch_size` beyond
    kernel-level rounding; images are quantised on the device and only uint8 is copied to the host, into
    pinned buffers with non-blocking copies, one batch behind the compute on CUDA. A sequence of generators is a
    pool: chunk c is drawn by generator c mod len(pool). With `sample_filter`, rejected rows are redrawn chunk by
    chunk, so the output still depends only on (seed, chunk). `chunks` restricts the work to those chunk indices
    (a rank's share under torchrun). `channels_last` (default: when the generator has convolutions) stores
    activations NHWC, 1.4x faster on this project's CPU. `precision` bf16 or fp16 runs the generator under autocast
    (for GPUs; the images then differ slightly from fp32 ones), and `compile` runs it through torch.compile (worth
    its start-up time only for large exports). `teacher` (uint8 images to class probabilities, e.g. a
    classifier's `predict`) adds its probabilities of the final images.
    """
    pool = [gen] if isinstance(gen, ConditionalGenerator) else list(gen)
    device = next(pool[0].parameters()).device
    batch_size = batch_size or default_batch_size(pool[0], device)
    if precision not in PRECISIONS:
        raise SynthaugError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    pool = [_prepare(g, channels_last, compile) for g in pool]
    dtype = PRECISIONS[precision]
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    pending: tuple | None = None
    with torch.inference_mode(), cast:
        ids = list(range(start_chunk, plan.num_chunks)) if chunks is None else sorted(chunks)
        for first, end in _windows(plan, ids, batch_size, len(pool)):
            g = pool[first % len(pool)]
            zs, ys = zip(*(_chunk_inputs(g, plan, c) for c in range(first, end)))
            z, y = torch.cat(zs), torch.cat(ys)
            out, batch_size = _forward_uint8(g, z, y, batch_size, device)
            judged = []
            if sample_filter is not None:
                offset = 0
                for c, yc in zip(range(first, end), ys):
                    judged.append(_redraw_rejected(g, plan, c, out[offset:offset + len(yc)], yc, batch_size,
                                                   sample_filter))
                    offset += len(yc)
            soft = None
            if teacher is not None and sample_filter is not None and teacher is sample_filter.probabilities:
                soft = torch.cat(judged).numpy().astype(np.float32)  # the filter's teacher judged every kept row
            elif teacher is not None:
                soft = teacher(out).numpy().astype(np.float32)
            if device.type == "cuda":
                host = torch.empty(out.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(out, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                if pending is not None:
                    yield _finish(pending)
                pending = (first, end, host, y, soft, event)
            else:
                yield Block(first, end, out.numpy(), y.numpy(), soft)
        if pending is not None:
            yield _finish(pending)


def _forward_uint8(gen: ConditionalGenerator, z: torch.Tensor, y: torch.Tensor, batch_size: int,
                   device: torch.device) -> tuple[torch.Tensor, int]:
    """Generate in batches and quantise on the device: uint8 (N, C, H, W) on the device, and the batch size used.

    A batch that runs the device out of memory is retried at half the size, which then stays (the output does not
    depend on the batch size), with a warning.
    """
    pieces, i = [], 0
    while i < z.shape[0]:
        zb, yb = z[i:i + batch_size], y[i:i + batch_size]
        try:
            out = gen(zb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
            pieces.append(to_uint8(out).contiguous())  # NCHW again (uint8: a cheap copy) for the writers
            i += zb.shape[0]
            continue
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc) or batch_size == 1:
                raise
        # Retried here, not inside `except`: the live exception's traceback would keep the failed batch's
        # activations allocated.
        if device.type == "cuda":
            torch.cuda.empty_cache()
        warnings.warn(f"out of memory on {device} at batch {batch_size}; continuing with {batch_size // 2}",
                      stacklevel=2)
        batch_size //= 2
    return torch.cat(pieces), batch_size


def _redraw_rejected(gen: ConditionalGenerator, plan: GenerationPlan, chunk: int, images: torch.Tensor,
                     labels: torch.Tensor, batch_size: int, sample_filter: SampleFilter) -> torch.Tensor:
    """Replace, in place, the rows of one chunk that the filter rejects, round by round, until all pass; return
    the filter teacher's probabilities (N, K) of the rows kept."""
    todo = torch.arange(len(labels))
    kept: torch.Tensor | None = None
    for redraw in range(1, sample_filter.max_rounds + 1):
        ok, probs = sample_filter.judge(images[todo.to(images.device)], labels[todo])
        if kept is None:
            kept = torch.empty(len(labels), probs.shape[1])
        kept[todo[ok]] = probs[ok].float().cpu()
        todo = todo[~ok]
        if todo.numel() == 0:
            return kept
        if redraw >= HOPELESS_ROUNDS and any(sample_filter.accepted.get(int(c), 0) == 0 for c in labels[todo].unique()):
            break  # a class none of whose many draws passed will not pass in the remaining rounds either
        rng = torch.Generator().manual_seed(chunk_seed(plan.seed, chunk, redraw))
        z = draw_latent(gen, plan, todo.numel(), rng)
        images[todo.to(images.device)] = _forward_uint8(gen, z, labels[todo], batch_size, images.device)[0]
    rates = sample_filter.acceptance()
    worst = min(rates, key=rates.get)
    raise SynthaugError(f"min-confidence {sample_filter.min_confidence}: after {sample_filter.max_rounds} draws "
                        f"some images of class {gen.class_names[worst]!r} still fail (its acceptance rate is "
                        f"{100 * rates[worst]:.2f}%); lower --min-confidence")


def _finish(pending: tuple) -> Block:
    """Wait for a pending device-to-host copy and hand out its arrays."""
    first, end, host, y, soft, event = pending
    event.synchronize()
    return Block(first, end, host.numpy(), y.numpy(), soft)


def _windows(plan: GenerationPlan, ids: Sequence[int], batch_size: int, pool: int = 1) -> Iterator[tuple[int, int]]:
    """Runs of consecutive chunk indices from `ids` holding about `batch_size` images (at least one chunk); with a
    pool of generators, one chunk per window (consecutive chunks belong to different generators)."""
    per_window = 1 if pool > 1 else max(1, batch_size // plan.chunk_rows)
    i = 0
    while i < len(ids):
        j = i + 1
        while j < len(ids) and j - i < per_window and ids[j] == ids[j - 1] + 1:
            j += 1
        yield ids[i], ids[j - 1] + 1
        i = j


def generate(gen: ConditionalGenerator, labels: torch.Tensor | np.ndarray, seed: int = 0,
             batch_size: int | None = None, truncation: float | None = None,
             latent_scale: float = 1.0) -> torch.Tensor:
    """Generate uint8 images (N, C, H, W) for the given labels, deterministically for a seed."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= gen.num_classes):
        raise SynthaugError(f"labels must lie in [0, {gen.num_classes})")
    plan = GenerationPlan(labels, seed, chunk_rows_for(gen.image_shape), truncation, latent_scale)
    parts = [torch.from_numpy(block.images) for block in iter_generated(gen, plan, batch_size)]
    return torch.cat(parts) if parts else torch.empty((0, *gen.image_shape), dtype=torch.uint8)
