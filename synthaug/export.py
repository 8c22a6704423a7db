"""Exports: HDF5 (the contract in data/h5format.py) or an ImageFolder tree; resumable, atomic, pipelined."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

import synthaug
from synthaug import distributed
from synthaug.checkpoint import generator_file, sha256_file
from synthaug.data.h5format import PLAN_ATTR, PROGRESS_ATTR, create_export, finish_export, validate_export
from synthaug.errors import SynthaugError
from synthaug.data.folder import scan_folder
from synthaug.generate import (GenerationPlan, SampleFilter, balance_plan, class_balanced_plan, iter_generated,
                               load_generator)
from synthaug.models import ConditionalGenerator

H5_SUFFIXES = (".h5", ".hdf5")


def export_format(out: str | Path, fmt: str | None = None) -> str:
    """'hdf5' for .h5/.hdf5 paths, else 'folder', unless given."""
    if fmt:
        if fmt not in ("hdf5", "folder"):
            raise SynthaugError(f"unknown export format {fmt!r} (hdf5 or folder)")
        return fmt
    return "hdf5" if Path(out).suffix.lower() in H5_SUFFIXES else "folder"


def partial_path(out: Path) -> Path:
    """Where an export is built before it is renamed into place."""
    return out.with_name(f".{out.name}.partial")


def plan_key(plan: GenerationPlan, checkpoint_sha: str, sample_filter: SampleFilter | None = None,
             precision: str = "fp32") -> str:
    """Identifies an export's content: a resume must match it exactly."""
    h = hashlib.sha256(plan.labels.tobytes())
    key = {"labels_sha256": h.hexdigest(), "seed": plan.seed, "chunk_rows": plan.chunk_rows,
           "truncation": plan.truncation, "checkpoint_sha256": checkpoint_sha}
    if precision != "fp32":  # fp32 exports keep the key they always had, so their resumes still match
        key["precision"] = precision
    if sample_filter is not None:
        key.update(min_confidence=sample_filter.min_confidence, classifier_sha256=_weights_sha(sample_filter))
    return json.dumps(key, sort_keys=True)


def _weights_sha(sample_filter: SampleFilter) -> str:
    """A digest of the filter classifier's weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(sample_filter.classifier.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def confidence_filter(gen: ConditionalGenerator, min_confidence: float, real: str | Path,
                      device: torch.device, progress: bool = True) -> SampleFilter:
    """A SampleFilter around the classifier trained on the real folder `real` (the metrics' cached one)."""
    from synthaug.data.folder import load_image_folder
    from synthaug.metrics import feature_classifier

    data = load_image_folder(real, gen.image_shape[-1], gen.image_shape[0], progress=progress)
    if set(data.class_names) != set(gen.class_names):
        raise SynthaugError(f"{real}: classes {list(data.class_names)} differ from the generator's "
                            f"{list(gen.class_names)}")
    if data.class_names != tuple(gen.class_names):
        raise SynthaugError(f"{real}: class order differs from the generator's")
    return SampleFilter(feature_classifier(data, device=device, progress=progress), min_confidence)


def export(run_or_checkpoint: str | Path, out: str | Path, per_class: int | None = 1000, seed: int = 0,
           batch_size: int | None = None, *, classes: Sequence[str] | None = None,
           balance_to: str | Path | None = None, target: int | None = None, fmt: str | None = None,
           device: str = "auto", truncation: float | None = None, compression: str | None = None,
           min_confidence: float | None = None, real: str | Path | None = None, precision: str = "fp32",
           compile: bool = False, resume: bool = False, overwrite: bool = False, progress: bool = True,
           stats: dict[str, Any] | None = None) -> Path:
    """Generate a class-balanced synthetic data set and write it to `out` (HDF5 or ImageFolder).

    Same seed, same images and labels, whatever the batch size. The output appears only when complete; an
    interrupted export leaves `.<name>.partial` beside it, which `resume=True` continues. With `balance_to`
    (a real, imbalanced folder), each class gets what it lacks to reach `target` (default: its largest class).
    Under `torchrun` (HDF5 only) the chunks are shared out between ranks and rank 0 joins the shards.
    With `min_confidence`, only images that a classifier trained on the real folder `real` (default: the run's
    training folder) assigns to their class with at least that probability are kept; more are drawn until the
    quota is met, and `stats["acceptance"]` gives the rate per class. `precision` ("bf16", "fp16": autocast, for
    GPUs) and `compile` (torch.compile) are the engine's options; precision changes the images, so it is part of
    what a resume must match.
    """
    from synthaug.train import resolve_device

    out = Path(out)
    if balance_to is None and (per_class is None or per_class < 1):
        raise SynthaugError(f"per-class count must be at least 1 (got {per_class})")
    fmt = export_format(out, fmt)
    if out.exists() and not overwrite:
        raise SynthaugError(f"{out}: already exists; choose another --out or pass --overwrite")
    gen_path = generator_file(run_or_checkpoint)
    info = distributed.init_from_env(device)
    progress = progress and info.is_main
    dev = resolve_device(device)
    if info.enabled and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
    gen = load_generator(gen_path, dev)
    sha = sha256_file(gen_path)
    if balance_to is not None:
        index = scan_folder(balance_to)
        counts = {name: index.labels.count(i) for i, name in enumerate(index.class_names)}
        plan = balance_plan(gen.class_names, counts, seed, gen.image_shape, target, truncation)
    else:
        plan = class_balanced_plan(gen.class_names, per_class, seed, gen.image_shape, classes, truncation)
    sample_filter = None
    if min_confidence is not None:
        real = real if real is not None else _training_folder(run_or_checkpoint)
        sample_filter = confidence_filter(gen, min_confidence, real, next(gen.parameters()).device, progress)
    provenance = {"run": str(Path(run_or_checkpoint).resolve()), "checkpoint": str(gen_path.resolve()),
                  "checkpoint_sha256": sha, "seed": seed, "per_class": per_class if balance_to is None else None,
                  "balance_to": str(balance_to) if balance_to is not None else None, "target": target,
                  "classes": [gen.class_names[c] for c in plan.counts()], "truncation": truncation,
                  "min_confidence": min_confidence, "confidence_real": str(real) if sample_filter else None,
                  "precision": precision,
                  "synthaug_version": synthaug.__version__,
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    writer = _write_hdf5 if fmt == "hdf5" else _write_folder
    if distributed.current().enabled:
        if fmt != "hdf5":
            raise SynthaugError("under torchrun, export writes HDF5 only (give --out NAME.h5)")
        writer = _write_hdf5_sharded
    t0 = time.perf_counter()
    engine = {"batch_size": batch_size, "precision": precision, "compile": compile}
    writer(gen, plan, out, plan_key(plan, sha, sample_filter, precision), provenance, engine=engine, resume=resume,
           overwrite=overwrite, progress=progress, compression=compression, sample_filter=sample_filter)
    if stats is not None:
        seconds = time.perf_counter() - t0
        stats.update({"images": plan.total, "seconds": seconds, "images_per_s": plan.total / max(seconds, 1e-9)})
        if sample_filter is not None:
            stats["acceptance"] = {gen.class_names[c]: r for c, r in sample_filter.acceptance().items()}
    return out


def _training_folder(run_or_checkpoint: str | Path) -> Path:
    """The training folder recorded in a run's config.json (for a bare generator file: its folder's)."""
    from synthaug.checkpoint import read_run_config

    path = Path(run_or_checkpoint)
    for run in (path, path.parent, path.parent.parent):  # a run, its generator.pt, or generators/epoch_N.pt
        if (run / "config.json").is_file():
            return Path(read_run_config(run).data.root)
    raise SynthaugError(f"{run_or_checkpoint}: no run config to find the real training folder; pass --real DIR")


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


def _write_hdf5(gen: ConditionalGenerator, plan: GenerationPlan, out: Path, key: str, provenance: dict,
                *, engine: dict[str, Any], resume: bool, overwrite: bool, progress: bool,
                compression: str | None, sample_filter: SampleFilter | None) -> None:
    """Fill a preallocated HDF5 file window by window, recording progress, then rename it into place."""
    part = partial_path(out)
    start = 0
    f = None
    if resume and part.is_file():
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
                          compression)
        _reserve_space(f, part, plan, gen.image_shape, out)
        f.flush()  # a valid (empty) export from the start, so a kill at any moment leaves something to resume
    bar = tqdm(total=plan.total, initial=plan.chunk_bounds(start)[0] if start < plan.num_chunks else plan.total,
               desc=f"export {out.name}", unit="img", disable=not progress)

    def write(item) -> None:
        first, end, images, labels = item
        lo, hi = plan.chunk_bounds(first)[0], plan.chunk_bounds(end - 1)[1]
        f["images"][lo:hi] = images
        f["labels"][lo:hi] = labels
        f.attrs[PROGRESS_ATTR] = end
        f.flush()
        bar.update(hi - lo)

    try:
        _pipelined(iter_generated(gen, plan, **engine, start_chunk=start, sample_filter=sample_filter), write)
        finish_export(f, provenance)
    except (OSError, RuntimeError) as exc:  # the disk filled up after all: drop the broken handle, say so in one line
        bar.close()
        _abandon(f)
        raise SynthaugError(f"{part}: could not be written ({str(exc).splitlines()[0][:160]}); {out} is "
                            f"untouched; free some space and export again") from None
    f.close()
    bar.close()
    _install(part, out, overwrite)


def _reserve_space(f: h5py.File, part: Path, plan: GenerationPlan, image_shape: tuple[int, ...], out: Path) -> None:
    """Reserve the whole export's bytes on disk before generating anything, so a disk that is too small (or a file
    size limit) fails at once, cleanly, instead of in the middle of HDF5's writes."""
    need = plan.total * (int(np.prod(image_shape)) + 8) + (1 << 20)
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


def _write_hdf5_sharded(gen: ConditionalGenerator, plan: GenerationPlan, out: Path, key: str, provenance: dict,
                        *, engine: dict[str, Any], resume: bool, overwrite: bool, progress: bool,
                        compression: str | None, sample_filter: SampleFilter | None) -> None:
    """Under torchrun: rank r generates chunks r, r + W, ... into its own shard; rank 0 then copies every chunk,
    in order, into one export, whose images and labels equal a single-process export with the same seed."""
    info = distributed.current()
    del resume  # a distributed export starts over; its shards are rewritten
    mine = list(range(info.rank, plan.num_chunks, info.world_size))
    shard = shard_path(out, info.rank, info.world_size)
    f = create_export(shard, plan.total, gen.image_shape, list(gen.class_names), plan.chunk_rows, key)
    try:
        for first, end, images, labels in iter_generated(gen, plan, **engine, chunks=mine,
                                                         sample_filter=sample_filter):
            lo, hi = plan.chunk_bounds(first)[0], plan.chunk_bounds(end - 1)[1]
            f["images"][lo:hi] = images
            f["labels"][lo:hi] = labels
    finally:
        f.close()
    distributed.barrier()
    if info.is_main:
        part = partial_path(out)
        merged = create_export(part, plan.total, gen.image_shape, list(gen.class_names), plan.chunk_rows, key,
                               compression)
        shards = [h5py.File(shard_path(out, r, info.world_size), "r") for r in range(info.world_size)]
        try:
            for c in tqdm(range(plan.num_chunks), desc=f"join {out.name}", unit="chunk", disable=not progress):
                lo, hi = plan.chunk_bounds(c)
                src = shards[c % info.world_size]
                merged["images"][lo:hi] = src["images"][lo:hi]
                merged["labels"][lo:hi] = src["labels"][lo:hi]
            finish_export(merged, {**provenance, "world_size": info.world_size})
        finally:
            merged.close()
            for s in shards:
                s.close()
        _install(part, out, overwrite)
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


def _write_folder(gen: ConditionalGenerator, plan: GenerationPlan, out: Path, key: str, provenance: dict,
                  *, engine: dict[str, Any], resume: bool, overwrite: bool, progress: bool,
                  compression: str | None, sample_filter: SampleFilter | None) -> None:
    """Write OUT/<class>/<index>.png with PNG encoding in a process pool, then rename the folder into place."""
    del compression
    part = partial_path(out)
    state_file = part / ".synthaug-progress.json"
    start = 0
    if resume and state_file.is_file():
        state = json.loads(state_file.read_text())
        if state.get("plan") != key:
            raise SynthaugError(f"{part}: was started with other settings; remove it or export with the same settings")
        start = int(state["chunks_done"])
    else:
        shutil.rmtree(part, ignore_errors=True)
        for name in gen.class_names:  # every class folder, so class_to_idx matches the source
            (part / name).mkdir(parents=True)
    bar = tqdm(total=plan.total, initial=min(start * plan.chunk_rows, plan.total), desc=f"export {out.name}",
               unit="img", disable=not progress)
    workers = max(1, (os.cpu_count() or 1))
    # A generator on the CPU keeps every core busy: encoders at normal priority would preempt its threads, whose
    # parallel regions then wait for the slowest one. At the lowest priority they fill the gaps instead.
    on_cpu = next(gen.parameters()).device.type == "cpu"
    in_flight: list[tuple[int, list[Future]]] = []

    def drain(keep: int) -> None:
        while len(in_flight) > keep:
            end, futures = in_flight.pop(0)
            for fut in futures:
                bar.update(fut.result())
            state_file.write_text(json.dumps({"plan": key, "chunks_done": end}))

    with ProcessPoolExecutor(max_workers=workers, initializer=_yield_cpu if on_cpu else None) as pool:
        for first, end, images, labels in iter_generated(gen, plan, **engine, start_chunk=start,
                                                         sample_filter=sample_filter):
            lo = plan.chunk_bounds(first)[0]
            paths = [str(part / gen.class_names[lab] / f"{lo + i:07d}.png") for i, lab in enumerate(labels)]
            step = max(1, -(-len(paths) // workers))
            futures = [pool.submit(_save_pngs, (paths[i:i + step], images[i:i + step]))
                       for i in range(0, len(paths), step)]
            in_flight.append((end, futures))
            drain(keep=2)
        drain(keep=0)
    bar.close()
    state_file.unlink()
    (part / ".synthaug-provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True))
    if out.exists() and overwrite:
        shutil.rmtree(out)
    os.replace(part, out)
