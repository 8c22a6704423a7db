"""The HDF5 export format: a contract other tools read. Writing, validation and reading live here."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synthaug.data.names import check_class_names
from synthaug.errors import DataError

FORMAT_VERSION = 2  # the newest this code reads; v2 adds the optional soft_labels
SOFT_LABELS_VERSION = 2  # files without soft labels are written as version 1, which every reader takes
IMAGES, LABELS, SOFT_LABELS = "images", "labels", "soft_labels"
SOFT_SUM_TOLERANCE = 1e-3
PROGRESS_ATTR = "synthaug_chunks_done"  # present only while an export is incomplete
PLAN_ATTR = "synthaug_plan"
H5_SUFFIXES = (".h5", ".hdf5")  # what an export's file name ends with


@dataclass(frozen=True)
class ExportInfo:
    """What a validated export file holds."""

    path: Path
    num_images: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    provenance: dict[str, Any]
    chunk_rows: int
    has_soft_labels: bool = False
    version: int = 1


def create_export(path: Path, num_images: int, image_shape: tuple[int, int, int], class_names: list[str],
                  chunk_rows: int, plan_key: str, compression: str | None = None,
                  soft_labels: bool = False) -> h5py.File:
    """Create an (incomplete) export file with preallocated, chunked datasets (and soft_labels (N, K) float32)."""
    f = h5py.File(path, "w", track_order=False)
    kwargs: dict[str, Any] = {}
    if compression:
        kwargs["compression"] = compression
    f.create_dataset(IMAGES, shape=(num_images, *image_shape), dtype=np.uint8,
                     chunks=(min(chunk_rows, max(num_images, 1)), *image_shape), **kwargs)
    f.create_dataset(LABELS, shape=(num_images,), dtype=np.int64,
                     chunks=(min(max(chunk_rows, 1024), max(num_images, 1)),), **kwargs)
    if soft_labels:
        f.create_dataset(SOFT_LABELS, shape=(num_images, len(class_names)), dtype=np.float32,
                         chunks=(min(chunk_rows, max(num_images, 1)), len(class_names)), **kwargs)
    f.attrs["class_names"] = np.array(class_names, dtype=h5py.string_dtype("utf-8"))
    f.attrs["synthaug_format_version"] = SOFT_LABELS_VERSION if soft_labels else 1
    f.attrs[PLAN_ATTR] = plan_key
    f.attrs[PROGRESS_ATTR] = 0
    return f


def finish_export(f: h5py.File, provenance: dict[str, Any]) -> None:
    """Mark an export complete: write provenance, drop the progress marker."""
    f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
    del f.attrs[PROGRESS_ATTR]
    f.flush()


def validate_export(path: str | Path, allow_incomplete: bool = False) -> ExportInfo:
    """Open an export and check version, shapes, dtypes, class names and label range; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0][:120]})") from None
    with f:
        return _check(path, f, allow_incomplete)


def _check(path: Path, f: h5py.File, allow_incomplete: bool) -> ExportInfo:
    """The checks of `validate_export` on an open file."""
    version = f.attrs.get("synthaug_format_version")
    if version is None:
        raise DataError(f"{path}: not a synthaug export (no synthaug_format_version attribute)")
    if int(version) > FORMAT_VERSION:
        raise DataError(f"{path}: format version {int(version)} is newer than this synthaug reads ({FORMAT_VERSION})")
    if PROGRESS_ATTR in f.attrs and not allow_incomplete:
        raise DataError(f"{path}: export is incomplete (resume it with `synthaug export --resume`)")
    _check_self_contained(path, f)
    for name in (IMAGES, LABELS):
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise DataError(f"{path}: dataset '{name}' is missing")
    images, labels = f[IMAGES], f[LABELS]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"{path}: 'images' must be uint8 (N, C, H, W) with C 1 or 3, got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise DataError(f"{path}: 'labels' must be int64 ({images.shape[0]},), got {labels.dtype} {labels.shape}")
    _check_declared_size(path, images.shape[0], (SOFT_LABELS in f) * 4 * max(1, len(f.attrs.get("class_names", ()))))
    raw_names = f.attrs.get("class_names")
    if raw_names is None or len(raw_names) == 0:
        raise DataError(f"{path}: class_names attribute is missing or empty")
    names = check_class_names([n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw_names],
                              path)
    if len(labels):
        lo, hi = int(np.min(labels[()])), int(np.max(labels[()]))
        if lo < 0 or hi >= len(names):
            raise DataError(f"{path}: labels span [{lo}, {hi}] but there are {len(names)} class names")
    has_soft = SOFT_LABELS in f
    if has_soft:
        _check_soft_labels(path, f[SOFT_LABELS], images.shape[0], len(names), int(version))
    try:
        provenance = json.loads(f.attrs.get("provenance", "{}"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: provenance attribute is not valid JSON") from None
    chunk_rows = images.chunks[0] if images.chunks else images.shape[0]
    return ExportInfo(path, images.shape[0], tuple(images.shape[1:]), names, provenance, int(chunk_rows), has_soft,
                      int(version))


def _check_self_contained(path: Path, f: h5py.File) -> None:
    """Our contract is a self-contained file: no external links, soft links, external storage or virtual datasets,
    which would make a reader serve bytes from another file on the machine."""
    for name in f:
        link = f.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise DataError(f"{path}: '{name}' is a {type(link).__name__} to elsewhere; an export holds its own data")
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            kind = "external storage" if obj.external else "a virtual dataset"
            raise DataError(f"{path}: '{name}' is {kind}; an export holds its own data")


def _check_declared_size(path: Path, num_images: int, soft_bytes_per_image: int) -> None:
    """The labels (and soft labels) a file declares are read whole: refuse a count this machine cannot hold."""
    need = num_images * (8 + soft_bytes_per_image)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound to check against
        return
    if need > free // 2:
        raise DataError(f"{path}: declares {num_images:,} images, whose labels alone need {need / 2**30:.1f} GiB; "
                        f"this machine has {free / 2**30:.1f} GiB free")


def _check_soft_labels(path: Path, soft: Any, n: int, k: int, version: int) -> None:
    """soft_labels must be float (N, K) probabilities: in [0, 1], each row summing to 1; only from version 2."""
    if version < SOFT_LABELS_VERSION:
        raise DataError(f"{path}: has soft_labels but format version {version} (soft labels need version 2)")
    if not isinstance(soft, h5py.Dataset) or soft.dtype.kind != "f" or soft.shape != (n, k):
        raise DataError(f"{path}: 'soft_labels' must be float ({n}, {k}), got {getattr(soft, 'dtype', '?')} "
                        f"{getattr(soft, 'shape', '?')}")
    step = max(1, soft.chunks[0] if soft.chunks else n)
    for lo in range(0, n, step):
        block = soft[lo:lo + step]
        if not np.isfinite(block).all() or block.min() < 0 or block.max() > 1:
            raise DataError(f"{path}: 'soft_labels' rows {lo}-{lo + len(block) - 1} hold values outside [0, 1]")
        bad = np.flatnonzero(np.abs(block.sum(1) - 1) > SOFT_SUM_TOLERANCE)
        if bad.size:
            raise DataError(f"{path}: 'soft_labels' row {lo + int(bad[0])} sums to {block[bad[0]].sum():.4f}, not 1")
