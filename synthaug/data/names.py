"""Class names are data, never paths: checked once where they enter (folders, generator files, exports)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synthaug.errors import DataError

MAX_NAME_LENGTH = 255  # a file-system name


def check_class_names(names: Sequence[object], where: str | Path) -> tuple[str, ...]:
    """The names as strings when each is non-empty, printable, at most 255 characters, free of path separators and
    not '.' or '..', and none repeats; else a one-line DataError naming `where` and the first bad name."""
    out = tuple(str(n) for n in names)
    for name in out:
        problem = None
        if not name or len(name) > MAX_NAME_LENGTH:
            problem = "is empty or longer than 255 characters"
        elif name in (".", "..") or "/" in name or "\\" in name:
            problem = "is a path, not a name"
        elif not name.isprintable():
            problem = "holds unprintable characters"
        if problem:
            raise DataError(f"{where}: class name {name[:60]!r} {problem}")
    seen = set()
    for name in out:
        if name in seen:
            raise DataError(f"{where}: class name {name[:60]!r} appears twice")
        seen.add(name)
    return out


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refusing any result that resolves outside `folder` (a second line of defence)."""
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise DataError(f"{folder}: class name {name[:60]!r} would write outside it")
    return folder / name
