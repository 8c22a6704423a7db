"""Labelled image folders (torchvision ImageFolder layout): scanning, split detection, decode-once cache."""
from __future__ import annotations

import contextlib

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from synthaug.errors import DataError
from synthaug.fsutil import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SPLIT_NAMES = ("train", "val", "test")
CACHE_VERSION = 1
_POOL_MIN_FILES = 256


@dataclass(frozen=True)
class FolderIndex:
    """The image files of a labelled folder, with what identifies their content."""

    root: Path
    class_names: tuple[str, ...]
    paths: tuple[str, ...]  # relative to root
    labels: tuple[int, ...]
    stats: tuple[tuple[int, int], ...]  # (size in bytes, mtime in ns) per file

    def fingerprint(self) -> str:
        """A hash of paths, sizes and mtimes: changes whenever the folder's content may have."""
        h = hashlib.sha256()
        h.update(str(self.root.resolve()).encode("utf-8", "surrogateescape"))
        for p, lab, (size, mtime) in zip(self.paths, self.labels, self.stats):
            h.update(f"{p}\0{lab}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:24]


@dataclass
class LabelledImages:
    """A decoded labelled image set held in memory.

    Attributes:
        images: (N, C, H, W) uint8.
        labels: (N,) int64.
        groups: (N,) int64 group ids (images of one group, e.g. one object drawn at several sizes, stay on one side
            of every validation split), or None: every image its own group.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    root: Path
    skipped: tuple[str, ...] = ()
    groups: np.ndarray | None = None

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to label index, as torchvision's ImageFolder gives it."""
        return {c: i for i, c in enumerate(self.class_names)}

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray | torch.Tensor) -> LabelledImages:
        """The images at `index` (same classes, same root)."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        groups = None if self.groups is None else self.groups[index.numpy()]
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index], groups=groups)


def concat(a: LabelledImages, b: LabelledImages) -> LabelledImages:
    """`a`'s images followed by `b`'s (the same classes); groups are kept where both have them."""
    groups = None if a.groups is None or b.groups is None else np.concatenate([a.groups, b.groups])
    return dataclasses.replace(a, images=torch.cat([a.images, b.images]), labels=torch.cat([a.labels, b.labels]),
                               groups=groups)


def file_groups(paths: Sequence[str], pattern: str) -> np.ndarray:
    """A group id per file (paths relative to the folder root, '<class>/<file>'): files of one class whose
    paths under the class folder match `pattern` with the same text (its first parenthesised group, else the
    whole match) share one; a file that does not match is a group of its own."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"group pattern {pattern!r}: not a regular expression ({exc})") from None
    keys = []
    for path in paths:
        cls, _, rest = path.partition("/")
        m = regex.search(rest)
        key = "file:" + rest if m is None else "group:" + (m.group(1) if regex.groups else m.group(0))
        keys.append(f"{cls}/{key}")
    _, ids = np.unique(np.array(keys), return_inverse=True)
    return ids.astype(np.int64)


def stratified_split(data: LabelledImages, fraction: float, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """(rest, held) with `fraction` of each class held out (scikit-learn's stratified split), deterministic."""
    from sklearn.model_selection import train_test_split

    labels = data.labels.numpy()
    rest, held = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=labels)
    return data.subset(np.sort(rest)), data.subset(np.sort(held))


def has_class_folders(path: Path) -> bool:
    """True when `path` holds at least one non-hidden sub-folder."""
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def resolve_split(root: str | Path, split: str = "train") -> Path:
    """Return `root/split` when `root` holds split folders, else `root` itself."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected root/<class>/<image>)")
    candidate = root / split
    if candidate.is_dir() and has_class_folders(candidate):
        subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if subdirs <= set(SPLIT_NAMES):
            return candidate
    return root


def find_split(root: str | Path, split: str) -> Path | None:
    """Return `root/split` (or `root/../split` when root is itself a split folder), if it exists."""
    root = Path(root)
    for cand in (root / split, root.parent / split if root.name in SPLIT_NAMES else None):
        if cand is not None and cand.is_dir() and has_class_folders(cand):
            return cand
    return None


def _walk_images(class_dir: Path) -> list[Path]:
    """All image files under a class folder, recursively, skipping hidden entries and symlink loops."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return found


def scan_folder(root: str | Path) -> FolderIndex:
    """Index `root/<class>/<image>`: classes are the sorted sub-folder names."""
    root = resolve_split(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders found (expected root/<class>/<image>)")
    paths, labels, stats = [], [], []
    for label, class_dir in enumerate(class_dirs):
        files = _walk_images(class_dir)
        if not files:
            raise DataError(f"{class_dir}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for f in files:
            try:
                st = f.stat()
            except OSError as exc:
                raise DataError(f"{f}: cannot stat ({exc.strerror})") from None
            paths.append(str(f.relative_to(root)))
            labels.append(label)
            stats.append((st.st_size, st.st_mtime_ns))
    if len(class_dirs) < 2:
        raise DataError(f"{root}: only one class folder ({class_dirs[0].name}); a conditional GAN needs at least 2")
    return FolderIndex(root, tuple(p.name for p in class_dirs), tuple(paths), tuple(labels), tuple(stats))


def _probe_one(path: str) -> tuple[int, int, str] | str:
    """(width, height, mode) of an image, or an error string."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.size[0], im.size[1], im.mode
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip this file"
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _decode_one(path: str, resolution: int, channels: int) -> np.ndarray | str:
    """Decode, orient, convert and resize one image to (C, R, R) uint8, or return an error string."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit pixels span 0..65535: divide by 257 so 65535 -> 255 (brightness stays comparable
                # across images, unlike a per-image stretch); 32-bit ints already in 0..255 stay as they are.
                arr = np.asarray(im, dtype=np.float64)
                scale = 257.0 if (im.mode != "I" or arr.max() > 255) else 1.0
                im = Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8))
            im = im.convert("L" if channels == 1 else "RGB")
            im = ImageOps.fit(im, (resolution, resolution), Image.Resampling.BICUBIC) if im.size != (
                resolution, resolution) else im
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


def _probe_chunk(paths: list[str]) -> list[tuple[int, int, str] | str]:
    return [_probe_one(p) for p in paths]


def _decode_chunk(args: tuple[list[str], int, int]) -> list[np.ndarray | str]:
    paths, resolution, channels = args
    return [_decode_one(p, resolution, channels) for p in paths]


def _parallel_map(fn, chunks: list, total: int, desc: str, workers: int, progress: bool, sizes: list[int]) -> list:
    """Map `fn` over chunks in a process pool (in-process when small), with a tqdm bar over items."""
    out: list = []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)
    if workers <= 1 or total < _POOL_MIN_FILES:
        for chunk, n in zip(chunks, sizes):
            out.extend(fn(chunk))
            bar.update(n)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result, n in zip(pool.map(fn, chunks), sizes):
                out.extend(result)
                bar.update(n)
    bar.close()
    return out


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def cache_dir() -> Path:
    """The decode cache folder: $SYNTHAUG_CACHE_DIR, else $XDG_CACHE_HOME/synthaug, else ~/.cache/synthaug."""
    env = os.environ.get("SYNTHAUG_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synthaug"


def supported_resolution(size: int) -> int:
    """Round a side length to the nearest the models support (a multiple of 4, at least 8)."""
    return max(8, (size + 1) // 4 * 4)  # ties round down: fewer pixels, less compute


def probe_folder(index: FolderIndex, workers: int | None = None, progress: bool = True) -> dict:
    """Read every image's header once (cached): sizes, modes, and which files are unreadable."""
    path = cache_dir() / f"{index.fingerprint()}.probe.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    workers = workers or os.cpu_count() or 1
    abs_paths = [str(index.root / p) for p in index.paths]
    chunks = _chunks(abs_paths, 512)
    results = _parallel_map(_probe_chunk, chunks, len(abs_paths), "scanning", workers, progress,
                            [len(c) for c in chunks])
    bad = {index.paths[i]: r for i, r in enumerate(results) if isinstance(r, str)}
    good = [r for r in results if not isinstance(r, str)]
    probe = {
        "sizes": Counter(f"{w}x{h}" for w, h, _ in good).most_common(),
        "modes": Counter(m for _, _, m in good).most_common(),
        "bad": bad,
    }
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(probe))
    except OSError:
        pass  # a read-only cache only costs speed
    return probe


def default_shape(probe: dict) -> tuple[int, int]:
    """(resolution, channels) for a folder: its most common square side (rounded) and gray unless any colour."""
    if not probe["sizes"]:
        raise DataError("no readable images")
    w, h = (int(v) for v in probe["sizes"][0][0].split("x"))
    resolution = supported_resolution(min(w, h))
    gray_modes = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
    channels = 1 if all(m in gray_modes for m, _ in probe["modes"]) else 3
    return resolution, channels


def load_image_folder(root: str | Path, resolution: int | None = None, channels: int | None = None,
                      workers: int | None = None, progress: bool = True,
                      group_by: str | None = None) -> LabelledImages:
    """Decode a labelled folder once into uint8 tensors, reusing the on-disk cache while the folder is unchanged;
    `group_by` (a regular expression, see `file_groups`) groups images that validation must not split."""
    index = scan_folder(root)
    probe = probe_folder(index, workers, progress)
    if len(probe["bad"]) == len(index.paths):
        raise DataError(f"{index.root}: none of the {len(index.paths)} image files could be decoded")
    auto_res, auto_ch = default_shape(probe)
    resolution = resolution or auto_res
    channels = channels or auto_ch
    if resolution != supported_resolution(resolution):
        raise DataError(f"resolution {resolution} is not supported: use a multiple of 4, at least 8")
    cache = cache_dir() / f"{index.fingerprint()}-{resolution}px-{channels}c-v{CACHE_VERSION}.h5"
    loaded = _read_cache(cache, (resolution, channels), len(index.paths), len(index.class_names))
    if loaded is None:
        loaded = _decode_into_cache(index, probe, resolution, channels, cache, workers, progress)
    images, labels, skipped = loaded
    if skipped:
        shown = ", ".join(str(index.root / s) for s in skipped[:3])
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s) under {index.root}: {shown}"
                      + (" ..." if len(skipped) > 3 else ""), stacklevel=2)
    present = set(labels.unique().tolist())
    missing = [index.class_names[i] for i in range(len(index.class_names)) if i not in present]
    if missing:
        raise DataError(f"{index.root}: class folder(s) {missing} hold no readable images")
    groups = None
    if group_by is not None:
        dropped = set(skipped)
        groups = file_groups([p for p in index.paths if p not in dropped], group_by)
    return LabelledImages(images, labels, index.class_names, index.root, tuple(skipped), groups)


def _read_cache(path: Path, shape: tuple[int, int], files: int,
                classes: int) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """Load a decode cache, or None when absent; an entry that fails validation (damaged, another shape, labels out
    of range, counts that do not add up to the folder's files) is dropped with a one-line warning and rebuilt."""
    if not path.is_file():
        return None
    resolution, channels = shape
    try:
        with h5py.File(path, "r") as f:
            images_ds, labels_ds = f["images"], f["labels"]
            n = images_ds.shape[0]
            skipped = json.loads(f.attrs["skipped"])
            if (images_ds.dtype != np.uint8 or images_ds.shape[1:] != (channels, resolution, resolution)
                    or labels_ds.shape != (n,) or not isinstance(skipped, list) or n + len(skipped) != files):
                raise ValueError("its shapes or counts do not match the folder")
            images = torch.from_numpy(images_ds[()])
            labels = torch.from_numpy(labels_ds[()].astype(np.int64))
        if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ValueError("its labels are out of range")
    except Exception as exc:  # noqa: BLE001 - any damage to our own cache means: rebuild it
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        warnings.warn(f"{path}: damaged decode cache entry ({reason}); rebuilding it", stacklevel=3)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return images, labels, skipped


def _decode_into_cache(index: FolderIndex, probe: dict, resolution: int, channels: int, cache: Path,
                       workers: int | None, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every readable image in parallel and store the result in the HDF5 cache."""
    workers = workers or os.cpu_count() or 1
    bad = probe["bad"]
    keep = [i for i, p in enumerate(index.paths) if p not in bad]
    abs_paths = [str(index.root / index.paths[i]) for i in keep]
    chunks = _chunks(abs_paths, 256)
    results = _parallel_map(_decode_chunk, [(c, resolution, channels) for c in chunks], len(abs_paths),
                            "decoding", workers, progress, [len(c) for c in chunks])
    skipped = sorted(bad)
    arrays, labels = [], []
    for i, r in zip(keep, results):
        if isinstance(r, str):
            skipped.append(index.paths[i])
        else:
            arrays.append(r)
            labels.append(index.labels[i])
    if not arrays:
        raise DataError(f"{index.root}: none of the {len(index.paths)} image files could be decoded")
    images = np.stack(arrays)
    label_arr = np.asarray(labels, dtype=np.int64)
    try:
        with atomic_path(cache, ".h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("images", data=images)
                f.create_dataset("labels", data=label_arr)
                f.attrs["skipped"] = json.dumps(skipped)
                f.attrs["root"] = str(index.root)
    except OSError:
        pass  # caching is an optimisation; a read-only cache dir must not stop training
    return torch.from_numpy(images), torch.from_numpy(label_arr), skipped
