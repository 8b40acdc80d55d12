"""Process-group set-up for ``torchrun`` and the few collective helpers the engine needs.

``torchrun --nproc-per-node N -m srlib.train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` (and, across machines, ``MASTER_ADDR`` / ``MASTER_PORT`` or a rendezvous
endpoint); :func:`setup` reads them and joins the group: NCCL on GPUs, gloo on CPU. Without
them the run is a single process and every helper here is a no-op.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints summaries."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str = "auto") -> tuple[DistributedContext, torch.device]:
    """Join the process group if launched by torchrun; return the context and the device."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return DistributedContext(), resolve_device(device_name)
    context = DistributedContext(rank=int(os.environ["RANK"]),
                                 local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                                 world_size=int(os.environ["WORLD_SIZE"]))
    device = resolve_device(device_name, context.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return context, device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over all processes (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_process(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of ``flags`` over all processes (one small collective under DDP, so
    that every process takes the same branch; the flags themselves in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(flags)
    tensor = torch.tensor(flags, dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(flag) for flag in tensor.tolist()]


def gather_objects(value) -> list:
    """Every process's ``value`` in rank order (``[value]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
