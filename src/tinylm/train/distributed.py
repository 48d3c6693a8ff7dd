"""Data-parallel training across processes: who am I, and how do we talk.

``torchrun --nproc_per_node N -m tinylm.cli.main train ...`` starts N copies of
the same program and tells each its place through environment variables: ``RANK``
(0..N-1 over all machines), ``LOCAL_RANK`` (index on this machine, which picks the
GPU) and ``WORLD_SIZE`` (N). Every process holds a full copy of the model, works
on a different slice of each batch, and ``DistributedDataParallel`` averages the
gradients (an all-reduce) during the backward pass, so all copies take the same
optimiser step and stay identical.

Backends: NCCL between GPUs, gloo between CPU processes. Only rank 0 writes files
and prints; the others compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tinylm.errors import TinylmError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 is the one that logs, samples and saves."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        """Read torchrun's variables; a plain ``python``/notebook run is world size 1."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            rank = int(os.environ["RANK"])
            world_size = int(os.environ["WORLD_SIZE"])
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise TinylmError(
                "RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun"
            ) from None
        if world_size < 1 or not 0 <= rank < world_size:
            raise TinylmError(f"RANK {rank} is not within WORLD_SIZE {world_size}")
        return cls(rank=rank, world_size=world_size, local_rank=local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL talks GPU to GPU; gloo is the portable CPU backend."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_device(info: DistInfo, device: torch.device) -> torch.device:
    """Each process on a machine takes its own GPU, chosen by ``LOCAL_RANK``."""
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def setup(info: DistInfo, device: torch.device) -> None:
    """Join the process group (once); torchrun's MASTER_ADDR/PORT say where to meet."""
    if not info.enabled or dist.is_initialized():
        return
    if device.type == "mps":
        raise TinylmError("multi-process training is not supported on MPS; use cpu or cuda")
    dist.init_process_group(backend=backend_for(device), rank=info.rank, world_size=info.world_size)


def teardown() -> None:
    """Leave the process group so the program exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``value`` over all processes (identity when there is one)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum of ``value`` over all processes (identity when there is one)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(info: DistInfo) -> None:
    """Wait for every process (e.g. until rank 0 has finished writing a checkpoint)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
