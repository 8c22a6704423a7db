"""The built-in data set: Fashion-MNIST from Debian's `dataset-fashion-mnist` package, written as PNG folders."""
from __future__ import annotations

import gzip
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from synthaug.errors import DataError

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
# Label order of the original data set; '/' cannot appear in a folder name.
CLASS_NAMES = ("T-shirt-top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
INSTALL_HINT = "apt-get install dataset-fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataError(f"{path}: IDX header promises {expected} bytes, file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(split: str, source: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (N, 28, 28) uint8, labels (N,) int64) of a split from the IDX files."""
    source = Path(source or os.environ.get("SYNTHAUG_FASHION_MNIST", DEFAULT_SOURCE))
    image_file, label_file = (source / name for name in _FILES[split])
    for f in (image_file, label_file):
        if not f.is_file():
            raise DataError(f"{f}: Fashion-MNIST not found (install it with `{INSTALL_HINT}`)")
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{source}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split")
    return images, labels.astype(np.int64)


def _write_pngs(args: tuple[str, np.ndarray, list[str]]) -> int:
    out_dir, images, names = args
    for img, name in zip(images, names):
        Image.fromarray(img, mode="L").save(os.path.join(out_dir, name), optimize=False, compress_level=1)
    return len(names)


def write_fashion_mnist(out: str | Path, source: str | Path | None = None, limit: int | None = None,
                        progress: bool = True) -> Path:
    """Write Fashion-MNIST as `out/{train,test}/<class>/<index>.png`; `limit` keeps the first N per split."""
    out = Path(out)
    for split in _FILES:
        target = out / split
        if target.exists():
            raise DataError(f"{target}: already exists; remove it or choose another folder")
    for split in _FILES:
        images, labels = load_fashion_mnist(split, source)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        _write_split(out / split, images, labels, progress)
    return out


def _write_split(target: Path, images: np.ndarray, labels: np.ndarray, progress: bool) -> None:
    """Write one split into a temporary folder and rename it into place, so a crash leaves nothing half-done."""
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    jobs = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = tmp / name
        class_dir.mkdir(parents=True)
        idx = np.flatnonzero(labels == label)
        for start in range(0, len(idx), 1000):
            part = idx[start:start + 1000]
            jobs.append((str(class_dir), images[part], [f"{i:05d}.png" for i in part]))
    bar = tqdm(total=len(labels), desc=f"writing {target.name}", unit="img", disable=not progress, leave=False)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for n in pool.map(_write_pngs, jobs):
            bar.update(n)
    bar.close()
    tmp.rename(target)
