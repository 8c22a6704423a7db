"""Exports: HDF5 (the contract in data/h5format.py) or an ImageFolder tree; resumable, atomic, pipelined."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthaug import distributed
from synthaug._version import __version__
from synthaug.config import ExportConfig, SamplingConfig
from synthaug.data.folder import scan_folder
from synthaug.data.names import inside
from synthaug.data.h5format import (H5_SUFFIXES, IMAGES, LABELS, PLAN_ATTR, PROGRESS_ATTR, SOFT_LABELS, create_export,
                                    finish_export, validate_export)
from synthaug.device import resolve_device
from synthaug.errors import SynthaugError
from synthaug.fsutil import output_lock
from synthaug.engine import Block, GenerationPlan, SampleFilter
from synthaug.models import ConditionalGenerator
from synthaug.registry import Registry
from synthaug.sampler import Sampler, resolve_sampling

FOLDER_PROVENANCE = ".synthaug-provenance.json"  # marks a folder as a synthaug export (what --overwrite may replace)


WRITERS: Registry[Callable[[ExportJob], None]] = Registry("export format")


def export_format(out: str | Path, fmt: str | None = None) -> str:
    """'hdf5' for .h5/.hdf5 paths, else 'folder', unless given."""
    if fmt:
        WRITERS.get(fmt)
        return fmt
    return "hdf5" if Path(out).suffix.lower() in H5_SUFFIXES else "folder"


def partial_path(out: Path) -> Path:
    """Where an export is built before it is renamed into place."""
    return out.with_name(f".{out.name}.partial")


def plan_key(plan: GenerationPlan, checkpoint_sha: str, min_confidence: float | None = None,
             precision: str = "fp32", teacher_sha: str | None = None, soft_labels: bool = False) -> str:
    """Identifies an export's content: a resume must match it exactly."""
    h = hashlib.sha256(plan.labels.tobytes())
    key = {"labels_sha256": h.hexdigest(), "seed": plan.seed, "chunk_rows": plan.chunk_rows,
           "truncation": plan.truncation, "checkpoint_sha256": checkpoint_sha}
    # Settings at their old defaults add nothing, so exports made before they existed keep their keys and resumes.
    if precision != "fp32":
        key["precision"] = precision
    if plan.latent_scale != 1.0:
        key["latent_scale"] = plan.latent_scale
    if min_confidence is not None:
        key.update(min_confidence=min_confidence, classifier_sha256=teacher_sha)
    if soft_labels:
        key["soft_labels_teacher_sha256"] = teacher_sha
    return json.dumps(key, sort_keys=True)


@dataclass
class ExportJob:
    """Everything a writer needs: the sampler, the plan, where to write and how."""

    sampler: Sampler
    plan: GenerationPlan
    out: Path
    key: str
    provenance: dict[str, Any]
    config: ExportConfig
    progress: bool
    sample_filter: SampleFilter | None = None

    @property
    def gen(self) -> ConditionalGenerator:
        """The first (or only) generator: shape and class names are the same for every one of a pool."""
        return self.sampler.gen

    @property
    def soft(self) -> bool:
        """Whether the export stores the teacher's soft labels."""
        return self.sampler.soft

    def blocks(self, **where: Any) -> Iterator[Block]:
        """The generation engine over this job's plan (`where`: start_chunk or chunks)."""
        c = self.config
        return self.sampler.blocks(self.plan, sample_filter=self.sample_filter, batch_size=c.batch_size,
                                   precision=c.precision, compile=c.compile, **where)


def export_plan(sampler: Sampler, config: ExportConfig, out: Path) -> GenerationPlan:
    """The generation plan an export config asks for: per class, or a top-up of a real folder; checked against the
    disk under `out` before its labels are allocated."""
    if config.per_class is not None:
        classes = len(set(config.classes)) if config.classes else len(sampler.class_names)
        check_export_size(config.per_class * classes, sampler.image_shape, out)
    if config.balance_to is not None:
        index = scan_folder(config.balance_to)
        counts = {name: index.labels.count(i) for i, name in enumerate(index.class_names)}
        return sampler.top_up_plan(counts, config.seed, config.target)
    return sampler.per_class_plan(config.per_class, config.seed, config.classes)


def export(source: str | Path, out: str | Path, config: ExportConfig | None = None, *, progress: bool = True,
           stats: dict[str, Any] | None = None) -> Path:
    """Generate a class-balanced synthetic data set from a run or generator file and write it to `out`.

    Same seed, same images and labels, whatever the batch size. The output appears only when complete; an
    interrupted export leaves `.<name>.partial` beside it, which `config.resume` continues. Under `torchrun`
    (HDF5 only) the chunks are shared out between ranks and rank 0 joins the shards. How the generator is sampled
    (latent scale, truncation, snapshot pools, confidence filter, soft labels) is `config.sampling`, by default
    the run's sampling.json. `stats` receives images, seconds, images/s and, with a filter, the acceptance rate
    per class.
    """
    config = config or ExportConfig(per_class=1000)
    out = Path(out)
    fmt = export_format(out, config.fmt)
    sampling = resolve_sampling(source, config.sampling)
    if sampling.soft_labels and fmt != "hdf5":
        raise SynthaugError(f"{out}: soft labels are stored in HDF5 exports only (give --out NAME.h5)")
    info = distributed.init_from_env(config.device)
    with output_lock(out) if info.is_main else contextlib.nullcontext():
        check_replaceable(out, fmt, config.overwrite)
        return _export(source, out, fmt, config, sampling, progress and info.is_main, stats)


def check_replaceable(out: Path, fmt: str, overwrite: bool) -> None:
    """An output may be written when it is absent, or, with `overwrite`, when it is an earlier export of the same
    format (a folder export holds our provenance file; an empty folder counts too); never the current folder."""
    if not out.exists():
        return
    if not overwrite:
        raise SynthaugError(f"{out}: already exists; choose another --out or pass --overwrite")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise SynthaugError(f"{out}: is the current folder or holds it; choose another --out")
    if fmt == "folder" and not (out.is_dir() and ((out / FOLDER_PROVENANCE).is_file() or not any(out.iterdir()))):
        raise SynthaugError(f"{out}: is not a synthaug folder export (no {FOLDER_PROVENANCE}); --overwrite replaces "
                            f"only exports, so remove it yourself or choose another --out")
    if fmt == "hdf5" and not out.is_file():
        raise SynthaugError(f"{out}: is a folder, not an HDF5 export; choose another --out")


def check_export_size(total: int, image_shape: tuple[int, ...], out: Path) -> None:
    """Refuse, before any work, an export larger than the disk under `out` can hold."""
    need = total * (int(np.prod(image_shape)) + 8)
    free = shutil.disk_usage(out.resolve().parent).free
    if need > free:
        raise SynthaugError(f"{out}: {total:,} images of {'x'.join(map(str, image_shape))} need {need / 2**30:,.1f} GiB; "
                            f"{free / 2**30:,.1f} GiB are free there")


def _export(source: str | Path, out: Path, fmt: str, config: ExportConfig, sampling: SamplingConfig, progress: bool,
            stats: dict[str, Any] | None) -> Path:
    """`export` once its output is locked and may be written."""
    sampler = Sampler(source, sampling, device=resolve_device(config.device), real=config.real, progress=progress)
    job = _job(sampler, out, config, export_plan(sampler, config, out), progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if distributed.current().enabled:
        if fmt != "hdf5":
            raise SynthaugError("under torchrun, export writes HDF5 only (give --out NAME.h5)")
        _write_hdf5_sharded(job)
    else:
        WRITERS.get(fmt)(job)
    if stats is not None:
        seconds = time.perf_counter() - t0
        stats.update({"images": job.plan.total, "seconds": seconds,
                      "images_per_s": job.plan.total / max(seconds, 1e-9)})
        if job.sample_filter is not None:
            stats["acceptance"] = {sampler.class_names[c]: r for c, r in job.sample_filter.acceptance().items()}
    return out


def _job(sampler: Sampler, out: Path, config: ExportConfig, plan: GenerationPlan, progress: bool) -> ExportJob:
    """The export job: the filter when the sampling has one, the resume key and the provenance."""
    sampling, gen, shas = sampler.sampling, sampler.gen, sampler.generator_sha256
    teacher_sha = sampler.teacher_sha256
    key = plan_key(plan, shas[0] if len(shas) == 1 else ",".join(shas), sampling.min_confidence, config.precision,
                   teacher_sha, sampler.soft)
    real = str(sampler.real) if sampler.real is not None else None
    teacher = getattr(sampler.teacher, "trained_recipe", None)
    provenance = {"run": str(sampler.source.resolve()), "checkpoint": str(gen.source_path.resolve()),
                  "checkpoint_sha256": shas[0], "seed": config.seed, "per_class": config.per_class,
                  "balance_to": config.balance_to, "target": config.target,
                  "classes": [gen.class_names[c] for c in plan.counts()], "truncation": sampling.truncation,
                  "latent_scale": sampling.latent_scale, "min_confidence": sampling.min_confidence,
                  "confidence_real": real if sampling.min_confidence is not None else None,
                  "precision": config.precision, "soft_labels": sampling.soft_labels,
                  "teacher_real": real if sampler.soft else None,
                  "teacher_sha256": teacher_sha if sampler.soft else None,
                  "teacher_steps": teacher.steps if teacher is not None else None,
                  "teacher_recipe": dataclasses.asdict(teacher) if teacher is not None else None,
                  "sampling": dataclasses.asdict(sampling), "export_config": dataclasses.asdict(config),
                  "synthaug_version": __version__,
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if len(shas) > 1:
        provenance["pool"] = [{"checkpoint": str(g.source_path.resolve()), "sha256": h}
                              for g, h in zip(sampler.generators, shas)]
    return ExportJob(sampler, plan, out, key, provenance, config, progress, sampler.new_filter())


def _pipelined(items, consume: Callable[[Any], None], depth: int = 2) -> None:
    """Run `consume` on a writer thread while the caller's iterator computes the next item (bounded queue)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def worker() -> None:
        while (item := q.get()) is not None:
            if not failure:
                try:
                    consume(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the producer
                    failure.append(exc)

    thread = threading.Thread(target=worker, name="synthaug-writer", daemon=True)
    thread.start()
    try:
        for item in items:
            if failure:
                break
            q.put(item)
    finally:
        q.put(None)
        thread.join()
    if failure:
        raise failure[0]


@WRITERS.register("hdf5")
def _write_hdf5(job: ExportJob) -> None:
    """Fill a preallocated HDF5 file window by window, recording progress, then rename it into place."""
    gen, plan, out, key = job.gen, job.plan, job.out, job.key
    part = partial_path(out)
    start = 0
    f = None
    if job.config.resume and part.is_file():
        try:
            f = h5py.File(part, "r+")
        except OSError:  # killed before its first flush: nothing in it can be trusted, so start over
            warnings.warn(f"{part}: unreadable (interrupted before anything was saved); starting over", stacklevel=2)
            part.unlink()
    if f is not None:
        if f.attrs.get(PLAN_ATTR) != key:
            f.close()
            raise SynthaugError(f"{part}: was started with other settings (seed, counts or checkpoint); "
                                f"remove it or export with the same settings")
        start = int(f.attrs[PROGRESS_ATTR])
    else:
        f = create_export(part, plan.total, gen.image_shape, list(gen.class_names), plan.chunk_rows, key,
                          job.config.compression, soft_labels=job.soft)
        _reserve_space(f, part, plan, gen.image_shape, out)
        f.flush()  # a valid (empty) export from the start, so a kill at any moment leaves something to resume
    bar = tqdm(total=plan.total, initial=plan.chunk_bounds(start)[0] if start < plan.num_chunks else plan.total,
               desc=f"export {out.name}", unit="img", disable=not job.progress)

    def write(block: Block) -> None:
        hi = _write_block(f, plan, block)
        f.attrs[PROGRESS_ATTR] = block.end
        f.flush()
        bar.update(hi - plan.chunk_bounds(block.first)[0])

    try:
        _pipelined(job.blocks(start_chunk=start), write)
        finish_export(f, job.provenance)
    except (OSError, RuntimeError) as exc:  # the disk filled up after all: drop the broken handle, say so in one line
        bar.close()
        _abandon(f)
        raise SynthaugError(f"{part}: could not be written ({str(exc).splitlines()[0][:160]}); {out} is "
                            f"untouched; free some space and export again") from None
    f.close()
    bar.close()
    _install(part, out, job.config.overwrite)


def _write_block(f: h5py.File, plan: GenerationPlan, block: Block) -> int:
    """Store one block's images, labels (and soft labels) at its rows; return the end row."""
    lo, hi = plan.chunk_bounds(block.first)[0], plan.chunk_bounds(block.end - 1)[1]
    f[IMAGES][lo:hi] = block.images
    f[LABELS][lo:hi] = block.labels
    if block.soft is not None:
        f[SOFT_LABELS][lo:hi] = block.soft
    return hi


def _reserve_space(f: h5py.File, part: Path, plan: GenerationPlan, image_shape: tuple[int, ...], out: Path) -> None:
    """Reserve the whole export's bytes on disk before generating anything, so a disk that is too small (or a file
    size limit) fails at once, cleanly, instead of in the middle of HDF5's writes."""
    need = plan.total * (int(np.prod(image_shape)) + 8 + 4 * len(set(plan.labels.tolist()))) + (1 << 20)
    fd = os.open(part, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, need)
    except OSError as exc:
        f.close()
        part.unlink(missing_ok=True)
        raise SynthaugError(f"{part.parent.resolve()}: not enough space for this export "
                            f"({need / 2**20:.0f} MiB needed: "
                            f"{exc.strerror}); {out} is untouched") from None
    except AttributeError:  # no posix_fallocate on this platform: find out while writing
        pass
    finally:
        os.close(fd)


def _abandon(f: h5py.File) -> None:
    """Close an HDF5 file whose writes failed; HDF5's own complaints while it lets go are not news to the user."""
    import sys

    hook = sys.unraisablehook
    sys.unraisablehook = lambda *_: None
    try:
        f.close()
    except (OSError, RuntimeError):
        pass
    finally:
        import gc

        gc.collect()
        sys.unraisablehook = hook


def _install(part: Path, out: Path, overwrite: bool) -> None:
    """Make a finished HDF5 export durable, rename it over `out` and check it against the contract."""
    with open(part, "rb+") as fh:
        os.fsync(fh.fileno())
    if out.exists() and overwrite:
        out.unlink()
    os.replace(part, out)
    validate_export(out)


def shard_path(out: Path, rank: int, world_size: int) -> Path:
    """Where rank `rank` writes its share of a distributed export."""
    return out.with_name(f".{out.name}.shard{rank}-of-{world_size}")


def _write_hdf5_sharded(job: ExportJob) -> None:
    """Under torchrun: rank r generates chunks r, r + W, ... into its own shard; rank 0 then copies every chunk,
    in order, into one export, whose images and labels equal a single-process export with the same seed.
    A distributed export starts over; its shards are rewritten."""
    gen, plan, out, key = job.gen, job.plan, job.out, job.key
    soft = job.soft
    info = distributed.current()
    mine = list(range(info.rank, plan.num_chunks, info.world_size))
    shard = shard_path(out, info.rank, info.world_size)
    f = create_export(shard, plan.total, gen.image_shape, list(gen.class_names), plan.chunk_rows, key,
                      soft_labels=soft)
    try:
        for block in job.blocks(chunks=mine):
            _write_block(f, plan, block)
    finally:
        f.close()
    distributed.barrier()
    if info.is_main:
        part = partial_path(out)
        merged = create_export(part, plan.total, gen.image_shape, list(gen.class_names), plan.chunk_rows, key,
                               job.config.compression, soft_labels=soft)
        shards = [h5py.File(shard_path(out, r, info.world_size), "r") for r in range(info.world_size)]
        names = (IMAGES, LABELS, SOFT_LABELS) if soft else (IMAGES, LABELS)
        try:
            for c in tqdm(range(plan.num_chunks), desc=f"join {out.name}", unit="chunk", disable=not job.progress):
                lo, hi = plan.chunk_bounds(c)
                src = shards[c % info.world_size]
                for name in names:
                    merged[name][lo:hi] = src[name][lo:hi]
            finish_export(merged, {**job.provenance, "world_size": info.world_size})
        finally:
            merged.close()
            for s in shards:
                s.close()
        _install(part, out, job.config.overwrite)
        for r in range(info.world_size):
            shard_path(out, r, info.world_size).unlink(missing_ok=True)
    distributed.barrier()


def _yield_cpu() -> None:
    """Worker initialiser: lowest scheduling priority, so PNG encoding takes only CPU time the generator leaves."""
    if hasattr(os, "nice"):  # POSIX only
        os.nice(19)


def _save_pngs(args: tuple[list[str], np.ndarray]) -> int:
    """Encode and write a block of PNGs (runs in a worker process)."""
    paths, images = args
    for path, img in zip(paths, images):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", compress_level=1)
    return len(paths)


@WRITERS.register("folder")
def _write_folder(job: ExportJob) -> None:
    """Write OUT/<class>/<index>.png with PNG encoding in a process pool, then rename the folder into place."""
    gen, plan, out, key = job.gen, job.plan, job.out, job.key
    part = partial_path(out)
    state_file = part / ".synthaug-progress.json"
    start = 0
    if job.config.resume and state_file.is_file():
        state = json.loads(state_file.read_text())
        if state.get("plan") != key:
            raise SynthaugError(f"{part}: was started with other settings; remove it or export with the same settings")
        start = int(state["chunks_done"])
    else:
        shutil.rmtree(part, ignore_errors=True)
        for name in gen.class_names:  # every class folder, so class_to_idx matches the source
            inside(part, name).mkdir(parents=True)
    bar = tqdm(total=plan.total, initial=min(start * plan.chunk_rows, plan.total), desc=f"export {out.name}",
               unit="img", disable=not job.progress)
    workers = max(1, (os.cpu_count() or 1))
    # A generator on the CPU keeps every core busy: encoders at normal priority would preempt its threads, whose
    # parallel regions then wait for the slowest one. At the lowest priority they fill the gaps instead.
    on_cpu = next(gen.parameters()).device.type == "cpu"
    in_flight: list[tuple[int, list[Future]]] = []
    folders = [inside(part, name) for name in gen.class_names]

    def drain(keep: int) -> None:
        while len(in_flight) > keep:
            end, futures = in_flight.pop(0)
            for fut in futures:
                bar.update(fut.result())
            state_file.write_text(json.dumps({"plan": key, "chunks_done": end}))

    with ProcessPoolExecutor(max_workers=workers, initializer=_yield_cpu if on_cpu else None) as pool:
        for first, end, images, labels, _ in job.blocks(start_chunk=start):
            lo = plan.chunk_bounds(first)[0]
            paths = [str(folders[lab] / f"{lo + i:07d}.png") for i, lab in enumerate(labels)]
            step = max(1, -(-len(paths) // workers))
            futures = [pool.submit(_save_pngs, (paths[i:i + step], images[i:i + step]))
                       for i in range(0, len(paths), step)]
            in_flight.append((end, futures))
            drain(keep=2)
        drain(keep=0)
    bar.close()
    state_file.unlink()
    (part / FOLDER_PROVENANCE).write_text(json.dumps(job.provenance, indent=1, sort_keys=True))
    if out.exists() and job.config.overwrite:
        shutil.rmtree(out)
    os.replace(part, out)
