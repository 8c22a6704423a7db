"""The demo's closing table, read from its report folders (scripts/demo.sh writes them): for each story, plain
real, the best baseline, and the best baseline + synthetic data."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals."""
    return f"{100 * x:.2f}%"


def main(folder: Path) -> None:
    """Print what the demo showed, one row per question, and what synthetic data added on top of the baseline."""
    shipped = json.loads((folder / "shipped" / "report.json").read_text())
    rare = json.loads((folder / "rare" / "report.json").read_text())
    res, ref = shipped["results"], shipped.get("reference") or "real"
    syn = next(n for n in res if n.startswith("mixed x1"))
    rows = [("all 60,000 real images, plain recipe", pct(res["real"]["accuracy"]), ""),
            (f"best baseline ({shipped.get('baseline') or 'plain'})", pct(res[ref]["accuracy"]), ""),
            ("best baseline + shipped generator 1:1, soft labels", pct(res[syn]["accuracy"]), "")]
    names = {"real": "Coat, Shirt, Pullover cut to 1%: plain recipe",
             "baseline": f"best imbalance baseline ({rare.get('baseline') or 'class-weighted loss'})",
             "top-up": "best baseline + synthetic top-up (generator fitted on the cut set)",
             "tuned top-up": "best baseline + the top-up shaped on validation",
             "ceiling": "best baseline + top-up of held-out real images (ceiling)"}
    for kind, name in rare["rows"].items():
        r = rare["results"][name]
        rows.append((names[kind], pct(r["accuracy"]), f"{100 * r['rare_recall']:.1f}%"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'training data (same CNN, tested on 10,000 real test images)':{width}}  accuracy  rare-class recall")
    for name, acc, recall in rows:
        print(f"{name:{width}}  {acc:>8}  {recall:>17}")
    added = res[syn]["accuracy"] - res[ref]["accuracy"]
    top_kind = "tuned top-up" if "tuned top-up" in rare["rows"] else "top-up"
    base, top = rare["results"][rare["rows"]["baseline"]], rare["results"][rare["rows"][top_kind]]
    print(f"\nOn top of the best baseline, the shipped generator's images moved accuracy by {100 * added:+.2f} points "
          f"and the rare-class top-up{' shaped on validation' if top_kind == 'tuned top-up' else ''} moved rare-class "
          f"recall by "
          f"{100 * (top['rare_recall'] - base['rare_recall']):+.1f} points"
          + (" (below the baseline: it would not be advised)" if top["rare_recall"] < base["rare_recall"] else "")
          + ". `synthaug tune RUN` says which recipe wins on your own folder.")
    print(f"reports: {folder}/shipped, {folder}/rare (report.md in each)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
