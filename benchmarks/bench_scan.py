"""Reading a large labelled folder: scan, probe and decode rates at 100k+ files, in one run.

    python benchmarks/bench_scan.py [--files 100000] [--json bench_scan.json]

Writes `--files` real Fashion-MNIST-sized PNGs (28x28 grayscale, 10 class folders) into a temporary folder, then
times `scan_folder` (walking the tree), the first `load_image_folder` (probe sizes, decode every file into the
uint8 cache, in worker processes) and a second `load_image_folder` (the cache hit). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from synthaug.data.folder import load_image_folder, scan_folder


def write_folder(root: Path, files: int, classes: int = 10, seed: int = 0) -> None:
    """`files` PNGs of 28x28 random-blob images, spread evenly over `classes` folders."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
    for i in range(files):
        Image.fromarray(base[i % 64]).save(root / f"class{i % classes}" / f"{i:07d}.png", compress_level=1)


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--json", default="bench_scan.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synthaug-scan-"))
    os.environ["SYNTHAUG_CACHE_DIR"] = str(work / "cache")
    try:
        write_s, _ = timed(lambda: write_folder(work / "data", args.files))
        scan_s, index = timed(lambda: scan_folder(work / "data"))
        first_s, data = timed(lambda: load_image_folder(work / "data", progress=False))
        again_s, _ = timed(lambda: load_image_folder(work / "data", progress=False))
        assert len(index.paths) == args.files == len(data.labels)
        rows = {"files": args.files, "cpus": os.cpu_count(), "write_pngs_s": write_s,
                "scan_files_per_s": args.files / scan_s, "first_load_files_per_s": args.files / first_s,
                "cached_load_files_per_s": args.files / again_s,
                "first_load_time_over_png_write_time": first_s / write_s}
        print(f"| {args.files:,} files | files/s |")
        print("|---|---:|")
        print(f"| scan (walk the tree) | {rows['scan_files_per_s']:,.0f} |")
        print(f"| first load (probe + decode into the cache) | {rows['first_load_files_per_s']:,.0f} |")
        print(f"| second load (cache hit) | {rows['cached_load_files_per_s']:,.0f} |")
        print(f"first load takes {first_s / write_s:.2f}x the time it took to write the PNGs")
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
