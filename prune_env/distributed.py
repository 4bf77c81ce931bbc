"""Devices and data parallelism: which device a process computes on, and its place in a torchrun job.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) :func:`init_distributed` joins the process group
(gloo on CPU, NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``); a single process gets a
one-process :class:`DistContext`, so the callers (the CNN phase, :mod:`prune_env.cnn`) run the
same code either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistContext", "resolve_device", "init_distributed", "cleanup_distributed", "all_reduce_sum", "barrier",
    "broadcast_buffers",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else is passed to torch."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return dev


def init_distributed(device: str | torch.device | None = "auto") -> tuple[DistContext, torch.device]:
    """Join the data-parallel job this process belongs to, if any.

    * a process group already initialised (e.g. by ``torch.multiprocessing.spawn`` workers)
      is used as it is;
    * else, when ``WORLD_SIZE > 1`` (set by ``torchrun``), the group is initialised from the
      environment: NCCL when the device is CUDA (each rank on ``cuda:LOCAL_RANK``), else gloo;
    * else this is a single process.

    Returns the context and the device this rank computes on. Idempotent.
    """
    dev = resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
    elif int(os.environ.get("WORLD_SIZE", 1)) > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
    else:
        ctx = DistContext()
    if ctx.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return ctx, dev


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """The element-wise sum of ``values`` over the ranks (``values`` itself for one process)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (nothing for one process)."""
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (e.g. BatchNorm running statistics)."""
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
