"""Choosing how to sample a generator for downstream accuracy, on a validation split of the training folder only.

The search is coordinate-wise: snapshots (single epochs and a pool of the last ones), then latent scale, then
the confidence filter, then hard vs soft labels, each stage keeping the best value so far; a last stage asks
whether mixing the chosen samples into the real images helps at all, and at which ratio. Every choice is scored
by the validation accuracy of a short classifier trained on fresh samples. The teacher (soft labels, filter) and
the real images of the mixing stage are the training part of the split; test/ is never opened.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from synthaug.classify import ClassifierRecipe, classification_report, predict
from synthaug.conditions import Condition, GeneratorPoolSource, train_condition
from synthaug.config import SamplingConfig
from synthaug.data.folder import LabelledImages, load_image_folder, stratified_split
from synthaug.device import resolve_device
from synthaug.errors import SynthaugError
from synthaug.sampler import Sampler, teacher_on
from synthaug.sources import resolve_source
from synthaug.runs import GENERATOR_FILE, run_folder_of, snapshot_files, write_sampling

LATENT_SCALES = (0.8, 1.0, 1.25, 1.5)
MIN_CONFIDENCES = (None, 0.5, 0.9)
MIX_RATIOS = (0.5, 1.0)
TUNE_RECIPE = ClassifierRecipe(steps=400, seed=0)


@dataclasses.dataclass
class Search:
    """What one tune run works with: the split, the teacher, the device and the scores so far."""

    source: Path
    train: LabelledImages
    val: LabelledImages
    teacher: torch.nn.Module
    recipe: ClassifierRecipe
    device: torch.device
    bar: Any
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    scores: dict[str, float] = dataclasses.field(default_factory=dict)

    def score(self, sampling: SamplingConfig, stage: str, ratio: float | None = None) -> float:
        """Validation accuracy of the short classifier on fresh samples (ratio None: synthetic only; 0: real only)."""
        key = repr((sampling, ratio))
        if key not in self.scores:
            row = {"stage": stage, "sampling": dataclasses.asdict(sampling), "ratio": ratio}
            try:
                model, _ = train_condition(self.condition(sampling, ratio), self.train, self.recipe, self.device)
            except SynthaugError as exc:  # a filter no image passes: this choice is out, the search goes on
                self.scores[key] = -1.0
                self.rows.append({**row, "val_accuracy": None, "failed": str(exc)})
            else:
                pred = predict(model, self.val.images).argmax(1).numpy()
                acc = classification_report(self.val.labels.numpy(), pred, len(self.train.class_names))["accuracy"]
                self.scores[key] = acc
                self.rows.append({**row, "val_accuracy": acc})
                self.bar.set_postfix(stage=stage, acc=f"{100 * acc:.2f}")
        self.bar.update(1)
        return self.scores[key]

    def condition(self, sampling: SamplingConfig, ratio: float | None) -> Condition:
        """Real only (ratio 0), fresh samples alone (None) or mixed into the real images at `ratio`."""
        if ratio == 0:
            return Condition()
        pool = GeneratorPoolSource(Sampler(self.source, sampling, device=self.device, teacher=self.teacher),
                                   self.train.class_names)
        return Condition(pool, ratio, with_real=ratio is not None, soft=sampling.soft_labels)

    def best(self, stage: str, candidates: list[SamplingConfig]) -> SamplingConfig:
        """The candidate with the highest validation accuracy (the first on ties)."""
        return max(candidates, key=lambda c: self.score(c, stage))


def snapshot_candidates(source: Path, last: int = 3) -> list[tuple[str, ...] | None]:
    """generator.pt, each of the last `last` epoch snapshots, and their pool."""
    run = run_folder_of(source)
    snaps = [p.name for p in snapshot_files(run)][-last:] if run is not None else []
    out: list[tuple[str, ...] | None] = [None] + [(s,) for s in snaps]
    if len(snaps) > 1:
        out.append(tuple(snaps))
    return out


def tune(source: str | Path, *, real: str | Path | None = None, holdout: float = 0.1,
         recipe: ClassifierRecipe = TUNE_RECIPE, teacher_steps: int = 1500, device: str = "auto",
         write: bool = True, progress: bool = True) -> dict[str, Any]:
    """Search sampling settings of a run (or generator file) by validation accuracy; write run/sampling.json.

    `real` defaults to the run's training folder; `holdout` of each class is the validation split. Returns the
    chosen settings, the recommended use (no synthetic data, or real + synthetic at a ratio) and every score.
    """
    resolved = resolve_source(source)
    source = resolved.path
    real = Path(real) if real is not None else resolved.training_folder()
    gen_shape = resolved.image_shape
    data = load_image_folder(real, gen_shape[-1], gen_shape[0], progress=progress)
    train, val = stratified_split(data, holdout, seed=0)
    dev = resolve_device(device)
    teacher = teacher_on(train, teacher_steps, dev, progress, desc="teacher (train split)")
    snaps = snapshot_candidates(source)
    total = len(snaps) + len(LATENT_SCALES) + len(MIN_CONFIDENCES) + 2 + 1 + len(MIX_RATIOS)
    with tqdm(total=total, desc="tune", unit="trial", disable=not progress) as bar:
        s = Search(source, train, val, teacher, recipe, dev, bar)
        base = SamplingConfig(teacher_steps=teacher_steps)
        best = s.best("snapshots", [dataclasses.replace(base, snapshots=c) for c in snaps])
        best = s.best("latent scale", [dataclasses.replace(best, latent_scale=v) for v in LATENT_SCALES])
        best = s.best("filter", [dataclasses.replace(best, min_confidence=v) for v in MIN_CONFIDENCES])
        best = s.best("labels", [dataclasses.replace(best, soft_labels=v) for v in (False, True)])
        use = {0.0: s.score(best, "use", 0)} | {r: s.score(best, "use", r) for r in MIX_RATIOS}
    ratio = max(use, key=use.get)
    result = {"sampling": dataclasses.asdict(best), "synthetic_only_val_accuracy": s.scores[repr((best, None))],
              "recommended_ratio": ratio, "use_val_accuracy": {f"{r:g}": a for r, a in use.items()},
              "verdict": verdict(ratio, use), "real": str(real), "holdout": holdout,
              "train_images": len(train), "val_images": len(val), "recipe": dataclasses.asdict(recipe),
              "trials": s.rows}
    run = run_folder_of(source)
    if write:
        if run is None:
            raise SynthaugError(f"{source}: not inside a run folder; sampling.json goes into a run "
                                f"(the search table is in the result)")
        result["written"] = str(write_sampling(run, best, result))
    return result


def verdict(ratio: float, use: dict[float, float]) -> str:
    """One line: whether and how to mix the chosen samples into the real images."""
    if ratio == 0.0:
        return (f"no synthetic data: real only scored {100 * use[0.0]:.2f}% on validation, every mix below it "
                f"(best {100 * max(v for r, v in use.items() if r):.2f}%)")
    return (f"mix {ratio:g} synthetic per real: {100 * use[ratio]:.2f}% on validation against "
            f"{100 * use[0.0]:.2f}% for real only")


def format_trials(result: dict[str, Any]) -> str:
    """The search table: stage, setting, ratio and validation accuracy, best of each stage marked."""
    lines = ["| stage | snapshots | latent scale | min confidence | labels | ratio | val accuracy |",
             "|---|---|---:|---:|---|---:|---:|"]
    for row in result["trials"]:
        c = row["sampling"]
        snaps = ",".join(c["snapshots"]) if c["snapshots"] else GENERATOR_FILE
        ratio = "syn only" if row["ratio"] is None else ("real only" if row["ratio"] == 0 else f"{row['ratio']:g}")
        acc = "failed" if row["val_accuracy"] is None else f"{100 * row['val_accuracy']:.2f}%"
        lines.append(f"| {row['stage']} | {snaps} | {c['latent_scale']:g} | {c['min_confidence'] or '-'} | "
                     f"{'soft' if c['soft_labels'] else 'hard'} | {ratio} | {acc} |")
    return "\n".join(lines)


__all__ = ["format_trials", "tune"]
