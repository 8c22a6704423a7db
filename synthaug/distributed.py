"""torch.distributed plumbing: process groups from torchrun's environment, rank-0 duties, agreed decisions.

`synthaug fit` and `synthaug export` call `init_from_env()`: under `torchrun` (WORLD_SIZE > 1) it starts the
process group (NCCL on GPUs, gloo on CPUs) and picks this rank's device; without torchrun it is a no-op and
everything runs in one process.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device_name: str = "auto") -> DistInfo:
    """Join torchrun's process group when there is one (NCCL when this rank uses CUDA, else gloo)."""
    if env_world_size() <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_name == "auto" or device_name.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=_dt.timedelta(minutes=30))
    return current()


def current() -> DistInfo:
    """The DistInfo of an already initialised process group (or the single-process one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks, so every rank takes the same decision."""
    if not (dist.is_available() and dist.is_initialized()):
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def shutdown() -> None:
    """Leave the process group (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
