"""Out of memory while generating: the batch is halved until it fits and the output is unchanged.

A real allocation failure, not a mock: a child process caps its own address space (RLIMIT_AS) so that the
generator's largest activation at the requested batch cannot be allocated, while a smaller batch's can.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import json, resource, sys, warnings
    import numpy as np, torch

    # oneDNN reports its own allocation failures as "could not create a primitive", indistinguishable from its
    # other failures; the native kernels allocate through PyTorch's CPU allocator, whose failure is unambiguous.
    torch.backends.mkldnn.enabled = False

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
""")

CHILD = PRELUDE + textwrap.dedent("""
    from synthaug.engine import generate
    from synthaug.runs import load_generator

    gen = load_generator(sys.argv[1])
    sizes = []
    leaves = [m for m in gen.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())) for m in leaves]
    with torch.inference_mode():
        gen(gen.sample_latent(1), torch.zeros(1, dtype=torch.long))
    for h in hooks:
        h.remove()
    batch = int(sys.argv[2]) // max(sizes)  # the largest activation of one batch: about argv[2] bytes
    labels = np.arange(batch) % gen.num_classes
    expected = generate(gen, labels, seed=3, batch_size=1024).numpy().tobytes()
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + int(sys.argv[2]) // 2, resource.RLIM_INFINITY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate(gen, labels, seed=3, batch_size=batch)
    retries = [str(w.message) for w in caught if "continuing with" in str(w.message)]
    print(batch, out.numpy().tobytes() == expected, len(retries), retries[0] if retries else "")
""")


# glibc's per-thread arenas and its moving mmap threshold let the address space drift by tens of MB between steps;
# one arena and a fixed threshold keep it close to what is allocated, so the caps below measure the steps.
ALLOCATOR = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the steadier allocator settings."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ALLOCATOR})


@pytest.mark.slow
def test_generation_out_of_memory_retries_in_halves_with_the_same_output(tiny_run):
    need = 1 << 29
    child = run_child(CHILD, str(tiny_run), str(need))
    assert child.returncode == 0, child.stderr[-2000:]
    batch, same, retries, message = child.stdout.split(maxsplit=3)
    assert same == "True"  # the images of a batch run at 1024 without any memory limit
    assert 1 <= int(retries) <= int(batch).bit_length()  # halved until it fits, then kept: not once per batch
    assert "out of memory on cpu" in message and f"at batch {batch}" in message


FIT_CHILD = PRELUDE + textwrap.dedent("""
    import synthaug

    def cap_memory(epoch, _means):
        # After epoch 1 every lasting allocation exists; a step's transient need is VmPeak - VmSize. Allow 4/5 of it:
        # half batches then fit with room for drift (they fit from 55%; a full batch fails even at 100%).
        if epoch == 1:
            now = status("VmSize")
            resource.setrlimit(resource.RLIMIT_AS, (now + (status("VmPeak") - now) * 4 // 5, resource.RLIM_INFINITY))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = synthaug.fit(sys.argv[1], sys.argv[2], arch="conv", resolution=32, epochs=2, batch_size=512,
                           progress=False, on_epoch=cap_memory)
    print(json.dumps([str(w.message) for w in caught if "out of memory" in str(w.message)]))
""")


@pytest.mark.slow
def test_training_out_of_memory_continues_with_half_batches(digits_dir, tmp_path):
    import json

    import synthaug.runs as ckpt

    child = run_child(FIT_CHILD, str(digits_dir), str(tmp_path / "run"))
    assert child.returncode == 0, child.stderr[-2000:]
    messages = json.loads(child.stdout.splitlines()[-1])
    assert len(messages) == 1 and "at batch 512: each batch now trains as two updates on 256 images" in messages[0]
    state = ckpt.load_safe(tmp_path / "run" / ckpt.TRAINING_STATE)
    assert state["epoch"] == 2  # the second epoch finished, at half batches
