"""Training and export throughput with 1 and 2 processes under torchrun (gloo on the CPU, NCCL on GPUs).

    python benchmarks/bench_distributed.py --data data/fashion [--procs 1,2] [--json bench_distributed.json]

Training images/s comes from the difference between two runs of different length (so start-up, data loading and
the process group's set-up cancel out); the global batch grows with the world size (batch_size per process).
Export images/s is `synthaug export` of the same plan with each world size. Scaling efficiency is
rate(W) / (W x rate(1)): on one machine the processes share its cores, so on a 2-core CPU it measures overhead,
not speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _run(args: list[str], procs: int, threads: int) -> float:
    """Wall seconds of one synthaug command with `procs` processes of `threads` threads each."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] \
        if procs > 1 else [sys.executable]
    start = time.perf_counter()
    subprocess.run([*launcher, "-m", "synthaug_cli", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--steps", default="20,80", help="two run lengths; their difference is timed")
    parser.add_argument("--per-class", type=int, default=3000)
    parser.add_argument("--json", default="bench_distributed.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    short, long = (int(s) for s in args.steps.split(","))
    work = Path(tempfile.mkdtemp(prefix="synthaug-dist-"))
    rows = []
    try:
        for procs in (int(p) for p in args.procs.split(",")):
            threads = max(1, cores // procs) if not torch.cuda.is_available() else 1
            times = []
            for steps in (short, long):
                out = work / f"run-{procs}-{steps}"
                times.append(_run(["fit", args.data, "--out", str(out), "--max-steps", str(steps), "--batch-size",
                                   str(args.batch_size), "--quiet"], procs, threads))
            train_rate = (long - short) * args.batch_size * procs / (times[1] - times[0])
            export_s = _run(["export", "--source", str(work / f"run-{procs}-{long}"), "--per-class",
                             str(args.per_class), "--out", str(work / f"e{procs}.h5"), "--quiet"], procs, threads)
            rows.append({"procs": procs, "threads_per_proc": threads, "train_images_per_s": train_rate,
                         "export_seconds": export_s})
        base = rows[0]
        print("| processes | threads each | training images/s | scaling efficiency | export time ÷ 1 process |")
        print("|---:|---:|---:|---:|---:|")
        for r in rows:
            ideal = r["procs"] / base["procs"] * base["train_images_per_s"]
            r["scaling_efficiency"] = r["train_images_per_s"] / ideal
            r["export_time_ratio"] = r["export_seconds"] / base["export_seconds"]
            print(f"| {r['procs']} | {r['threads_per_proc']} | {r['train_images_per_s']:.0f} | "
                  f"{r['scaling_efficiency']:.2f} | {r['export_time_ratio']:.2f} |")
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "cores": cores, "cuda": torch.cuda.is_available(), "data": args.data,
                       "batch_size_per_process": args.batch_size, "steps": [short, long]}, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
