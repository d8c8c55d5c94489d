"""torchrun support: process group setup, the collectives the trainer needs, and the
object collectives that spread evaluations over ranks (``search.parallel``).

Gradients of the whole sandwich step (largest, n random, smallest) are accumulated
locally and averaged across ranks with one bucketed all-reduce per step, instead of
wrapping the supernet in DistributedDataParallel: DDP expects every parameter to take
part in each backward pass (or a costly unused-parameter search), which sub-networks of
a supernet violate, and DDP would all-reduce once per sub-network rather than once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank, world, local_rank, device)


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def all_reduce_gradients(
    params: list[torch.nn.Parameter], info: DistInfo, bucket_numel: int = 8_000_000
) -> None:
    """Average the accumulated gradients across ranks, in a few flat buckets."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads + [None]:
        if g is not None:
            bucket.append(g)
            size += g.numel()
        if bucket and (g is None or size >= bucket_numel):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat /= info.world_size
            for dst, src in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
                dst.copy_(src)
            bucket, size = [], 0


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (e.g. candidates' losses, so all ranks choose alike)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
        t /= info.world_size
    return t


def all_finite(t: torch.Tensor, info: DistInfo) -> bool:
    """Whether ``t`` is finite on every rank: ranks must agree before one of them stops,
    or the others wait forever in the next all-reduce."""
    flag = torch.isfinite(t).all().to(torch.float32).reshape(1)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: T, info: DistInfo, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small Python objects)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: T, info: DistInfo) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
