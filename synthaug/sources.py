"""Where synthetic images come from, resolved once: an HDF5 export, or a generator (a run folder, a generator
file or a pretrained name). Everything downstream asks the resolved source, never the path's suffix."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from synthaug.data.h5format import H5_SUFFIXES, ExportInfo, validate_export
from synthaug.errors import DataError
from synthaug.pretrained import list_pretrained, pretrained_path
from synthaug.runs import generator_file, load_safe, model_config_from, read_run_config, training_folder

@dataclass(frozen=True)
class ExportSource:
    """A synthaug HDF5 export: a fixed set of images (and maybe soft labels)."""

    path: Path
    kind = "export"

    @functools.cached_property
    def info(self) -> ExportInfo:
        """The validated header of the export."""
        return validate_export(self.path)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the exported images."""
        return tuple(self.info.image_shape)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The export's classes, in its label order."""
        return tuple(self.info.class_names)

    @property
    def has_soft_labels(self) -> bool:
        """Whether the export stores a teacher's soft labels (format version 2)."""
        return bool(self.info.has_soft_labels)

    @property
    def provenance(self) -> dict[str, Any]:
        """How the export was made (run, checkpoint, seed, sampling, teacher)."""
        return self.info.provenance

    def training_folder(self) -> Path:
        """The training folder of the run the export came from (its provenance and the run's config.json), or else
        the folder its teacher learnt from (a pretrained generator has no run)."""
        run = self.provenance.get("run")
        if run and (Path(run) / "config.json").is_file():
            return Path(read_run_config(run).data.root)
        for key in ("teacher_real", "confidence_real"):
            if self.provenance.get(key) and Path(self.provenance[key]).is_dir():
                return Path(self.provenance[key])
        raise DataError(f"{self.path}: its run folder is unknown or gone; pass --real DIR")


@dataclass(frozen=True)
class GeneratorSource:
    """A trained generator: a run folder, a generator file or a shipped pretrained one; fresh images on demand."""

    path: Path
    kind = "generator"

    @functools.cached_property
    def _model(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """(image shape, class names) from the generator file's header."""
        path = generator_file(self.path)
        obj = load_safe(path)
        cfg = model_config_from(obj, str(path))
        return (cfg.channels, cfg.resolution, cfg.resolution), tuple(obj.get("class_names", ()))

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the generator's images."""
        return self._model[0]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The generator's classes, in its label order."""
        return self._model[1]

    def training_folder(self) -> Path:
        """The real training folder recorded in the run."""
        return training_folder(self.path)


SyntheticSource = ExportSource | GeneratorSource


def resolve_source(value: str | Path | SyntheticSource) -> SyntheticSource:
    """An export (an HDF5 file by its content), or a generator: a run folder, a generator file, a pretrained name."""
    if isinstance(value, (ExportSource, GeneratorSource)):
        return value
    path = Path(value)
    if not path.exists():
        if str(value) in list_pretrained():
            return GeneratorSource(pretrained_path(str(value)))
        raise DataError(f"{path}: no such export, run folder, generator file or pretrained name "
                        f"(pretrained: {', '.join(list_pretrained())})")
    if path.is_file() and (h5py.is_hdf5(path) or path.suffix.lower() in H5_SUFFIXES):
        return ExportSource(path)  # a damaged .h5 file still gets the export's own one-line diagnosis
    return GeneratorSource(path)
