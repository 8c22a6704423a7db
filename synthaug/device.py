"""Choosing the device a process computes on: one home for 'auto', explicit names and torchrun's local rank, and
how many independent trainings share the CPU's cores."""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
from typing import Any, Callable, Sequence, TypeVar

import torch

from synthaug.errors import SynthaugError

T = TypeVar("T")


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU; under torchrun a CUDA device is this rank's GPU."""
    if name in (None, "auto"):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise SynthaugError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SynthaugError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def pin_if_cuda(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Page-locked host memory for tensors bound for a GPU (so their copies can be non-blocking)."""
    return tensor.pin_memory() if device.type == "cuda" else tensor


def trial_workers(device: torch.device, tasks: int) -> int:
    """How many independent trainings to run at once: on the CPU, one process per thread this process was given
    (each trial then trains on its share of them), at most $SYNTHAUG_TRIAL_WORKERS (default 1); on an
    accelerator, one at a time."""
    if device.type != "cpu" or tasks < 2:
        return 1
    cap = os.environ.get("SYNTHAUG_TRIAL_WORKERS", "")
    if cap and not (cap.isdigit() and int(cap) > 0):
        raise SynthaugError(f"SYNTHAUG_TRIAL_WORKERS={cap!r}: not a positive whole number")
    # one at a time unless asked: on 2 idle cores, tune took 1.19x longer side by side (docs/performance.md)
    return max(1, min(tasks, torch.get_num_threads(), len(os.sched_getaffinity(0)), int(cap or 1)))


def run_parallel(tasks: Sequence[Callable[[], T]], device: torch.device | str = "cpu",
                 landed: Callable[[int, T], None] | None = None) -> list[T]:
    """Each task's result, in order; `landed(index, result)` is told of each as it lands. On the CPU, independent
    trainings run in forked processes, as many at once as `trial_workers` allows, each with its share of this
    process's threads. Tasks must not rely on side effects: only what they return comes back."""
    workers = trial_workers(torch.device(device), len(tasks))
    if workers == 1:
        in_order: list[T] = []
        for i, task in enumerate(tasks):
            in_order.append(task())
            if landed is not None:
                landed(i, in_order[-1])
        return in_order
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("fork")  # the tasks are closures over tensors: forked, never pickled
    results: dict[int, T] = {}
    running: dict[Any, tuple[int, Any]] = {}  # receiving end -> (task index, process)
    queue = list(enumerate(tasks))
    try:
        while queue or running:
            while queue and len(running) < workers:
                i, task = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                proc = context.Process(target=_child, args=(task, send, threads), daemon=True)
                proc.start()
                send.close()
                running[receive] = (i, proc)
            for receive in multiprocessing.connection.wait(list(running)):
                i, proc = running.pop(receive)
                try:
                    status, value = pickle.loads(receive.recv_bytes())
                except EOFError:
                    proc.join()
                    raise SynthaugError(f"a trial process died (exit code {proc.exitcode}); "
                                        f"out of memory? fewer threads run fewer trials at once") from None
                receive.close()
                proc.join()
                if status == "error":
                    raise value
                results[i] = value
                if landed is not None:
                    landed(i, value)
    finally:
        for receive, (_, proc) in running.items():
            receive.close()
            proc.kill()
            proc.join()
    return [results[i] for i in range(len(tasks))]


def _child(task: Callable[[], Any], send: Any, threads: int) -> None:
    """A forked trial: run the task on `threads` threads and send back ('ok', result) or ('error', exception)."""
    torch.set_num_threads(threads)
    try:
        message = ("ok", task())
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        message = ("error", exc)
    try:  # by value: torch's own pickler would share tensors through this process, which ends now
        payload = pickle.dumps(message)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception: say what it was
        payload = pickle.dumps(("error", SynthaugError(f"a trial's result could not be sent back: {exc}")))
    send.send_bytes(payload)
    send.close()
