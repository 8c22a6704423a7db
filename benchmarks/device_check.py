"""The throughput-critical path measured on one device, in one command: made for a lent GPU's few minutes.

On a GPU machine whose Python already holds torch, torchvision, h5py, click, tqdm, scikit-learn and Pillow (and
reaches no package registry), from the repository root, with no install at all:

    PYTHONPATH=. python3 benchmarks/device_check.py --device cuda --json device_check.json

or, installed: `pip install --no-deps --no-build-isolation .` then the same command without PYTHONPATH. It stops
starting new measurements after --budget-s seconds (default 420: it ends within 8 minutes on one GPU) and prints
one table; the JSON holds every figure and the machine. The test suite runs it as

    python benchmarks/device_check.py --device cpu --quick --json out.json

so that it cannot rot before a GPU is lent. What it measures:

- bare generator forward: images/s and achieved TFLOP/s by batch size (doubling until memory runs out or the rate
  stops rising), fp32 and bf16/fp16 autocast, `dcgan` and `sngan` at 32, 64 and 128 px, beside the device's
  measured dense-matmul TFLOP/s;
- `export` to HDF5 and to PNG ÷ the bare forward at the best batch (the writer must not be the bottleneck);
- `fit` images/s of the default recipe at 32 and 64 px, and the benchmark classifier's training images/s;
- out-of-memory recovery: a batch that cannot fit is halved, with a warning, and the images are unchanged;
- determinism: the same seed at two batch sizes, with the default and with cuDNN/cuBLAS deterministic settings,
  and what the deterministic settings cost.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import synthaug
from synthaug import ExportConfig, FitSettings
from synthaug.classify import ClassifierRecipe, train_classifier
from synthaug.config import ModelConfig
from synthaug.device import resolve_device
from synthaug.errors import is_out_of_memory
from synthaug.engine import PRECISIONS, GenerationPlan, chunk_rows_for, iter_generated
from synthaug.models import build_models
from synthaug.runs import save_generator

ARCHS = ("dcgan", "sngan")
SIDES = (32, 64, 128)
CLASSES = 10


class Clock:
    """Wall time against the budget; on CUDA every reading waits for the device."""

    def __init__(self, device: torch.device, budget_s: float):
        self.device, self.start, self.budget_s = device, time.perf_counter(), budget_s
        self.skipped: list[str] = []

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def allows(self, what: str) -> bool:
        """Whether there is time for `what`; otherwise it is recorded as skipped."""
        if self.left() > 0:
            return True
        self.skipped.append(what)
        return False


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "threads": torch.get_num_threads(), "synthaug": synthaug.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or "cpu"
    return info


def matmul_tflops(device: torch.device, dtype: torch.dtype, clock: Clock, quick: bool) -> float:
    """Dense matmul TFLOP/s at `dtype`, best of three rounds: the roofline the generator is set beside."""
    n = 256 if quick else (1024 if device.type == "cpu" else 8192)  # a CPU without bf16 units: 46 s at 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(3):
        t0 = clock.now()
        for _ in range(5):
            a @ b
        best = max(best, 2 * n ** 3 * 5 / (clock.now() - t0) / 1e12)
    return best


def generator(arch: str, side: int, device: torch.device) -> torch.nn.Module:
    """An untrained generator at the default recipe's width for the device (speed does not depend on weights)."""
    width = 64 if arch == "dcgan" or device.type == "cuda" else 32
    gen, _ = build_models(ModelConfig(arch, side, 3, CLASSES, width=width, ema=True))
    gen.class_names = tuple(f"c{i}" for i in range(CLASSES))
    return gen.eval().to(device).to(memory_format=torch.channels_last)


def flops_per_image(gen: torch.nn.Module, device: torch.device) -> float:
    """FLOPs of one generator forward pass, per image."""
    z, y = gen.sample_latent(4).to(device), torch.zeros(4, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        gen(z, y)
    return counter.get_total_flops() / 4


def forward_rate(gen: torch.nn.Module, batch: int, precision: str, clock: Clock, seconds: float) -> float:
    """images/s of the bare forward at `batch` under `precision` (autocast), after a warm-up pass."""
    device = clock.device
    z = gen.sample_latent(batch).to(device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    dtype = PRECISIONS[precision]
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        gen(z, y)
        n, t0 = 0, clock.now()
        while True:
            gen(z, y)
            n += batch
            elapsed = clock.now() - t0
            if elapsed >= seconds:
                return n / elapsed


def sweep(gen: torch.nn.Module, precision: str, clock: Clock, quick: bool) -> list[dict[str, Any]]:
    """Forward rates by doubling batch size until memory runs out, the rate stops rising, or the cap."""
    device = clock.device
    # quick: two small batches (bf16 at 64 px takes seconds a pass on a CPU without bf16 units)
    batch, cap = (4, 8) if quick else ((64, 16384) if device.type == "cuda" else (16, 256))
    rows, best, flat = [], 0.0, 0
    while batch <= cap and clock.left() > 0:
        try:
            rate = forward_rate(gen, batch, precision, clock, 0.2 if quick else 0.6)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append({"batch": batch, "oom": True})
            break
        rows.append({"batch": batch, "images_per_s": rate})
        flat = flat + 1 if rate < best * 1.03 else 0
        best = max(best, rate)
        if flat >= 2:
            break
        batch *= 2
    return rows


def forward_section(clock: Clock, quick: bool) -> list[dict[str, Any]]:
    """Bare forward by arch, side, precision and batch."""
    device = clock.device
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    out = []
    for arch in ARCHS:
        for side in (SIDES[:2] if quick else SIDES):
            if not clock.allows(f"forward {arch} {side} px"):
                continue
            gen = generator(arch, side, device)
            flops = flops_per_image(gen, device)
            for precision in precisions:
                rows = sweep(gen, precision, clock, quick)
                ok = [r for r in rows if "images_per_s" in r]
                best = max(ok, key=lambda r: r["images_per_s"]) if ok else None
                out.append({"arch": arch, "side": side, "precision": precision, "gflop_per_image": flops / 1e9,
                            "batches": rows, "best_batch": best and best["batch"],
                            "images_per_s": best and best["images_per_s"],
                            "tflops": best and flops * best["images_per_s"] / 1e12})
            del gen
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def export_section(clock: Clock, forward: list[dict[str, Any]], work: Path, quick: bool) -> list[dict[str, Any]]:
    """HDF5 and PNG export ÷ the bare forward at the best fp32 batch, for dcgan at 64 px."""
    device, out = clock.device, []
    row = next((r for r in forward if r["arch"] == "dcgan" and r["side"] == 64 and r["precision"] == "fp32"), None)
    if row is None or not row["best_batch"] or not clock.allows("export"):
        return out
    gen = generator("dcgan", 64, device)
    path = work / "generator.pt"
    save_generator(path, ModelConfig("dcgan", 64, 3, CLASSES, width=64, ema=True), gen.class_names,
                   gen.state_dict(), step=0, epoch=0)
    batch = row["best_batch"]
    for fmt, per_class in (("hdf5", 64 if quick else 4096), ("folder", 16 if quick else 512)):
        stats: dict[str, Any] = {}
        target = work / ("e.h5" if fmt == "hdf5" else "png")
        bare_before = forward_rate(gen, batch, "fp32", clock, 0.2 if quick else 1.0)
        synthaug.export(path, target, ExportConfig(per_class=per_class, batch_size=batch, device=str(device),
                                                   overwrite=True), progress=False, stats=stats)
        bare = (bare_before + forward_rate(gen, batch, "fp32", clock, 0.2 if quick else 1.0)) / 2
        out.append({"format": fmt, "batch": batch, "images": stats["images"], "images_per_s": stats["images_per_s"],
                    "bare_forward_images_per_s": bare, "over_bare_forward": stats["images_per_s"] / bare})
    return out


def rgb_folder(root: Path, per_class: int) -> Path:
    """scikit-learn's digits as 64-px RGB PNGs: a real labelled folder for the fit measurements."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(CLASSES):
        (root / f"d{label}").mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(digits.target == label)[:per_class]:
            gray = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
            Image.fromarray(rgb, mode="RGB").resize((64, 64), Image.NEAREST).save(root / f"d{label}" / f"{i}.png")
    return root


def fit_section(clock: Clock, work: Path, quick: bool) -> list[dict[str, Any]]:
    """Training images/s of the default recipe at 32 and 64 px (epoch ends timed, the first epoch left out)."""
    folder = rgb_folder(work / "fit-data", 8 if quick else (170 if clock.device.type == "cuda" else 20))
    out = []
    for side in (32, 64):
        if not clock.allows(f"fit {side} px"):
            continue
        stamps: list[float] = []
        epochs = 3 if quick else 6
        settings = FitSettings(resolution=side, epochs=epochs, sample_every=10_000, device=str(clock.device))
        run = synthaug.fit(folder, work / f"fit-{side}", settings, progress=False,
                           on_epoch=lambda epoch, means: stamps.append(clock.now()))
        cfg = synthaug.runs.read_run_config(run)
        images = cfg.data.num_images // cfg.train.batch_size * cfg.train.batch_size  # drop_last epochs
        rate = images * (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
        out.append({"side": side, "arch": cfg.model.arch, "width": cfg.model.width, "batch": cfg.train.batch_size,
                    "images_per_s": rate, "epochs_timed": len(stamps) - 1})
    return out


def classifier_section(clock: Clock, quick: bool) -> list[dict[str, Any]]:
    """The benchmark CNN's training images/s (marginal: a long run minus a short one)."""
    out = []
    for shape in ((1, 28, 28), (3, 32, 32)):
        if not clock.allows(f"classifier {shape}"):
            continue
        images = torch.randint(0, 256, (2048, *shape), dtype=torch.uint8)
        labels = torch.randint(0, CLASSES, (2048,))
        times = []
        for steps in ((5, 15) if quick else (20, 120)):
            t0 = clock.now()
            train_classifier(images, labels, CLASSES, ClassifierRecipe(steps=steps), clock.device, progress=False)
            times.append((steps, clock.now() - t0))
        (s0, t0), (s1, t1) = times
        out.append({"shape": list(shape), "batch": 128, "images_per_s": (s1 - s0) * 128 / max(t1 - t0, 1e-9)})
    return out


def _images(gen: torch.nn.Module, plan: GenerationPlan, batch: int) -> np.ndarray:
    """The engine's uint8 output of `plan` at `batch`."""
    return np.concatenate([b.images for b in iter_generated(gen, plan, batch_size=batch)])


def oom_section(clock: Clock, quick: bool) -> dict[str, Any]:
    """A batch that cannot fit: on CUDA under a per-process memory cap, on the CPU in a child process under an
    address-space limit. The engine must halve it, warn, and give the images an unlimited run gives."""
    if not clock.allows("out-of-memory recovery"):
        return {}
    if clock.device.type != "cuda":
        child = subprocess.run([sys.executable, __file__, "--oom-child"], capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        if child.returncode != 0:
            return {"ok": False, "error": child.stderr.strip().splitlines()[-1:]}
        return json.loads(child.stdout.strip().splitlines()[-1])
    gen = generator("dcgan", 64, clock.device)
    per_image = activation_bytes(gen, clock.device)
    batch = 4096 if quick else 32768
    plan = GenerationPlan(np.arange(batch) % CLASSES, seed=3, chunk_rows=batch)
    expected = _images(gen, plan, 256)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(clock.device).total_memory
    allowed = torch.cuda.memory_allocated(clock.device) + per_image * batch // 2
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), clock.device)
    try:
        return _recover(gen, plan, batch, expected)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, clock.device)
        torch.cuda.empty_cache()


def activation_bytes(gen: torch.nn.Module, device: torch.device) -> int:
    """Bytes of the generator's largest activation for one image."""
    sizes: list[int] = []
    leaves = [m for m in gen.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())) for m in leaves]
    with torch.inference_mode():
        gen(gen.sample_latent(1).to(device), torch.zeros(1, dtype=torch.long, device=device))
    for h in hooks:
        h.remove()
    return max(sizes)


def _recover(gen: torch.nn.Module, plan: GenerationPlan, batch: int, expected: np.ndarray) -> dict[str, Any]:
    """Generate `plan` at `batch` under the current memory limit; count the halvings, compare the images."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _images(gen, plan, batch)
    retries = [str(w.message) for w in caught if "continuing with" in str(w.message)]
    return {"ok": bool(retries) and np.array_equal(out, expected), "batch": batch, "halvings": len(retries),
            "same_images": bool(np.array_equal(out, expected)), "warning": retries[0] if retries else None}


def oom_child() -> None:
    """The CPU check, in its own process: cap the address space so the batch cannot fit, then generate."""
    import resource

    torch.backends.mkldnn.enabled = False  # oneDNN hides allocation failures behind its own errors
    gen = generator("dcgan", 32, torch.device("cpu"))
    per_image = activation_bytes(gen, torch.device("cpu"))
    batch = (1 << 28) // per_image
    plan = GenerationPlan(np.arange(batch) % CLASSES, seed=3, chunk_rows=batch)
    expected = _images(gen, plan, 64)
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 27), resource.RLIM_INFINITY))
    print(json.dumps(_recover(gen, plan, batch, expected)))


def determinism_section(clock: Clock, quick: bool) -> dict[str, Any]:
    """The same seed at two batch sizes: default settings, then deterministic cuDNN/cuBLAS, and their cost."""
    if not clock.allows("determinism"):
        return {}
    gen = generator("sngan", 64, clock.device)
    plan = GenerationPlan(np.arange(512 if quick else 4096) % CLASSES, 5, chunk_rows_for((3, 64, 64)))
    small, large = (8, 32) if quick else (64, 1024)

    def compare() -> dict[str, Any]:
        a, b = _images(gen, plan, small), _images(gen, plan, large)
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        return {"identical": bool((diff == 0).all()), "max_pixel_diff": int(diff.max()),
                "differing_pixels": float((diff != 0).mean()),
                "forward_images_per_s": forward_rate(gen, large, "fp32", clock, 0.2 if quick else 1.0)}

    default = compare()
    settings = {"cudnn.deterministic": True, "cudnn.benchmark": False, "use_deterministic_algorithms": True,
                "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True)
    try:
        strict = compare()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    return {"batches": [small, large], "default": default, "deterministic": strict, "deterministic_settings": settings,
            "deterministic_cost": default["forward_images_per_s"] / strict["forward_images_per_s"]}


def _row(measure: str, setting: str, batch: int, rate: float | None, note: str) -> str:
    """One table row without a TFLOP/s figure."""
    return f"| {measure} | {setting} | {batch} | {f'{rate:,.0f}' if rate else '—'} | | {note} |"


def table(result: dict[str, Any]) -> str:
    """The one table: every measure on a row."""
    lines = ["| measure | setting | batch | images/s | TFLOP/s | note |", "|---|---|---:|---:|---:|---|"]
    peak = result["matmul_tflops"]
    for r in result["forward"]:
        tf = f"{r['tflops']:.3f}" if r["tflops"] else "—"
        share = f"{r['tflops'] / peak[r['precision']]:.2f} of matmul" if r["tflops"] else "no batch fitted"
        lines.append(f"| forward | {r['arch']} {r['side']} px {r['precision']} | {r['best_batch'] or '—'} | "
                     f"{(r['images_per_s'] or 0):,.0f} | {tf} | {share} |")
    for r in result["export"]:
        lines.append(_row(f"export {r['format']}", f"dcgan 64 px fp32, {r['images']:,} images", r["batch"],
                          r["images_per_s"], f"{r['over_bare_forward']:.2f} of the bare forward"))
    for r in result["fit"]:
        lines.append(_row("fit (default recipe)", f"{r['arch']} width {r['width']}, {r['side']} px", r["batch"],
                          r["images_per_s"], f"{r['epochs_timed']} epochs timed"))
    for r in result["classifier"]:
        lines.append(_row("benchmark classifier", f"CNN {'x'.join(map(str, r['shape']))}", r["batch"],
                          r["images_per_s"], "training"))
    oom = result["oom"]
    if oom:
        lines.append(f"| out-of-memory recovery | dcgan | {oom.get('batch', '—')} | | | "
                     f"{'ok' if oom.get('ok') else 'FAILED'}: {oom.get('halvings', 0)} halvings, same images "
                     f"{oom.get('same_images')} |")
    det = result["determinism"]
    if det:
        for key in ("default", "deterministic"):
            d = det[key]
            lines.append(f"| determinism ({key}) | sngan 64 px, batches {det['batches']} | | "
                         f"{d['forward_images_per_s']:,.0f} | | identical {d['identical']}, max pixel diff "
                         f"{d['max_pixel_diff']} |")
    for what in result["skipped"]:
        lines.append(f"| skipped (budget) | {what} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    parser.add_argument("--quick", action="store_true", help="small sizes: the test suite's run")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no new measurement starts after this")
    parser.add_argument("--json", default="device_check.json")
    parser.add_argument("--oom-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.oom_child:
        return oom_child()
    device = resolve_device(args.device)
    clock = Clock(device, args.budget_s)
    result: dict[str, Any] = {"machine": machine(device), "quick": args.quick, "budget_s": args.budget_s}
    result["matmul_tflops"] = {"fp32": matmul_tflops(device, torch.float32, clock, args.quick),
                               "bf16": matmul_tflops(device, torch.bfloat16, clock, args.quick)}
    if device.type == "cuda":
        result["matmul_tflops"]["fp16"] = matmul_tflops(device, torch.float16, clock, args.quick)
    sections = result["section_seconds"] = {}

    def timed(name: str, fn, *a) -> None:
        t = time.perf_counter()
        result[name] = fn(*a)
        sections[name] = time.perf_counter() - t

    timed("forward", forward_section, clock, args.quick)
    with tempfile.TemporaryDirectory(prefix="synthaug-device-") as tmp:
        work = Path(tmp)
        timed("export", export_section, clock, result["forward"], work, args.quick)
        timed("fit", fit_section, clock, work, args.quick)
    for name, fn in (("classifier", classifier_section), ("oom", oom_section), ("determinism", determinism_section)):
        timed(name, fn, clock, args.quick)
    result["skipped"] = clock.skipped
    result["seconds"] = time.perf_counter() - clock.start
    print(f"{result['machine']['name']} ({device}); dense matmul TFLOP/s: " +
          ", ".join(f"{k} {v:.2f}" for k, v in result["matmul_tflops"].items()))
    print(table(result))
    print(f"{result['seconds']:.0f} s in all (" + ", ".join(f"{k} {v:.0f} s" for k, v in sections.items()) + ")")
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
