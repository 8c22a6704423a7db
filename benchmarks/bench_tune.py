"""`tune`'s wall time, one way of running it against another, measured in one run.

    python benchmarks/bench_tune.py --run runs/recipes/fashion-3000/run --json docs/bench-tune.json
    python benchmarks/bench_tune.py --run runs/recipes/fashion-3000/run --modes "one at a time,probe first" \
        --json docs/bench-tune-probe.json

Each mode runs `synthaug.tune(RUN)` in a fresh process with an empty trial cache (every classifier trained, the
baseline search included). `one at a time`: the whole search (`sampling_search="full"`), SYNTHAUG_TRIAL_WORKERS=1
(each trial on all of the process's threads, the default); `side by side`: the same with the workers set to the
cores (one trial per thread, `synthaug.device.run_parallel`); `probe first`: one at a time, with tune's default
`sampling_search="auto"` (the sampling search skipped where the probe use is clearly below the baseline). The
table gives the seconds, the ratio to `one at a time`, and what each run advised; the JSON keeps each run's search
table. Modes that finished are kept in the JSON and skipped when the script runs again.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE = {"SYNTHAUG_TRIAL_WORKERS": "1"}
MODES = {"side by side": ({"SYNTHAUG_TRIAL_WORKERS": str(len(os.sched_getaffinity(0)))}, "full"),
         "one at a time": (ONE, "full"), "probe first": (ONE, "auto")}  # mode: (environment, sampling search)


def one_tune(run: str, real: str | None, baseline: str, steps: int | None, teacher_steps: int | None,
             sampling_search: str, group_by: str | None) -> None:
    """In the child: tune the run and print its result as JSON on the last line."""
    import synthaug
    from synthaug.tuning import TUNE_RECIPE

    recipe = TUNE_RECIPE if steps is None else synthaug.ClassifierRecipe(steps=steps, seed=0)
    t = time.perf_counter()
    result = synthaug.tune(run, real=real, baseline=baseline, recipe=recipe, teacher_steps=teacher_steps,
                           write=False, progress=False, sampling_search=sampling_search, group_by=group_by)
    keep = ("verdict", "advice", "baseline", "teacher", "trials", "train_images", "val_images", "reach",
            "use_val_accuracy", "top_up")
    print(json.dumps({**{k: result[k] for k in keep}, "seconds": time.perf_counter() - t}, default=str))


def measure(args: argparse.Namespace, mode: str) -> dict:
    """One mode's tune, in a fresh process with an empty cache."""
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in (("steps", args.steps), ("teacher_steps", args.teacher_steps),
                                                        ("real", args.real), ("group_by", args.group_by))
             if v is not None]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, **MODES[mode][0], "SYNTHAUG_CACHE_DIR": cache}
        t = time.perf_counter()
        child = [sys.executable, __file__, "--child", "--run", args.run, "--baseline", args.baseline,
                 "--sampling-search", MODES[mode][1], *extra]
        out = subprocess.run(child, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        return {**json.loads(out.strip().splitlines()[-1]), "wall_seconds": time.perf_counter() - t,
                "threads": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder or a generator (e.g. a shipped name)")
    ap.add_argument("--real", help="the training folder to split [default: the run's]")
    ap.add_argument("--baseline", default="auto", help="'auto' searches the baselines (as tune does by default)")
    ap.add_argument("--steps", type=int, help="the classifier budget of the search [default: tune's]")
    ap.add_argument("--teacher-steps", type=int, help="fix the teacher's budget [default: tune's search of it]")
    ap.add_argument("--group-by", help="tune's --group-by: groups of images validation keeps together")
    ap.add_argument("--modes", default="side by side,one at a time",
                    help=f"comma-separated, of: {', '.join(MODES)} (ratios to 'one at a time' where it is measured)")
    ap.add_argument("--json", type=Path, default=Path("bench-tune.json"))
    ap.add_argument("--sampling-search", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return one_tune(args.run, args.real, args.baseline, args.steps, args.teacher_steps, args.sampling_search,
                        args.group_by)
    modes = [m.strip() for m in args.modes.split(",")]
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {', '.join(sorted(unknown))} (of: {', '.join(MODES)})")
    modes = [m for m in MODES if m in modes]
    data = json.loads(args.json.read_text()) if args.json.is_file() else {}
    prefix = (f"{args.run}|{args.baseline}|{args.steps or 'default'}|{args.teacher_steps or 'default'}"
              + (f"|{args.real}" if args.real else "") + (f"|groups {args.group_by}" if args.group_by else ""))
    for mode in modes:
        key = f"{prefix}|{mode}"
        if key not in data:
            data[key] = measure(args, mode)
            args.json.write_text(json.dumps(data, indent=1))
            print(f"{mode}: {data[key]['wall_seconds']:.0f} s: {data[key]['verdict']}", flush=True)
    base = data.get(f"{prefix}|one at a time", {}).get("wall_seconds")
    print("| mode | tune s (wall) | ÷ one at a time | sampling search | baseline chosen | verdict |\n"
          "|---|---:|---:|---|---|---|")
    for mode in modes:
        r = data[f"{prefix}|{mode}"]
        ratio = f"{r['wall_seconds'] / base:.2f}" if base else "-"
        search = "ran" if not r.get("reach") or r["reach"]["searched"] else "skipped"
        print(f"| {mode} | {r['wall_seconds']:.0f} | {ratio} | {search} | {r['baseline']['name']} | {r['verdict']} |")


if __name__ == "__main__":
    main()
