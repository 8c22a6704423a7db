"""A labelled RGB data set from Debian's `oxygen-icon-theme`: PNG icons (RGBA, several sizes) by context.

Classes are the theme's contexts with at least `min_names` distinct icons (actions, apps, devices, mimetypes,
places, status). Every rendering of one icon (its sizes) goes to the same split, chosen by a hash of the icon's
name, so no icon is seen in training and tested on at another size. The classes are uneven (actions has about
seven times the images of devices): a small, imbalanced RGB folder of the kind users bring.
"""
from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from synthaug.errors import DataError

DEFAULT_SOURCE = Path("/usr/share/icons/oxygen/base")
SIZES = ("32x32", "48x48", "64x64", "128x128", "256x256")
INSTALL_HINT = "apt-get install oxygen-icon-theme"
ICON_GROUPS = r"^\d+x\d+-(.+)\.png$"  # `group_by` for one icon's sizes: validation must not split them


def icon_split(name: str, test_fraction: float) -> str:
    """'test' for a stable `test_fraction` of icon names (by hash), else 'train'."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2 ** 64
    return "test" if h < test_fraction else "train"


def icon_files(source: Path, sizes: tuple[str, ...] = SIZES, min_names: int = 50) -> dict[str, dict[str, list[Path]]]:
    """context -> icon name -> its PNG files (one per size), for contexts with at least `min_names` icons."""
    if not source.is_dir():
        raise DataError(f"{source}: no such folder (install the icons with `{INSTALL_HINT}`)")
    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for size in sizes:
        for path in sorted((source / size).glob("*/*.png")):
            if not path.is_symlink():  # the theme links aliases to the same drawing: count each drawing once
                found[path.parent.name][path.stem].append(path)
    return {c: dict(icons) for c, icons in sorted(found.items()) if len(icons) >= min_names}


def write_icons(out: str | Path, source: str | Path | None = None, test_fraction: float = 0.2,
                sizes: tuple[str, ...] = SIZES, min_names: int = 50,
                progress: bool = True) -> dict[str, dict[str, int]]:
    """Copy the icons into OUT/{train,test}/<context>/<size>-<name>.png; return images per split and class."""
    out, source = Path(out), Path(source) if source is not None else DEFAULT_SOURCE
    contexts = icon_files(source, sizes, min_names)
    if not contexts:
        raise DataError(f"{source}: no icon contexts found (install the icons with `{INSTALL_HINT}`)")
    counts: dict[str, dict[str, int]] = {"train": defaultdict(int), "test": defaultdict(int)}
    jobs = [(c, name, p) for c, icons in contexts.items() for name, paths in icons.items() for p in paths]
    for context, name, path in tqdm(jobs, desc="writing icons", unit="img", disable=not progress):
        split = icon_split(name, test_fraction)
        dest = out / split / context / f"{path.parent.parent.name}-{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        counts[split][context] += 1
    return {s: dict(c) for s, c in counts.items()}
