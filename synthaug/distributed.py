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


def main_decides(main_says: bool, device: torch.device) -> bool:
    """Rank 0's decision, known to every rank (time-based choices would otherwise differ between ranks)."""
    return any_rank([main_says and current().is_main], device)[0]


def reseed_noise(seed: int, step: int) -> None:
    """A noise stream per (seed, step, rank), so ranks do not draw the same latents."""
    import numpy as np

    torch.manual_seed(int(np.random.SeedSequence([seed, step, current().rank]).generate_state(1)[0]))


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around a module on this rank's device."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast_buffers(nets: list[torch.nn.Module]) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart between DDP's broadcasts)."""
    for net in nets:
        for buf in net.buffers():
            dist.broadcast(buf.data, src=0)


def check_in_sync(nets: dict[str, torch.nn.Module], record: dict, path) -> None:
    """Compare weights across ranks; rank 0 writes the result (with `record`) as JSON to `path`; a mismatch stops."""
    import json

    from synthaug.errors import SynthaugError
    from synthaug.fsutil import atomic_write_text

    info = current()
    mine = {name: [float(v.detach().double().sum()) for v in net.state_dict().values() if v.is_floating_point()]
            for name, net in nets.items()}
    everyone: list = [None] * info.world_size
    dist.all_gather_object(everyone, mine)
    in_sync = {name: all(r[name] == everyone[0][name] for r in everyone) for name in nets}
    if info.is_main:
        atomic_write_text(path, json.dumps(
            {"world_size": info.world_size, "backend": dist.get_backend(), **record, "in_sync": in_sync,
             "checksums": {name: [sum(r[name]) for r in everyone] for name in nets}}, indent=1))
    if not all(in_sync.values()):
        raise SynthaugError(f"ranks disagree on {[k for k, v in in_sync.items() if not v]} after step "
                            f"{record.get('step')}")
