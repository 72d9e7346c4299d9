"""Data-parallel training under ``torchrun``: one process per device, rank 0 writes.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`session`
then joins the process group (NCCL on CUDA, gloo on the CPU) and pins each
process to ``cuda:LOCAL_RANK``. Without those variables, or with a world of one
process, nothing changes: every helper here is a no-op and training runs as a
single process. Nothing happens at import time. See ``docs/distributed.md``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .stylize import resolve_device

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun``."""
    return all(v in os.environ for v in TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: 0 alone, torchrun's ``RANK`` outside the group's lifetime."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, the only process that writes logs, samples, checkpoints and exports."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextmanager
def session(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration of a training run; yields the device.

    Under torchrun a CUDA device becomes ``cuda:LOCAL_RANK`` whatever index was
    asked for. A process group that already exists (a test, a caller's own
    setup) is used as it is and left open.
    """
    resolved = resolve_device(device)
    if is_distributed():
        if resolved.type == "cuda":
            resolved = torch.device("cuda", torch.cuda.current_device())
        yield resolved
        return
    if not launched_by_torchrun():
        yield resolved
        return
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        yield resolved
    finally:
        cleanup()


def cleanup() -> None:
    """Leave the process group (if one is active)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, device: torch.device, sync_buffers: bool = True) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed, else unchanged.

    The wrapper copies rank 0's weights and buffers to every rank at construction
    and averages gradients in every backward pass. ``sync_buffers`` False stops
    it from also copying rank 0's buffers before each forward pass.
    """
    if not is_distributed():
        return module
    ids = [device.index] if device.type == "cuda" else None
    # torch ≥ 2.13 renamed broadcast_buffers (now deprecated) to forward_sync_buffers.
    params = inspect.signature(DistributedDataParallel).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=ids, **{key: sync_buffers})


def average(values: list[float], device: torch.device) -> list[float]:
    """The mean of each value over all ranks (losses for the log, NaN checks that agree)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (e.g. a Ctrl-C seen by one process)."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def stream_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for one rank's random stream from ``step`` on, distinct for each triple."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])
