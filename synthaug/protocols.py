"""Benchmark protocols for the questions users ask: does synthetic data help (`compare`), with little real data
(`low-data`), what a perfect generator could buy at all (`headroom`), and for rare classes (`imbalance`, `top-up`).

Each protocol takes its own frozen options dataclass and is found by name in `PROTOCOLS`; `run_protocol` runs one
and writes its report folder. The generator protocols build their training folders as symlink trees over the
real folder (nothing is copied), fit a generator on exactly the data the classifier may see (never on images it
must not), export, and compare; `headroom` mixes in held-out real images instead and fits nothing. Runs and
exports are kept in `work` and reused when present, so a stopped protocol picks up again.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaug.benchmarking import (benchmark, environment, load_real_and_test, rare_cut_indices, resolve_baseline,
                                   stratified_indices, test_split_of)
from synthaug.classify import ClassifierRecipe
from synthaug.conditions import Condition, TensorSource, export_source, run_conditions, standard_conditions
from synthaug.config import ExportConfig, FitSettings, SamplingConfig
from synthaug.data.folder import load_image_folder, scan_folder
from synthaug.device import resolve_device
from synthaug.errors import DataError
from synthaug.exporting import export
from synthaug.registry import Registry
from synthaug.report import (default_report_dir, format_table, below_reference, imbalance_table, low_data_table,
                             write_protocol_report)
from synthaug.runs import has_training_state, is_finished, mark_finished
from synthaug.classify import predict, weights_sha256, with_baseline
from synthaug.data.folder import LabelledImages
from synthaug.sampler import teacher_on
from synthaug.selection import RARE_SHARE, rare_classes, validation_split
from synthaug.fsutil import atomic_write_text
from synthaug.topup import TopUpShape, choose_top_up, shape_top_up, shaped_condition
from synthaug.translate import TranslateConfig, load_translation, save_translation, translated_top_up
from synthaug.sources import ExportSource, GeneratorSource, resolve_source

FIT_EPOCHS_CAP = 10_000  # the protocols' fits end on their minutes or steps budget; the epoch count only caps them
PROTOCOL_FIT = FitSettings(minutes=10.0, augment="translation,cutout", epochs=FIT_EPOCHS_CAP)


@dataclass(frozen=True)
class CommonOptions:
    """What every protocol takes: the real folders, the classifier recipe, seeds, device and report folder."""

    real: str | None = None  # the real training folder (default: the synthetic source's)
    test: str | None = None  # the real test folder (default: test/ beside `real`)
    recipe: ClassifierRecipe = field(default_factory=ClassifierRecipe)
    seeds: int = 1
    device: str = "auto"
    out: str | None = None  # the report folder (default: reports/<data name>-<time>)
    baseline: str | None = "auto"  # the classifier baseline synthetic data is judged on top of (see `benchmark`)
    group_by: str | None = None  # groups of training images validation keeps together (see `file_groups`)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise DataError(f"seeds must be at least 1 (got {self.seeds})")


def _check_ratios(ratios: Sequence[float]) -> None:
    """Mixing ratios are positive."""
    if any(r <= 0 for r in ratios):
        raise DataError(f"ratios must be positive (got {list(ratios)})")


def _check_fractions(fractions: Sequence[float], ratios: Sequence[float], below_one: bool) -> None:
    """Real fractions lie in (0, 1] (or (0, 1) where held-out images must remain); ratios are positive."""
    if not fractions or any(not 0 < f <= 1 or (below_one and f == 1) for f in fractions):
        raise DataError(f"real fractions must lie in (0, {'1)' if below_one else '1]'} (got {list(fractions)})")
    _check_ratios(ratios)


@dataclass(frozen=True)
class CompareOptions(CommonOptions):
    """Real, synthetic only and mixed, at each ratio and mix recipe, with hard and/or soft labels."""

    synthetic: str | None = None  # an HDF5 export, a run folder, a generator file or a pretrained name
    ratios: tuple[float, ...] = (1.0,)
    mixes: tuple[str, ...] = ("concat",)
    labels: str = "auto"
    logreg: bool = False
    sampling: SamplingConfig | None = None  # a generator's sampling (None: its sampling.json)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.synthetic is None:
            raise DataError("the comparison needs a synthetic export or generator")
        _check_ratios(self.ratios)


@dataclass(frozen=True)
class LowDataOptions(CommonOptions):
    """For each fraction of the real folder: a generator fitted on that fraction alone, then the comparison."""

    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    synthetic: str | None = None  # an export made from all of `real`, used for fraction 1 instead of a new fit
    ratios: tuple[float, ...] = (1.0,)
    mixes: tuple[str, ...] = ("concat",)
    labels: str = "auto"
    fit: FitSettings = PROTOCOL_FIT
    work: str | None = None  # folders, runs and exports (default: OUT/work)
    min_per_class: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fractions(self.fractions, self.ratios, below_one=False)


@dataclass(frozen=True)
class HeadroomOptions(CommonOptions):
    """The low-data protocol with a perfect generator: held-out real images in place of synthetic ones."""

    fractions: tuple[float, ...] = (0.01, 0.1)
    ratios: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fractions(self.fractions, self.ratios, below_one=True)


@dataclass(frozen=True)
class RareClassOptions(CommonOptions):
    """What the rare-class protocols add: a work folder, and the teacher of the top-up search."""

    work: str | None = None
    teacher_steps: int | None = None  # the top-up search's teacher (None: its budget follows the folder)
    translated: bool = False  # also the rare classes topped up with common-class images translated into them

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_steps is not None and self.teacher_steps < 1:
            raise DataError(f"teacher steps must be at least 1 (got {self.teacher_steps})")


@dataclass(frozen=True)
class ImbalanceOptions(RareClassOptions):
    """Named classes cut to `keep` of their images; a generator fitted on the cut folder tops them up."""

    rare: tuple[str, ...] = ()
    keep: float = 0.01
    fit: FitSettings = dataclasses.replace(PROTOCOL_FIT, class_balance=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rare:
            raise DataError("the imbalance protocol needs the classes to make rare")
        if not 0 < self.keep < 1:
            raise DataError(f"keep must lie strictly between 0 and 1 (got {self.keep})")


@dataclass(frozen=True)
class TopUpOptions(RareClassOptions):
    """A folder's own rare classes topped up to its largest class from a run."""

    synthetic: str | None = None  # the run, generator file or pretrained name to draw the top-up from
    rare: tuple[str, ...] | None = None  # default: the classes under half the largest
    held_out: str | None = None  # real images of the same classes never in `real`: the ceiling row

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.synthetic is None:
            raise DataError("top-up needs a run or generator file to draw the missing images from")


def subset_folder(real_dir: str | Path, out: str | Path, keep: np.ndarray) -> Path:
    """`out/<class>/<file>` symlinks to the images of `real_dir` at index positions `keep` (scan order)."""
    index = scan_folder(real_dir)
    out = Path(out)
    marker = out / ".synthaug-subset.npy"
    if marker.is_file() and np.array_equal(np.load(marker), keep):
        return out
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and holds another subset; remove it or choose another work folder")
    for name in index.class_names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in keep:
        src = index.root / index.paths[i]
        dst = out / index.class_names[index.labels[i]] / src.name
        if not dst.exists():
            os.symlink(src.resolve(), dst)
    np.save(marker, keep)
    return out


def fit_and_export(folder: Path, work: Path, fit: FitSettings, config: ExportConfig, progress: bool) -> Path:
    """Fit a generator on `folder` (or reuse a finished one) and export `config` from it (or reuse the export);
    the export's teacher, when it has one, learns from `folder` alone."""
    from synthaug.train import fit as fit_gan  # protocols fit generators on purpose; the benchmark never does

    run = work / "run"
    if not is_finished(run):
        fit_gan(folder, run, fit, resume=has_training_state(run), progress=progress)
        mark_finished(run)
    soft = config.sampling is not None and config.sampling.soft_labels
    syn = work / ("synthetic-soft.h5" if soft else "synthetic.h5")
    if not syn.is_file():
        export(run, syn, dataclasses.replace(config, resume=True, real=str(folder)), progress=progress)
    return syn


def work_folder(options: Any) -> Path:
    """Where a protocol keeps its folders, runs and exports."""
    return Path(options.work) if options.work else report_folder(options) / "work"


def report_folder(options: CommonOptions) -> Path:
    """The report folder: `out`, else reports/<data name>-<time>."""
    return Path(options.out) if options.out else default_report_dir(real_folder(options))


def real_folder(options: CommonOptions) -> Path:
    """The real training folder: `real`, else the one the synthetic source's run was trained on."""
    if options.real:
        return Path(options.real)
    synthetic = getattr(options, "synthetic", None)
    if synthetic is None:
        raise DataError("give the real training folder (--real DIR)")
    return resolve_source(synthetic).training_folder()


def compare(o: CompareOptions, progress: bool = True) -> dict[str, Any]:
    """Real / synthetic / mixed on one source; see `synthaug.benchmark`."""
    source = resolve_source(o.synthetic)
    if o.sampling is not None and not isinstance(source, GeneratorSource):
        raise DataError(f"{o.synthetic}: sampling settings apply to a generator, not to an export")
    return benchmark(real_folder(o), o.test, source, recipe=o.recipe, ratios=o.ratios, seeds=o.seeds,
                     logreg=o.logreg, device=o.device, out=report_folder(o), progress=progress, mixes=o.mixes,
                     labels=o.labels, sampling=o.sampling, baseline=o.baseline, group_by=o.group_by)


def low_data(o: LowDataOptions, progress: bool = True) -> dict[str, Any]:
    """For each fraction: a generator fitted on that fraction only, and the classifier trained on real, synthetic
    and real + synthetic at the ratios and mix recipes, tested on the real test folder. Unless `labels` is "hard"
    the export carries soft labels from a teacher trained on the fraction alone."""
    real_dir, work = real_folder(o), work_folder(o)
    index = scan_folder(real_dir)
    class_ids = np.asarray(index.labels)
    rows = {}
    for f in o.fractions:
        keep = stratified_indices(class_ids, f, seed=0)
        folder = Path(real_dir) if f == 1.0 else subset_folder(real_dir, work / f"real-{f:g}", keep)
        per_class = max(o.min_per_class, int(np.ceil(max(o.ratios) * len(keep) / len(index.class_names))))
        if f == 1.0 and o.synthetic is not None:
            syn = Path(o.synthetic)
        else:
            config = ExportConfig(per_class=per_class, sampling=SamplingConfig(soft_labels=o.labels != "hard"))
            syn = fit_and_export(folder, work / f"gan-{f:g}", o.fit, config, progress)
        report = benchmark(folder, o.test or test_split_of(real_dir), syn, recipe=o.recipe, ratios=o.ratios,
                           seeds=o.seeds, device=o.device, progress=progress, mixes=o.mixes, labels=o.labels,
                           baseline=o.baseline, group_by=o.group_by)
        rows[f"{f:g}"] = {"fraction": f, "real_images": int(len(keep)), "synthetic": str(syn),
                          "results": report["results"]}
    return {"protocol": "low_data", "real": str(real_dir), "fractions": list(o.fractions), "ratios": list(o.ratios),
            "rows": rows, "class_names": list(index.class_names), "fit_settings": o.fit.set(),
            "recipe": dataclasses.asdict(o.recipe), **environment(resolve_device(o.device))}


def held_out_split(labels: np.ndarray, fraction: float, ratio: float,
                   source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """`low_data`'s stratified subset for `fraction`, and `ratio` times its size of the other images, per class."""
    keep = stratified_indices(labels, fraction, seed=0)
    rest = np.setdiff1d(np.arange(len(labels)), keep)
    want = int(np.ceil(ratio * len(keep)))
    if want > len(rest):
        raise DataError(f"{source}: fraction {fraction:g} at ratio {ratio:g} needs {want} held-out images, "
                        f"but only {len(rest)} remain; use a smaller fraction or ratio")
    return keep, rest[stratified_indices(labels[rest], want / len(rest), seed=1)]


def headroom(o: HeadroomOptions, progress: bool = True) -> dict[str, Any]:
    """Each fraction of the real folder (the same subset as `low_data`'s) mixed at the ratios with held-out real
    images of the same folder, disjoint from it and drawn per class, in place of synthetic ones; the same
    classifier recipe. Its gains bound what any generator fitted on that fraction can add at that budget."""
    real_dir = real_folder(o)
    full, test, test_dir = load_real_and_test(real_dir, o.test, None, progress, o.group_by)
    labels = full.labels.numpy()
    dev = resolve_device(o.device)
    rows = {}
    for f in o.fractions:
        keep, held = held_out_split(labels, f, max(o.ratios), real_dir)
        oracle, real = full.subset(held), full.subset(keep)
        source = TensorSource(oracle.images, oracle.labels, alone="held-out only", mixed="real + held-out")
        best, how = resolve_baseline(o.baseline, real, o.recipe, None, dev, 0.1, progress)
        conditions = standard_conditions(source, o.ratios, ("concat",), ("hard",), best)
        rows[f"{f:g}"] = {"fraction": f, "real_images": len(keep), "held_out_images": len(held),
                          "baseline": best, "baseline_choice": how,
                          "results": run_conditions(conditions, real, test, o.recipe, o.seeds, dev, progress)}
    return {"protocol": "headroom", "real": str(real_dir), "test": str(test_dir), "fractions": list(o.fractions),
            "ratios": list(o.ratios), "rows": rows, "class_names": list(full.class_names),
            "seeds": [o.recipe.seed + s for s in range(o.seeds)], "recipe": dataclasses.asdict(o.recipe),
            **environment(dev)}


def imbalance(o: ImbalanceOptions, progress: bool = True) -> dict[str, Any]:
    """Make the `rare` classes keep only `keep` of their images, fit a generator on the imbalanced set alone
    (class-balanced sampling unless the fit settings say otherwise) and compare, on rare-class recall, the set as
    it is, with a class-weighted loss, and topped up to the largest class with its images."""
    real_dir, work = real_folder(o), work_folder(o)
    index = scan_folder(real_dir)
    rare_ids = class_ids_of(index.class_names, o.rare, real_dir)
    keep = rare_cut_indices(np.asarray(index.labels), rare_ids, o.keep)
    folder = subset_folder(real_dir, work / "real-imbalanced", keep)
    syn = fit_and_export(folder, work / "gan-imbalanced", o.fit, ExportConfig(balance_to=str(folder)), progress)
    held = np.setdiff1d(np.arange(len(index.labels)), keep)  # the cut images: the ceiling's top-up
    report = rare_class_comparison(folder, o.test or test_split_of(real_dir), ExportSource(syn), rare_ids,
                                   o.recipe, o.seeds, o.device, progress, rare_rows(o.translated), o.baseline,
                                   held_out=(real_dir, held), work=work, teacher_steps=o.teacher_steps,
                                   group_by=o.group_by)
    return {**report, "protocol": "imbalance", "real": str(real_dir), "keep_fraction": o.keep,
            "fit_settings": o.fit.set()}


def class_ids_of(class_names: Sequence[str], names: Sequence[str], folder: str | Path) -> list[int]:
    """The indices of `names` among a folder's classes; a one-line error names any it lacks."""
    unknown = [c for c in names if c not in class_names]
    if unknown:
        raise DataError(f"{folder}: no class(es) {unknown}; it has {list(class_names)}")
    return [list(class_names).index(c) for c in names]


def rare_recall(runs: Sequence[dict[str, Any]], rare_ids: Sequence[int]) -> tuple[float, float]:
    """Mean and std over runs of each run's mean recall over the classes `rare_ids`."""
    per_run = [np.mean([r["per_class_recall"][c] for c in rare_ids]) for r in runs]
    return float(np.mean(per_run)), float(np.std(per_run))


# the kinds of rare-class rows, in order; the translated top-up (`synthaug.translate`) only on request
RARE_ROWS = ("real", "baseline", "top-up", "tuned top-up", "translated top-up", "ceiling")


def rare_rows(translated: bool) -> tuple[str, ...]:
    """The rare-class rows a protocol trains: all of them, the translated top-up only where asked for."""
    return RARE_ROWS if translated else tuple(r for r in RARE_ROWS if r != "translated top-up")


def rare_conditions(top_up: TensorSource, baseline: str | None, ceiling: TensorSource | None = None,
                    tuned: TensorSource | None = None,
                    translated: TensorSource | None = None) -> dict[str, Condition]:
    """The rare-class conditions by kind: the folder as it is; under the best baseline (without one: a
    class-weighted loss); topped up with synthetic images on top of that baseline, as they come and as shaped on
    validation (`synthaug.topup`); with common-class images translated into the rare classes
    (`synthaug.translate`); and, where held-out real images of the rare classes exist, topped up with those
    instead (the ceiling a perfect generator would reach)."""
    out = {"real": Condition(), "baseline": Condition(baseline=baseline or "weighted"),
           "top-up": Condition(top_up, baseline=baseline)}
    if tuned is not None:
        out["tuned top-up"] = shaped_condition(tuned, baseline)
    if translated is not None:
        out["translated top-up"] = Condition(translated, baseline=baseline)
    if ceiling is not None:
        out["ceiling"] = Condition(ceiling, baseline=baseline)
    return out


def tuned_top_up(real: LabelledImages, top_up: TensorSource, rare_ids: Sequence[int], recipe: ClassifierRecipe,
                 device: torch.device, progress: bool, keep: Path | None = None,
                 teacher_steps: int | None = None) -> tuple[TensorSource, dict[str, Any]]:
    """The top-up shaped on a validation split of `real` (`synthaug.topup.choose_top_up`, its teacher trained with
    the recipe's imbalance loss on the split's train part for `teacher_steps`, None: the folder's budget), then
    applied to all of `real`, labelled and filtered by the same teacher. `keep` (a JSON file) holds the choice, so a
    rerun of the same work does not search again."""
    train, val = validation_split(real, 0.1)
    loss = None if recipe.loss == "ce" else recipe.loss
    teacher = teacher_on(train, teacher_steps, device, progress, desc="top-up teacher (train split)", baseline=loss)
    # search 2: its soft-label trial trains on the soft labels (search 1 trained the hard ones again under that name)
    wanted = {"recipe": dataclasses.asdict(recipe), "rare": list(rare_ids), "top_up_images": len(top_up.labels),
              "search": 2, **({} if teacher_steps is None else {"teacher_steps": teacher_steps})}
    saved = json.loads(keep.read_text(encoding="utf-8")) if keep is not None and keep.is_file() else {}
    if saved.get("for") == wanted:
        choice = {**saved["choice"], "shape": TopUpShape.from_dict(saved["choice"]["shape"])}
    else:
        choice = choose_top_up(train, val, top_up, teacher, recipe, rare_ids, device)
        if keep is not None:
            atomic_write_text(keep, json.dumps({"for": wanted, "choice": {**choice,
                                                                          "shape": dataclasses.asdict(choice["shape"])}}))
    shape = choice["shape"]
    if progress:
        print(f"top-up chosen on validation: {shape.describe(real.class_names) if shape.classes else 'none'}")
    probs = predict(teacher, top_up.images)
    counts = np.bincount(real.labels.numpy(), minlength=len(real.class_names))
    shaped = shape_top_up(top_up, counts, shape, probs)
    shaped.mixed = "real + tuned synthetic top-up"
    summary = {**choice, "shape": dataclasses.asdict(shape), "described": shape.describe(real.class_names)}
    return shaped, summary


def translated_rare(real: LabelledImages, want: np.ndarray, baseline: str | None, recipe: ClassifierRecipe,
                    teacher_steps: int | None, device: torch.device, progress: bool,
                    keep: Path | None = None,
                    config: TranslateConfig | None = None) -> tuple[TensorSource, dict[str, Any]]:
    """`want[c]` images of each class c translated from larger classes (`synthaug.translate`) by a classifier trained
    on `real` with the baseline's imbalance remedy (a class-weighted loss where the baseline has none: a plain
    classifier hardly ever gives a rare class the confidence a translation needs), and what it did per class.
    `keep` (an .npz file) holds the translation, so a rerun of the same work does not translate again; `config`
    None: the defaults, seeded by the recipe."""
    remedy = with_baseline(recipe, baseline).loss if baseline else "ce"
    g = teacher_on(real, teacher_steps, device, progress, desc="translation classifier",
                   baseline=remedy if remedy != "ce" else "weighted")
    config = config or TranslateConfig(seed=recipe.seed)
    key = {"classifier": weights_sha256(g), "want": [int(w) for w in want], "config": dataclasses.asdict(config)}
    translation = None if keep is None else load_translation(keep, key)
    if translation is None:
        translation = translated_top_up(real, g, want, config)
        if keep is not None:
            save_translation(translation, keep, key)
    if progress:
        print("translated into the rare classes: " + ", ".join(
            f"{c} {v['translated']} of {v['wanted']}" for c, v in translation.per_class.items()))
    return translation.source, {"per_class": translation.per_class, "classifier_steps": g.trained_recipe.steps,
                                "classifier_loss": g.trained_recipe.loss, "config": dataclasses.asdict(config),
                                "saved": None if keep is None else str(keep)}


def rare_class_comparison(folder: str | Path, test_dir: str | Path | None, synthetic: ExportSource,
                          rare_ids: Sequence[int], recipe: ClassifierRecipe, seeds: int = 1, device: str = "auto",
                          progress: bool = True, rows: Sequence[str] = rare_rows(False), baseline: str | None = "auto",
                          held_out: tuple[str | Path, np.ndarray] | None = None, work: Path | None = None,
                          teacher_steps: int | None = None, group_by: str | None = None) -> dict[str, Any]:
    """Per-class recall of a classifier trained on `folder` under each kind of `rows` (see `rare_conditions`), the
    real images decoded at the top-up's shape; `rare_recall` is the mean over `rare_ids`. `baseline` as in
    `benchmark` (chosen on a validation split of `folder`); `held_out` (a folder and the scan positions of real
    images never in `folder`) gives the ceiling row, at the same per-class counts as the synthetic top-up. `work`
    keeps the top-up choice and a journal of finished runs, so a stopped comparison resumes there; `teacher_steps`
    trains the top-up search's teacher (None: the folder's budget); `group_by` as in `benchmark`."""
    real, test, test_dir = load_real_and_test(folder, test_dir, synthetic.image_shape, progress, group_by)
    top_up = export_source(synthetic.path, real.class_names, alone="synthetic top-up only",
                           mixed="real + synthetic top-up")
    ceiling = None
    if held_out is not None and "ceiling" in rows:
        pool = load_image_folder(held_out[0], real.images.shape[-1], real.images.shape[1], progress=progress)
        pool = pool.subset(held_out[1])
        counts = torch.bincount(top_up.labels, minlength=len(real.class_names)).numpy()
        pick = np.concatenate([np.flatnonzero(pool.labels.numpy() == c)[:n] for c, n in enumerate(counts)])
        ceiling = TensorSource(pool.images[pick], pool.labels[pick], alone="held-out top-up only",
                               mixed="real + held-out real top-up")
    unknown = set(rows) - set(RARE_ROWS)
    if unknown:
        raise DataError(f"unknown rare-class rows {sorted(unknown)} (of {list(RARE_ROWS)})")
    dev = resolve_device(device)
    best, how = resolve_baseline(baseline, real, recipe, None, dev, 0.1, progress)
    tuned, top_up_choice = None, None
    if "tuned top-up" in rows:
        tuned, top_up_choice = tuned_top_up(real, top_up, rare_ids, with_baseline(recipe, best) if best else recipe,
                                            dev, progress, None if work is None else work / "top-up-choice.json",
                                            teacher_steps)
    translated, translation = None, None
    if "translated top-up" in rows:
        counts = torch.bincount(top_up.labels, minlength=len(real.class_names)).numpy()
        want = np.where(np.isin(np.arange(len(counts)), rare_ids), counts, 0)  # the synthetic top-up's counts
        translated, translation = translated_rare(real, want, best, recipe, teacher_steps, dev, progress,
                                                  None if work is None else work / "translated.npz")
    known = rare_conditions(top_up, best, ceiling, tuned, translated)
    results = run_conditions([known[k] for k in rows if k in known], real, test, recipe, seeds, dev, progress,
                             None if work is None else work / "runs.json")
    for r in results.values():
        r["rare_recall"], r["rare_recall_std"] = rare_recall(r["runs"], rare_ids)
    counts = np.bincount(real.labels.numpy(), minlength=len(real.class_names))
    return {"protocol": "top_up", "real": str(folder), "test": str(test_dir),
            "rare": [real.class_names[c] for c in rare_ids], "class_counts": counts.tolist(),
            "image_shape": list(real.images.shape[1:]), "rows": {k: known[k].name for k in rows if k in known},
            "baseline": best, "baseline_choice": how, "reference": known["baseline"].name,
            "top_up_choice": top_up_choice, "translation": translation,
            "results": results, "class_names": list(real.class_names), "synthetic": str(synthetic.path),
            "seeds": [recipe.seed + s for s in range(seeds)], "recipe": dataclasses.asdict(recipe),
            **environment(dev)}


def top_up(o: TopUpOptions, progress: bool = True, rows: Sequence[str] | None = None) -> dict[str, Any]:
    """A folder's own imbalance: every class of the real training folder topped up to its largest class with
    the run's images (its sampling.json applies), compared with the folder as it is and with a class-weighted
    loss; `rare` defaults to the classes under half the largest."""
    source = resolve_source(o.synthetic)
    if not isinstance(source, GeneratorSource):
        raise DataError(f"{o.synthetic}: top-up needs a run or generator file to draw the missing images from")
    real_dir = real_folder(o)
    index = scan_folder(real_dir)
    counts = np.bincount(np.asarray(index.labels), minlength=len(index.class_names))
    rare_ids = class_ids_of(index.class_names, o.rare, real_dir) if o.rare else rare_classes(counts.tolist())
    if not rare_ids:
        raise DataError(f"{real_dir}: no class holds under {RARE_SHARE:g} of the largest ({counts.tolist()}); "
                        f"name the rare classes")
    syn = work_folder(o) / "top-up.h5"
    if not syn.is_file():  # a finished top-up is reused, like the protocols' exports
        export(source.path, syn, ExportConfig(balance_to=str(real_dir), real=str(real_dir), resume=True),
               progress=progress)
    held = None if o.held_out is None else (o.held_out, images_not_in(o.held_out, real_dir))
    return rare_class_comparison(real_dir, o.test or test_split_of(real_dir), ExportSource(syn), rare_ids,
                                 o.recipe, o.seeds, o.device, progress, rows or rare_rows(o.translated), o.baseline,
                                 held_out=held,
                                 work=work_folder(o), teacher_steps=o.teacher_steps, group_by=o.group_by)


def images_not_in(pool_dir: str | Path, real_dir: str | Path) -> np.ndarray:
    """Scan positions of `pool_dir`'s images that are not also in `real_dir` (the same file, through any link);
    a one-line error where the two folders' classes differ or nothing is left."""
    pool, real = scan_folder(pool_dir), scan_folder(real_dir)
    if pool.class_names != real.class_names:
        raise DataError(f"{pool_dir}: classes {list(pool.class_names)} differ from {real_dir}'s "
                        f"{list(real.class_names)}")
    taken = {(Path(real.root) / p).resolve() for p in real.paths}
    left = np.array([i for i, p in enumerate(pool.paths) if (Path(pool.root) / p).resolve() not in taken], dtype=int)
    if len(left) == 0:
        raise DataError(f"{pool_dir}: every image is also in {real_dir}; no held-out images for the ceiling")
    return left


@dataclass(frozen=True)
class Protocol:
    """A benchmark protocol: its options type, the function that runs it and the table that shows it."""

    options: type
    run: Callable[[Any, bool], dict[str, Any]]
    table: Callable[[dict[str, Any]], str]


PROTOCOLS: Registry[Protocol] = Registry("benchmark protocol")
PROTOCOLS.add("compare", Protocol(CompareOptions, compare, lambda r: format_table(r) + "\n" + below_reference(r)))
PROTOCOLS.add("low-data", Protocol(LowDataOptions, low_data, low_data_table))
PROTOCOLS.add("headroom", Protocol(HeadroomOptions, headroom, low_data_table))
PROTOCOLS.add("imbalance", Protocol(ImbalanceOptions, imbalance, imbalance_table))
PROTOCOLS.add("top-up", Protocol(TopUpOptions, top_up, imbalance_table))


def protocol_fields(name: str) -> list[str]:
    """The option names a protocol takes."""
    return [f.name for f in dataclasses.fields(PROTOCOLS.get(name).options)]


def run_protocol(name: str, options: CommonOptions, progress: bool = True) -> tuple[dict[str, Any], str, Path]:
    """Run the protocol `name` with its `options`; return the report, its table as Markdown and the report folder
    (report.json, report.md and plots)."""
    protocol = PROTOCOLS.get(name)
    if not isinstance(options, protocol.options):
        raise DataError(f"the {name} protocol takes {protocol.options.__name__}, not {type(options).__name__}")
    folder = report_folder(options)  # resolved once: the default name carries the time
    options = dataclasses.replace(options, out=str(folder))
    report = protocol.run(options, progress)
    if name != "compare":  # the comparison writes its own richer report (samples, ratio plot)
        write_protocol_report(report, folder)
    return report, protocol.table(report), folder
