"""Built-in pretrained generators shipped inside the package (EMA weights only, a few MB)."""
from __future__ import annotations

from pathlib import Path

from synthaug.errors import CheckpointError

_DIR = Path(__file__).parent / "pretrained"


def list_pretrained() -> list[str]:
    """Names of the shipped generators."""
    return sorted(p.stem for p in _DIR.glob("*.pt")) if _DIR.is_dir() else []


def pretrained_path(name: str) -> Path:
    """The generator file of a shipped model."""
    path = _DIR / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"no pretrained generator {name!r} (have: {', '.join(list_pretrained()) or 'none'})")
    return path
