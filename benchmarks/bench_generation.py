"""Generation and export throughput, as ratios measured in one run.

    python benchmarks/bench_generation.py [--run RUN | --pretrained fashion-mnist] [--images 30000] [--json out.json]

Reports, across batch sizes: the bare generator forward (images/s and achieved GFLOP/s as a fraction of this
machine's measured dense matmul GFLOP/s), end-to-end HDF5 and ImageFolder export ÷ bare forward, SyntheticDataset
through a DataLoader ÷ an in-memory TensorDataset and ÷ a naive per-item h5py read, and byte-identity of two
exports with different batch sizes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import synthaug
from synthaug import ExportConfig
from synthaug.config import ModelConfig
from synthaug.models import build_models


def matmul_gflops(n: int = 1024, reps: int = 20, rounds: int = 5) -> float:
    """Dense fp32 matmul GFLOP/s on this machine, best of `rounds` (the roofline the generator is compared with)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def forward_flops(gen, batch: int) -> int:
    """FLOPs of one generator forward pass at `batch`."""
    z, y = gen.sample_latent(batch), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        gen(z, y)
    return counter.get_total_flops()


def bare_forward(gen, batch: int, images: int) -> float:
    """images/s of the generator alone (no quantisation, no I/O)."""
    z, y = gen.sample_latent(batch), torch.randint(0, gen.num_classes, (batch,))
    with torch.inference_mode():
        gen(z, y)
        n, start = 0, time.perf_counter()
        while n < images:
            gen(z, y)
            n += batch
    return n / (time.perf_counter() - start)


def over_bare_forward(gen, batch: int, images: int, export) -> tuple[float, float]:
    """(export images/s ÷ bare forward images/s, bare forward images/s), the bare rate being the mean of a run just
    before and one just after the export, so drift in the machine's speed affects both sides of the ratio alike."""
    before = bare_forward(gen, batch, images)
    stats: dict = {}
    export(stats)
    bare = (before + bare_forward(gen, batch, images)) / 2
    return stats["images_per_s"] / bare, bare


class NaiveH5(Dataset):
    """The baseline: open the file once per worker and read one item per __getitem__ from h5py."""

    def __init__(self, path):
        self.path, self.f = path, None
        with h5py.File(path, "r") as f:
            self.n = f["labels"].shape[0]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.f is None:
            self.f = h5py.File(self.path, "r")
        return torch.from_numpy(self.f["images"][i]).float() / 255, int(self.f["labels"][i])


def loader_rate(ds, batch: int = 256, workers: int = 2, limit: int | None = None) -> float:
    """images/s through a shuffled DataLoader with workers."""
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    n, start = 0, time.perf_counter()
    for x, _ in loader:
        n += x.shape[0]
        if limit and n >= limit:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default=None)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--batch-sizes", default="16,64,256,1024")
    parser.add_argument("--json", default="bench_generation.json")
    args = parser.parse_args()
    if args.run or args.pretrained:
        source = args.run or synthaug.pretrained_path(args.pretrained)
        gen = synthaug.load_generator(source)
    else:  # an untrained default generator: speed does not depend on the weights
        tmp_gen, _ = build_models(ModelConfig("sngan", 28, 1, 10, ema=True))
        source = None
        gen = tmp_gen.eval()
    gen.to(memory_format=torch.channels_last)
    peak = matmul_gflops()
    result = {"threads": torch.get_num_threads(), "matmul_gflops": peak, "forward": []}
    print(f"dense matmul: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    print("| batch | forward images/s | GFLOP/s | fraction of matmul |")
    print("|---:|---:|---:|---:|")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rate = bare_forward(gen, batch, args.images)
        gflops = forward_flops(gen, batch) / batch * rate / 1e9
        result["forward"].append({"batch": batch, "images_per_s": rate, "gflops": gflops,
                                  "fraction_of_matmul": gflops / peak})
        print(f"| {batch} | {rate:.0f} | {gflops:.1f} | {gflops / peak:.2f} |")
    best = max(result["forward"], key=lambda r: r["images_per_s"])
    result["best_batch"] = best["batch"]
    work = Path(tempfile.mkdtemp(prefix="synthaug-bench-"))
    try:
        if source is None:
            raise SystemExit("pass --run or --pretrained for the export measurements")
        per_class = args.images // gen.num_classes
        def export_to(name: str, per: int, batch: int) -> Callable[[dict], Path]:
            config = ExportConfig(per_class=per, batch_size=batch)
            return lambda stats: synthaug.export(source, work / name, config, progress=False, stats=stats)

        h5_ratio, bare = over_bare_forward(gen, best["batch"], args.images, export_to("a.h5", per_class, best["batch"]))
        export_to("b.h5", per_class, best["batch"] * 4)({})
        with h5py.File(work / "a.h5") as fa, h5py.File(work / "b.h5") as fb:
            identical = fa["images"][()].tobytes() == fb["images"][()].tobytes() and \
                fa["labels"][()].tobytes() == fb["labels"][()].tobytes()
        folder_ratio, _ = over_bare_forward(gen, best["batch"], args.images // 3,
                                            export_to("png", max(1, per_class // 3), best["batch"]))
        # DataLoader: a 60k-image export (tiled from the one just written) vs in-memory and naive reads.
        with h5py.File(work / "a.h5") as f:
            images, labels = f["images"][()], f["labels"][()]
        reps = -(-60000 // len(labels))
        big = work / "big.h5"
        shutil.copy(work / "a.h5", big)
        with h5py.File(big, "r+") as f:
            tiled_i, tiled_l = np.concatenate([images] * reps)[:60000], np.concatenate([labels] * reps)[:60000]
            del f["images"], f["labels"]
            f.create_dataset("images", data=tiled_i, chunks=(1280, *images.shape[1:]))
            f.create_dataset("labels", data=tiled_l)
        syn_rate = loader_rate(synthaug.SyntheticDataset(big))
        syn_file_rate = loader_rate(synthaug.SyntheticDataset(big, memory_budget=None), limit=20000)
        mem_rate = loader_rate(TensorDataset(torch.from_numpy(tiled_i).float() / 255, torch.from_numpy(tiled_l)))
        naive_rate = loader_rate(NaiveH5(big), limit=20000)
        result.update({"bare_forward_images_per_s": bare, "hdf5_export_images_per_s": h5_ratio * bare,
                       "hdf5_export_over_forward": h5_ratio, "folder_export_over_forward": folder_ratio,
                       "dataset_over_tensordataset": syn_rate / mem_rate, "dataset_over_naive_h5py": syn_rate / naive_rate,
                       "file_backed_dataset_over_naive_h5py": syn_file_rate / naive_rate,
                       "byte_identical_across_batch_sizes": identical})
        print()
        print("| measure | ratio |")
        print("|---|---:|")
        for key in ("hdf5_export_over_forward", "folder_export_over_forward", "dataset_over_tensordataset",
                    "dataset_over_naive_h5py", "file_backed_dataset_over_naive_h5py"):
            print(f"| {key} | {result[key]:.2f} |")
        print(f"| byte-identical exports at batch {best['batch']} and {best['batch'] * 4} | {identical} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
