"""The advisor: the best whole recipe for a folder, synthetic or not, chosen on a validation split of the training
folder only (test/ is never opened).

Stages, each keeping the best so far: the classifier baseline (augmentation policies by successive halving, then
imbalance losses where classes are uneven); one mix of the generator's images at default sampling (`PROBE_USE`),
which decides whether the sampling search runs (not where the mix is clearly below the baseline); the teacher of soft
labels and filters, where the search or a top-up needs one (the baseline's loss, its budget following the folder, at
half that budget and all of it); the sampling of the generator (snapshots, latent scale, confidence filter, hard or
soft labels), scored by a short classifier on fresh samples alone; whether mixing them into the real images beats
the best baseline at all, at which ratio and mix recipe; last, on a folder with rare classes, a top-up of them,
shaped class by class (`synthaug.topup`). Every classifier trains under the chosen baseline and is scored by
balanced accuracy on the validation split.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug.classify import ClassifierRecipe, describe_recipe, imbalance_part, teacher_budget, with_baseline
from synthaug.conditions import Condition, GeneratorPoolSource, TensorSource
from synthaug.config import SamplingConfig
from synthaug.data.folder import LabelledImages, load_image_folder
from synthaug.device import resolve_device, run_parallel, trial_workers
from synthaug.errors import SynthaugError
from synthaug.runs import GENERATOR_FILE, run_folder_of, snapshot_files, write_sampling
from synthaug.sampler import Sampler, needs_teacher, teacher_on
from synthaug.selection import (MARGIN_SE, BaselineChoice, balanced_accuracy, balanced_of, choose_baseline,
                                exceeds_noise, format_choice, paired_gain, rare_classes, trial_outcomes,
                                validation_split, warn_near_copies)
from synthaug.topup import choose_top_up
from synthaug.sources import resolve_source

LATENT_SCALES = (0.8, 1.0, 1.25)
MIN_CONFIDENCES = (None, 0.5, 0.9)
USES = ((0.5, "concat"), (1.0, "concat"), (1.0, "finetune"))  # (synthetic images per real one, mix recipe)
TUNE_RECIPE = ClassifierRecipe(steps=400, seed=0)
SAMPLING_SHARE = 0.5  # sampling trials (synthetic images alone, only to rank settings) train for this share of steps
# The use tried first, at default sampling: the mix recipe that measured best (docs/results-sampling.md). Where it
# is clearly below the baseline (by the margin that synthetic data must clear above it to be adopted), the sampling
# search is skipped: synthetic data would have to gain twice that margin from it, and its largest lever measured so
# far, soft labels, moved a 1:1 mix by 0.2 points (docs/results-sampling.md); on Fashion-MNIST 3,000 the search cost
# a mix 2.0 points (docs/performance.md).
PROBE_USE = (1.0, "finetune")
REACH_SE = MARGIN_SE
SAMPLING_SEARCHES = ("auto", "full")


@dataclasses.dataclass
class Search:
    """What one tune run works with: the split, the teacher, the baseline recipe, the device and the scores."""

    source: Path
    train: LabelledImages
    val: LabelledImages
    teacher: torch.nn.Module | None  # None until a trial needs one
    recipe: ClassifierRecipe
    device: torch.device
    bar: Any
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    outcomes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def score(self, sampling: SamplingConfig, stage: str, ratio: float | None = None, mix: str = "concat") -> float:
        """Validation balanced accuracy of a classifier on fresh samples: alone (ratio None; a shorter budget, to
        rank settings) or mixed into the real images at `ratio` with `mix`."""
        self.prefetch(stage, [(sampling, ratio, mix)])
        self.bar.update(1)
        return self.scores[self.key(sampling, ratio, mix)]

    def prefetch(self, stage: str, trials: list[tuple[SamplingConfig, float | None, str]]) -> None:
        """Score the trials not scored yet, side by side on the CPU's cores (`run_parallel`)."""
        todo = list({self.key(*t): t for t in trials if self.key(*t) not in self.scores}.values())
        jobs = [(self.condition(*t), dataclasses.replace(self.recipe, steps=self.steps(t[1]))) for t in todo]
        results = run_parallel([functools.partial(_timed_trial, c, self.train, self.val, r, self.device)
                                for c, r in jobs], self.device)
        for (sampling, ratio, mix), (outcomes, seconds, failed) in zip(todo, results):
            key = self.key(sampling, ratio, mix)
            row = {"stage": stage, "sampling": dataclasses.asdict(sampling), "ratio": ratio, "mix": mix,
                   "steps": self.steps(ratio)}
            if failed is not None:  # a filter no image passes: this choice is out, the search goes on
                self.scores[key] = -1.0
                self.rows.append({**row, "val_accuracy": None, "failed": failed})
                continue
            self.outcomes[key] = outcomes
            self.scores[key] = balanced_of(outcomes, self.val.labels.numpy())
            self.rows.append({**row, "val_accuracy": self.scores[key], "seconds": seconds})
            self.bar.set_postfix(stage=stage, acc=f"{100 * self.scores[key]:.2f}")

    def steps(self, ratio: float | None) -> int:
        """A trial's budget: the recipe's when mixed into real images, SAMPLING_SHARE of it for samples alone."""
        return self.recipe.steps if ratio is not None else max(1, int(self.recipe.steps * SAMPLING_SHARE))

    @staticmethod
    def key(sampling: SamplingConfig, ratio: float | None, mix: str = "concat") -> str:
        """What a trial's score and outcomes are kept under (a trial without a teacher, whatever teacher is set)."""
        return repr((without_unused_teacher(sampling), ratio, mix))

    def condition(self, sampling: SamplingConfig, ratio: float | None, mix: str) -> Condition:
        """Fresh samples alone (None) or mixed into the real images at `ratio` with `mix`."""
        sampling = without_unused_teacher(sampling)
        teacher = self.teacher if needs_teacher(sampling, sampling.soft_labels) else None
        pool = GeneratorPoolSource(Sampler(self.source, sampling, device=self.device, teacher=teacher),
                                   self.train.class_names)
        return Condition(pool, ratio, with_real=ratio is not None, soft=sampling.soft_labels,
                         mix="finetune:0.5" if mix == "finetune" else mix)

    def gain(self, sampling: SamplingConfig, ratio: float | None, mix: str, choice: BaselineChoice
             ) -> tuple[float, float]:
        """A trial's paired gain over the baseline on the validation images, and its standard error ((-1, 0) for a
        trial that failed)."""
        outcomes = self.outcomes.get(self.key(sampling, ratio, mix))
        if outcomes is None:
            return -1.0, 0.0
        return paired_gain(outcomes, np.asarray(choice.outcomes), self.val.labels.numpy())

    def best(self, stage: str, candidates: list[SamplingConfig]) -> SamplingConfig:
        """The candidate with the highest validation score (the first on ties)."""
        self.prefetch(stage, [(c, None, "concat") for c in candidates])
        return max(candidates, key=lambda c: self.score(c, stage))


def without_unused_teacher(sampling: SamplingConfig) -> SamplingConfig:
    """`sampling` without its teacher's settings where it needs no teacher (hard labels, no filter)."""
    if needs_teacher(sampling, sampling.soft_labels):
        return sampling
    return dataclasses.replace(sampling, teacher_steps=None, teacher_baseline=None)


def _timed_trial(condition: Condition, train: LabelledImages, val: LabelledImages, recipe: ClassifierRecipe,
                 device: torch.device) -> tuple[np.ndarray | None, float, str | None]:
    """`trial_outcomes`, its seconds, and why it failed (None when it did not)."""
    t = time.perf_counter()
    try:
        return trial_outcomes(condition, train, val, recipe, device)[0], time.perf_counter() - t, None
    except SynthaugError as exc:
        return None, time.perf_counter() - t, str(exc)


def snapshot_candidates(source: Path, last: int = 2) -> list[tuple[str, ...] | None]:
    """generator.pt, each of the last `last` epoch snapshots, and their pool."""
    run = run_folder_of(source)
    snaps = [p.name for p in snapshot_files(run)][-last:] if run is not None else []
    out: list[tuple[str, ...] | None] = [None] + [(s,) for s in snaps]
    if len(snaps) > 1:
        out.append(tuple(snaps))
    return out


def choose_teacher(train: LabelledImages, val: LabelledImages, steps: int | None, baseline: str | None,
                   device: torch.device, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher with the better validation balanced accuracy: at half its folder-following budget and at the
    budget (or at `steps` when given), trained with the baseline's imbalance loss; the two say whether the budget
    has converged."""
    budget = teacher_budget(len(train))
    budgets = [steps] if steps else [budget // 2, budget]
    bars = progress and trial_workers(device, len(budgets)) == 1  # side by side: no interleaved bars
    models = run_parallel([functools.partial(teacher_on, train, b, device, bars,
                                             desc=f"teacher ({b} steps)", baseline=baseline) for b in budgets], device)
    trials = [(balanced_accuracy(model, val), b, model) for b, model in zip(budgets, models)]
    acc, chosen, model = max(trials, key=lambda t: (t[0], -t[1]))  # a tie goes to the cheaper teacher
    return model, {"steps": chosen, "baseline": baseline, "val_balanced_accuracy": acc,
                   "trials": {str(b): a for a, b, _ in trials}}


def tune(source: str | Path, *, real: str | Path | None = None, holdout: float = 0.1,
         recipe: ClassifierRecipe = TUNE_RECIPE, teacher_steps: int | None = None, device: str = "auto",
         write: bool = True, progress: bool = True, baseline: str | None = "auto",
         sampling_search: str = "auto", group_by: str | None = None) -> dict[str, Any]:
    """Advise the best whole recipe for a run's folder: the classifier baseline and, on top of it, whether and how
    to use the run's generator; write it into run/sampling.json.

    `real` defaults to the run's training folder; `holdout` of each class is the validation split. `baseline`
    "auto" searches the baselines; a name fixes one. `sampling_search` "auto" skips the sampling search where
    synthetic data at default sampling is clearly below the baseline (`PROBE_USE`, `REACH_SE`); "full" always runs
    it. `group_by` keeps groups of images (e.g. one drawing at several sizes; see `file_groups`) on one side of the
    validation split. Returns the advice, the verdict and every trial.
    """
    if sampling_search not in SAMPLING_SEARCHES:
        raise SynthaugError(f"unknown sampling search {sampling_search!r} (one of {', '.join(SAMPLING_SEARCHES)})")
    started = time.perf_counter()
    resolved = resolve_source(source)
    source = resolved.path
    real = Path(real) if real is not None else resolved.training_folder()
    gen_shape = resolved.image_shape
    data = load_image_folder(real, gen_shape[-1], gen_shape[0], progress=progress, group_by=group_by)
    train, val = validation_split(data, holdout)
    near_copies = warn_near_copies(train, val, real)
    dev = resolve_device(device)
    if baseline == "auto":
        choice = choose_baseline(train, val, recipe, device=dev, progress=False)
    else:
        named = with_baseline(recipe, baseline or "plain")
        outcomes, _ = trial_outcomes(Condition(), train, val, named, dev)
        choice = BaselineChoice(baseline or "plain", named, balanced_of(outcomes, val.labels.numpy()), (), len(train),
                                len(val), tuple(int(v) for v in outcomes))
    if progress:
        print(f"best baseline: {choice.name} ({describe_recipe(choice.recipe)}), "
              f"{100 * choice.val:.2f}% on validation")
    snaps = snapshot_candidates(source)
    total = len(snaps) + len(LATENT_SCALES) + len(MIN_CONFIDENCES) + 2 + len(USES) + (sampling_search == "auto")
    rare = rare_classes(np.bincount(train.labels.numpy(), minlength=len(train.class_names)).tolist())
    with tqdm(total=total, desc="tune", unit="trial", disable=not progress) as bar:
        s = Search(source, train, val, None, choice.recipe, dev, bar)
        base = SamplingConfig(teacher_baseline=imbalance_part(choice.name))
        reach = within_reach(s, base, choice) if sampling_search == "auto" else None  # a probe needs no teacher
        searched = reach is None or reach["searched"]
        teacher_info = None
        if searched or rare:  # the filter, soft labels and the top-up's shaping need the teacher; nothing else does
            s.teacher, teacher_info = choose_teacher(train, val, teacher_steps, base.teacher_baseline, dev, progress)
            base = dataclasses.replace(base, teacher_steps=teacher_info["steps"])
            if progress:
                print(f"teacher: {teacher_info['steps']} steps, {100 * teacher_info['val_balanced_accuracy']:.2f}% "
                      f"on validation")
        if not searched:
            bar.total = bar.n
            if progress:
                print(f"sampling search skipped: {describe_reach(reach)}")
        uses = search_uses(s, base, snaps) if searched else {}
        if reach is not None:  # the probe is a use measured like the others: it may win
            uses.setdefault((base, *PROBE_USE), reach["val_accuracy"])
    searched_sampling = next(iter(uses))[0]  # the sampling search's choice, or the default where it did not run
    top = max(uses, key=uses.get)  # (sampling, ratio, mix); a tie goes to the searched sampling
    best = top[0]
    top_up = rare_top_up(source, best, train, val, s.teacher, choice.recipe, dev, progress)
    top_up_val = top_up["val_balanced_accuracy"] if top_up and top_up["shape"].classes else -1.0
    # synthetic data must beat the baseline clearly (by more than the validation split's noise), and the top-up
    gain, se = s.gain(*top, choice)
    synthetic = exceeds_noise(gain, se) and uses[top] >= top_up_val
    adopted_top_up = top_up_val > choice.val and not synthetic
    advice = {"baseline": choice.name, "recipe": describe_recipe(choice.recipe),
              "classifier": dataclasses.asdict(choice.recipe),
              "synthetic": {"ratio": top[1], "mix": top[2], "labels": "soft" if best.soft_labels else "hard"}
              if synthetic else None,
              "top_up": {**dataclasses.asdict(top_up["shape"]),
                         "described": top_up["shape"].describe(train.class_names)} if adopted_top_up else None,
              "val_balanced_accuracy": max(choice.val, uses[top] if synthetic else -1.0,
                                           top_up_val if adopted_top_up else -1.0),
              "baseline_val_balanced_accuracy": choice.val}
    result = {"advice": advice, "verdict": verdict(advice, max(uses[top], top_up_val)),
              "top_up": None if top_up is None else {**top_up, "shape": dataclasses.asdict(top_up["shape"])},
              "sampling": dataclasses.asdict(best),
              "baseline": choice.summary(), "teacher": teacher_info,
              "synthetic_only_val_accuracy": s.scores.get(s.key(best, None)), "reach": reach,
              "use_val_accuracy": {f"{r:g} {m}" + ("" if c == searched_sampling else " (default sampling)"): a
                                   for (c, r, m), a in uses.items()},
              "use_gain": {"gain": gain, "standard_error": se},
              "real": str(real), "holdout": holdout, "group_by": group_by,
              "val_near_copies": near_copies, "train_images": len(train), "val_images": len(val),
              "recipe": dataclasses.asdict(recipe), "trials": s.rows, "seconds": time.perf_counter() - started}
    run = run_folder_of(source)
    if write:
        if run is None:
            raise SynthaugError(f"{source}: not inside a run folder; sampling.json goes into a run "
                                f"(the search table is in the result)")
        result["written"] = str(write_sampling(run, best, result))
    return result


def search_uses(s: Search, base: SamplingConfig, snaps: list[tuple[str, ...] | None]
                ) -> dict[tuple[SamplingConfig, float, str], float]:
    """The sampling search from `base` (snapshots, latent scale, filter, labels, each keeping the best), then every
    use of `USES` at the sampling it chose: their validation scores by (sampling, ratio, mix)."""
    best = s.best("snapshots", [dataclasses.replace(base, snapshots=c) for c in snaps])
    best = s.best("latent scale", [dataclasses.replace(best, latent_scale=v) for v in LATENT_SCALES])
    best = s.best("filter", [dataclasses.replace(best, min_confidence=v) for v in MIN_CONFIDENCES])
    best = s.best("labels", [dataclasses.replace(best, soft_labels=v) for v in (False, True)])
    s.prefetch("use", [(best, r, m) for r, m in USES])
    return {(best, r, m): s.score(best, "use", r, m) for r, m in USES}


def within_reach(s: Search, base: SamplingConfig, choice: BaselineChoice) -> dict[str, Any]:
    """Whether the sampling search is worth running: the probe use at default sampling against the baseline on the
    same validation images (searched: not more than REACH_SE standard errors below it)."""
    accuracy = s.score(base, "use", *PROBE_USE)
    gain, se = s.gain(base, *PROBE_USE, choice)
    return {"use": f"{PROBE_USE[0]:g} {PROBE_USE[1]}", "val_accuracy": accuracy, "gain": gain,
            "standard_error": se, "searched": gain >= -REACH_SE * se}


def describe_reach(reach: dict[str, Any]) -> str:
    """What the probe use scored against the baseline, in words."""
    se = reach["standard_error"]
    spread = f"{reach['gain'] / se:+.1f} standard errors" if se else "no spread"
    return (f"synthetic data at default sampling ({reach['use']}) scored {100 * reach['val_accuracy']:.2f}%, "
            f"{100 * reach['gain']:+.2f} points against the baseline ({spread}; the search runs from "
            f"{-REACH_SE:g})")


def rare_top_up(source: Path, sampling: SamplingConfig, train: LabelledImages, val: LabelledImages,
                teacher: torch.nn.Module, recipe: ClassifierRecipe, device: torch.device,
                progress: bool) -> dict[str, Any] | None:
    """For a folder with rare classes: the generator's top-up of them to the largest class (the chosen snapshots
    and latent scale), shaped on validation by `synthaug.topup.choose_top_up`; None for an even folder."""
    counts = np.bincount(train.labels.numpy(), minlength=len(train.class_names))
    rare = rare_classes(counts.tolist())
    if not rare:
        return None
    plain = dataclasses.replace(sampling, min_confidence=None, soft_labels=False)  # the shaping filters and labels
    sampler = Sampler(source, plain, device=device, teacher=teacher)
    remap = sampler.remap_to(train.class_names, source)
    names = {name: int(counts[i]) for i, name in enumerate(train.class_names)}
    blocks = list(sampler.blocks(sampler.top_up_plan({c: names[c] for c in sampler.class_names}, seed=0)))
    images = torch.from_numpy(np.concatenate([b.images for b in blocks]))
    labels = remap[torch.from_numpy(np.concatenate([b.labels for b in blocks]))]
    keep = torch.isin(labels, torch.tensor(rare))  # the plan fills every class short of the largest
    pool = TensorSource(images[keep], labels[keep], alone="top-up only", mixed="real + top-up")
    choice = choose_top_up(train, val, pool, teacher, recipe, rare, device)
    if progress:
        shape = choice["shape"]
        print(f"top-up: {shape.describe(train.class_names) if shape.classes else 'refused'} "
              f"({100 * choice['val_balanced_accuracy']:.2f}% on validation)")
    return choice


def verdict(advice: dict[str, Any], best_mix: float) -> str:
    """One line naming the whole recipe and what synthetic data adds on validation, or that it adds nothing."""
    base = advice["baseline_val_balanced_accuracy"]
    if advice.get("top_up"):
        return (f"{advice['recipe']}, plus a top-up of {advice['top_up']['described']}: "
                f"{100 * (advice['val_balanced_accuracy'] - base):+.2f} points on validation over the best baseline "
                f"alone ({100 * base:.2f}%)")
    if advice["synthetic"] is None:
        return (f"no synthetic data: the best baseline ({advice['recipe']}) scored {100 * base:.2f}% on validation, "
                f"no mix or top-up beat it by more than the validation split's noise (best {100 * best_mix:.2f}%)")
    syn = advice["synthetic"]
    return (f"{advice['recipe']}, plus {syn['ratio']:g} synthetic per real ({syn['labels']} labels, {syn['mix']}): "
            f"{100 * (best_mix - base):+.2f} points on validation over the best baseline alone "
            f"({100 * base:.2f}%)")


def format_trials(result: dict[str, Any]) -> str:
    """The search table: the baseline trials, then stage, setting, ratio and validation score of each trial."""
    teacher = result["teacher"]
    lines = [format_choice(result["baseline"]), "", f"teacher: {teacher['steps']} steps, "
             f"{100 * teacher['val_balanced_accuracy']:.2f}% on validation" if teacher else
             "teacher: none needed (no filter, soft labels or top-up to judge)", "",
             "| stage | snapshots | latent scale | min confidence | labels | use | steps | val balanced accuracy |",
             "|---|---|---:|---:|---|---|---:|---:|"]
    if result.get("reach") and not result["reach"]["searched"]:
        lines[4:4] = [f"sampling search skipped: {describe_reach(result['reach'])}", ""]
    for row in result["trials"]:
        c = row["sampling"]
        snaps = ",".join(c["snapshots"]) if c["snapshots"] else GENERATOR_FILE
        use = "syn only" if row["ratio"] is None else f"x{row['ratio']:g} {row['mix']}"
        acc = "failed" if row["val_accuracy"] is None else f"{100 * row['val_accuracy']:.2f}%"
        lines.append(f"| {row['stage']} | {snaps} | {c['latent_scale']:g} | {c['min_confidence'] or '-'} | "
                     f"{'soft' if c['soft_labels'] else 'hard'} | {use} | {row['steps']} | {acc} |")
    if "val_near_copies" in result:
        groups = f", groups kept whole ({result['group_by']})" if result.get("group_by") else ""
        lines += ["", f"validation: {result['val_images']} images{groups}; "
                      f"{100 * result['val_near_copies']:.1f}% with a near-copy in training"]
    return "\n".join(lines)


__all__ = ["format_trials", "tune"]
