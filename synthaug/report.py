"""Benchmark report folders: every number as JSON, a Markdown summary and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from synthaug import plots
from synthaug.data.dataset import load_synthetic
from synthaug.fsutil import atomic_write_text


def default_report_dir(real_dir: str | Path, reports: str | Path = "reports") -> Path:
    """reports/<data name>-<UTC time>, naming a split folder (train/...) by its parent."""
    import datetime as _dt

    from synthaug.data.folder import SPLIT_NAMES

    path = Path(real_dir).resolve()
    name = path.parent.name if path.name in SPLIT_NAMES else path.name
    return Path(reports) / f"{name}-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}"


def recall_table(report: dict[str, Any], classes: list[str] | None = None) -> str:
    """Markdown: per-class recall (%) of each condition, for `classes` (default: all)."""
    names = report["class_names"]
    chosen = classes or names
    lines = ["| training data | " + " | ".join(chosen) + " | mean |", "|---|" + "---:|" * (len(chosen) + 1)]
    for cond, r in report["results"].items():
        vals = [100 * r["per_class_recall"][names.index(c)] for c in chosen]
        lines.append(f"| {cond} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {np.mean(vals):.1f} |")
    return "\n".join(lines)


def reference_of(report: dict[str, Any]) -> str | None:
    """The condition every other is judged against: the best baseline when the report has one, else real-only."""
    ref = report.get("reference") or "real"
    return ref if ref in report["results"] else None


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of a benchmark report: condition, training images, accuracy and macro-F1 (mean ± std), and
    the difference to the yardstick (the best baseline, else real-only), marked where a condition scores below it."""
    seeds = len(report.get("seeds", [0]))
    ref = reference_of(report)
    base = report["results"][ref]["accuracy"] if ref else None
    what = "real" if ref == "real" else "best baseline"
    lines = [f"| training data | images | accuracy ({seeds} seed{'s' * (seeds > 1)}) | macro-F1 | vs {what} |",
             "|---|---:|---:|---:|---:|"]
    for name, r in report["results"].items():
        acc = f"{100 * r['accuracy']:.2f}"
        f1 = f"{100 * r['macro_f1']:.2f}"
        if r.get("seeds", 1) > 1:
            acc += f" ± {100 * r['accuracy_std']:.2f}"
            f1 += f" ± {100 * r['macro_f1_std']:.2f}"
        delta = "" if base is None or name == ref else f"{100 * (r['accuracy'] - base):+.2f}"
        if delta and r["accuracy"] < base:
            delta += f" BELOW {what.upper()}"
        lines.append(f"| {name} | {r['train_images']} | {acc}% | {f1} | {delta} |")
    return "\n".join(lines)


def below_reference(report: dict[str, Any]) -> str:
    """One line: the conditions that score below the best baseline (or real-only, without one), or that none does;
    the plain real row is not judged against a baseline it is part of."""
    results, ref = report["results"], reference_of(report)
    if ref is None:
        return ""
    base = results[ref]["accuracy"]
    what = "real-only" if ref == "real" else f"the best baseline, {ref}"
    worse = [n for n, r in results.items() if n not in (ref, "real") and r["accuracy"] < base]
    if not worse:
        return f"no condition scores below {what} ({100 * base:.2f}%)"
    return (f"below {what} ({100 * base:.2f}%): " + ", ".join(
        f"{n} ({100 * (results[n]['accuracy'] - base):+.2f})" for n in worse))


def write_report(report: dict[str, Any], folder: str | Path, synthetic: str | Path | None = None,
                 title: str = "synthaug benchmark") -> Path:
    """Write report.json, report.md and the plots (accuracy vs ratio, per-class recall, confusion, samples)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1))
    results, names = report["results"], report["class_names"]
    plots.accuracy_vs_ratio(results, report.get("ratios", []), folder / "accuracy_vs_ratio.png")
    plots.per_class_recall(results, names, folder / "per_class_recall.png")
    plots.confusion_matrices(results, names, folder / "confusion.png")
    figures = ["accuracy_vs_ratio.png", "per_class_recall.png", "confusion.png"]
    if synthetic is not None:
        images, labels = load_synthetic(synthetic, tuple(names))
        first = np.concatenate([np.flatnonzero(labels.numpy() == c)[:10] for c in range(len(names))])
        plots.class_sample_grid(images[first].numpy(), labels[first].numpy(), names, folder / "samples.png")
        figures.append("samples.png")
    md = [f"# {title}", "", f"Real training data: `{report['real']}` (fraction {report.get('real_fraction', 1)}); "
          f"test: `{report['test']}`; synthetic: `{report.get('synthetic')}`.",
          f"Classifier recipe: `{json.dumps(report['recipe'])}`; seeds {report.get('seeds')}.", "",
          format_table(report), "", below_reference(report), "", "## Per-class recall (%)", "", recall_table(report), ""]
    md += [f"![{f}]({f})" for f in figures]
    atomic_write_text(folder / "report.md", "\n".join(md) + "\n")
    return folder


def low_data_table(report: dict[str, Any]) -> str:
    """Markdown: one row per real fraction, accuracy (mean ± std) of each condition."""
    conds = list(next(iter(report["rows"].values()))["results"])
    lines = ["| real fraction | real images | " + " | ".join(conds) + " |", "|---:|---:|" + "---:|" * len(conds)]
    for row in report["rows"].values():
        cells = [f"{100 * row['results'][c]['accuracy']:.2f} ± {100 * row['results'][c]['accuracy_std']:.2f}"
                 for c in conds]
        lines.append(f"| {row['fraction']:g} | {row['real_images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def imbalance_table(report: dict[str, Any]) -> str:
    """Markdown: accuracy and recall of the rare classes under each imbalance condition."""
    names, rare = report["class_names"], report["rare"]
    lines = ["| training data | accuracy | " + " | ".join(f"recall {c}" for c in rare) + " | mean rare recall |",
             "|---|---:|" + "---:|" * (len(rare) + 1)]
    for cond, r in report["results"].items():
        cells = [f"{100 * r['per_class_recall'][names.index(c)]:.1f}" for c in rare]
        spread = f" ± {100 * r['rare_recall_std']:.1f}" if "rare_recall_std" in r else ""
        lines.append(f"| {cond} | {100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} | "
                     + " | ".join(cells) + f" | {100 * r['rare_recall']:.1f}{spread} |")
    return "\n".join(lines + [gap_closed(report)])


def gap_closed(report: dict[str, Any]) -> str:
    """One line per top-up (synthetic, shaped, translated): how it moves rare-class recall and accuracy against the
    best baseline, and how much of the recall gap to the real-image ceiling it closes."""
    rows, results = report.get("rows", {}), report["results"]
    if "baseline" not in rows:
        return ""
    base = results[rows["baseline"]]
    gap = results[rows["ceiling"]]["rare_recall"] - base["rare_recall"] if "ceiling" in rows else 0.0
    lines = []
    for kind, words in (("top-up", "synthetic top-up"), ("tuned top-up", "shaped synthetic top-up"),
                        ("translated top-up", "translated top-up")):
        if kind not in rows:
            continue
        top = results[rows[kind]]
        line = (f"{words} vs {rows['baseline']}: rare-class recall "
                f"{100 * (top['rare_recall'] - base['rare_recall']):+.1f} points, accuracy "
                f"{100 * (top['accuracy'] - base['accuracy']):+.2f}")
        if gap > 0:
            line += (f"; it closes {100 * (top['rare_recall'] - base['rare_recall']) / gap:.0f}% of the "
                     f"{100 * gap:.1f}-point gap to the real-image ceiling")
        lines.append(line)
    return "\n".join(lines)


def rare_samples(report: dict[str, Any], out: Path) -> bool:
    """The rare classes' real training images beside their synthetic top-up, and their translated one where the
    report has it (False when the real or synthetic images are gone)."""
    from synthaug.data.folder import load_image_folder

    names, shape = report["class_names"], report.get("image_shape")
    if not shape or not Path(report["synthetic"]).is_file() or not Path(report["real"]).is_dir():
        return False
    images, labels = load_synthetic(report["synthetic"], tuple(names))
    real = load_image_folder(report["real"], shape[-1], shape[0], progress=False)
    sets = {"real": (real.images.numpy(), real.labels.numpy()), "synthetic": (images.numpy(), labels.numpy())}
    saved = (report.get("translation") or {}).get("saved")
    if saved and Path(saved).is_file():
        with np.load(saved) as t:  # the translated images only, not the class's own copies
            if t["moved"].any():
                sets["translated"] = (t["images"][t["moved"]], t["labels"][t["moved"]])
    plots.rare_class_samples(sets, [names.index(c) for c in report["rare"]], names, out)
    return True


def write_protocol_report(report: dict[str, Any], folder: str | Path) -> Path:
    """report.json and report.md (and, for the imbalance protocol, recall and confusion plots)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1))
    if report["protocol"] == "low_data":
        md = ["# synthaug low-data benchmark", "", f"Real: `{report['real']}`; generator fitted on each fraction "
              f"alone ({json.dumps(report['fit_settings'])}).", "", low_data_table(report)]
    elif report["protocol"] == "headroom":
        md = ["# synthaug headroom benchmark", "", f"Real: `{report['real']}`; each fraction mixed with held-out "
              "real images of the same folder in place of synthetic ones: what a perfect generator would add.", "",
              low_data_table(report)]
    else:
        plots.per_class_recall(report["results"], report["class_names"], folder / "per_class_recall.png")
        plots.confusion_matrices(report["results"], report["class_names"], folder / "confusion.png")
        if report["protocol"] == "top_up":
            intro = (f"# synthaug top-up benchmark\n\nEvery class of `{report['real']}` (counts "
                     f"{report['class_counts']}) topped up to the largest from `{report['synthetic']}`; rare classes "
                     f"{report['rare']}.")
        else:
            intro = (f"# synthaug imbalance benchmark\n\nRare classes {report['rare']} keep "
                     f"{100 * report['keep_fraction']:g}% of their images (counts {report['class_counts']}); the "
                     f"generator is fitted on the imbalanced set alone.")
        md = [intro, "", imbalance_table(report), "",
              "![per-class recall](per_class_recall.png)", "![confusion](confusion.png)"]
        if rare_samples(report, folder / "rare_samples.png"):
            md.append("![rare classes: real (top), synthetic (below), translated where asked for](rare_samples.png)")
    atomic_write_text(folder / "report.md", "\n".join(md) + "\n")
    return folder
