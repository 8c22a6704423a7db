"""The demo's closing table, read from its report folders (scripts/demo.sh writes them)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{100 * x:.2f}%"


def main(folder: Path) -> None:
    """Print what the demo showed, one row per question."""
    own = json.loads((folder / "own" / "report.json").read_text())["results"]
    shipped = json.loads((folder / "shipped" / "report.json").read_text())["results"]
    rare = json.loads((folder / "rare" / "report.json").read_text())["results"]
    real = own["real"]["accuracy"]
    rows = [("real images only (60,000)", pct(real), ""),
            ("synthetic only: your 2-minute fit (default recipe)", pct(own["synthetic"]["accuracy"]), ""),
            ("synthetic only: the shipped generator (60 CPU minutes)", pct(shipped["synthetic"]["accuracy"]), ""),
            ("synthetic only: shipped generator + teacher's soft labels",
             pct(shipped["synthetic (soft labels)"]["accuracy"]), ""),
            ("the teacher itself (trained on the real images)",
             pct(shipped["teacher alone (real data, its own recipe)"]["accuracy"]), "")]
    for name, label in (("real", "as is"), ("real + class-weighted loss", "+ class-weighted loss"),
                        ("real + synthetic top-up", "+ synthetic top-up")):
        r = rare[name]
        rows.append((f"rare classes at 1%: {label}", pct(r["accuracy"]), f"{100 * r['rare_recall']:.1f}%"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'training data (same CNN, tested on 10,000 real test images)':{width}}  accuracy  rare-class recall")
    for name, acc, recall in rows:
        print(f"{name:{width}}  {acc:>8}  {recall:>17}")
    gain = rare["real + synthetic top-up"]["rare_recall"] - rare["real"]["rare_recall"]
    weighted = rare["real + class-weighted loss"]["rare_recall"] - rare["real"]["rare_recall"]
    best = "the top-up" if gain > weighted else "the class-weighted loss, not the top-up,"
    print(f"\nThe top-up moves rare-class recall by {100 * gain:+.1f} points, a class-weighted loss by "
          f"{100 * weighted:+.1f}: {best} is the better lever here. Synthetic-only rows sit below real-only: mixed "
          f"into all the real data they rarely help; `synthaug tune RUN` says whether yours do.")
    print(f"reports: {folder}/own, {folder}/shipped, {folder}/rare (report.md in each)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
