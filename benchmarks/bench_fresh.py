"""What fresh samples every epoch cost: classifier epochs on an export held in memory against epochs whose images
are generated anew (and, optionally, soft-labelled by a teacher), measured in one run.

    python benchmarks/bench_fresh.py [--source fashion-mnist] [--images 25600] [--repeats 3] [--json out.json]
        [--soft] [--filter 0.9 --teacher data/fashion/train]

Each repeat times one epoch of each kind back to back (same CNN recipe, batch 128); the table gives the median of
each and their ratio. Ratios within one run are what to compare; bare times depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

import synthaug
from synthaug.conditions import GeneratorPoolSource
from synthaug.classify import ClassifierRecipe, Phase, TensorPool, build_classifier, train_on_phases
from synthaug.engine import generate
from synthaug.sampler import Sampler, resolve_sampling


def epoch_seconds(phases: list[Phase], num_classes: int, recipe: ClassifierRecipe) -> float:
    """Wall time of training through `phases` once."""
    start = time.perf_counter()
    train_on_phases(phases, num_classes, recipe, "cpu", progress=False)
    return time.perf_counter() - start


def fresh(source, names: tuple[str, ...], teacher: torch.nn.Module | None,
          min_confidence: float | None = None) -> GeneratorPoolSource:
    """Fresh epochs from `source` (a run's own sampling settings, e.g. latent scale and snapshots, apply), soft
    labels available when a `teacher` is given, filtered by it at `min_confidence`."""
    sampling = dataclasses.replace(resolve_sampling(source, None), min_confidence=min_confidence, soft_labels=False)
    sampler = Sampler(source, sampling, soft=teacher is not None, teacher=teacher)
    return GeneratorPoolSource(sampler, names)


def main() -> None:
    """Print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="fashion-mnist", help="run folder, generator file or pretrained name")
    ap.add_argument("--images", type=int, default=25_600, help="images per epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--soft", action="store_true", help="also time fresh epochs with a teacher's soft labels")
    ap.add_argument("--filter", type=float, default=None, metavar="P",
                    help="also time fresh epochs filtered by the teacher at P, with --soft also soft-labelled "
                         "(needs --teacher)")
    ap.add_argument("--teacher", default=None, metavar="DIR",
                    help="train the teacher on this real folder (a filter needs a real teacher; timing alone does not)")
    ap.add_argument("--teacher-steps", type=int, default=1500)
    ap.add_argument("--json", default="bench_fresh.json")
    args = ap.parse_args()
    source = synthaug.pretrained_path(args.source) if args.source in synthaug.list_pretrained() else args.source
    gen = synthaug.load_generator(source)
    per_class = args.images // gen.num_classes
    steps = per_class * gen.num_classes // 128
    recipe = ClassifierRecipe(steps=steps)
    labels = torch.arange(gen.num_classes).repeat_interleave(per_class)
    file_pool = TensorPool(generate(gen, labels.numpy(), seed=0), labels)
    names = tuple(gen.class_names)
    c, _, r = gen.image_shape
    timing_only = build_classifier("cnn", c, gen.num_classes, r).eval()  # timing soft labels: any weights do
    teacher = timing_only if args.soft or args.filter is not None else None
    if args.teacher:
        from synthaug.sampler import teacher_for_folder

        teacher = teacher_for_folder(args.teacher, gen.image_shape, names, args.teacher_steps)
    kinds = {"export in memory": lambda: [Phase(steps, [file_pool], [1.0])],
             "fresh every epoch": lambda: [Phase(steps, [fresh(source, names, None).pool(args.images, None, 1, False)],
                                                 [1.0])]}
    if args.soft:
        kinds["fresh + soft labels"] = lambda: [Phase(steps, [fresh(source, names, teacher).pool(args.images, None, 1,
                                                                                              True)], [1.0])]
    if args.filter is not None:
        kinds[f"fresh + filter {args.filter:g}"] = lambda: [Phase(steps, [fresh(
            source, names, teacher, args.filter).pool(args.images, None, 1, False)], [1.0])]
    if args.filter is not None and args.soft:
        kinds[f"fresh + soft labels + filter {args.filter:g}"] = lambda: [Phase(steps, [fresh(
            source, names, teacher, args.filter).pool(args.images, None, 1, True)], [1.0])]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for name, phases in kinds.items():
            times[name].append(epoch_seconds(phases(), gen.num_classes, recipe))
    base = statistics.median(times["export in memory"])
    print(f"| epoch of {steps * 128} images (CNN, batch 128) | median s | ÷ export in memory |\n|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {statistics.median(ts) / base:.2f} |")
    result = {"source": str(source), "images_per_epoch": steps * 128, "repeats": args.repeats,
              "threads": torch.get_num_threads(), "seconds": times,
              "ratio": {k: statistics.median(v) / base for k, v in times.items()}}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
