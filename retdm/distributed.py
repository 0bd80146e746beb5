"""Data-parallel training and evaluation across processes started by ``torchrun`` (PyTorch DDP).

One process per GPU (or several CPU processes with the gloo backend), on one node or many
(``torchrun --nnodes N --rdzv_backend c10d``). ``session()`` joins the process group that
torchrun's environment describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without it every
function here is the single-process identity, so the same code runs both ways.

What makes a run on W processes equal to a single-process run with the same global batch and
seed (up to the order of floating-point sums):

- data order: a ``DistributedSampler`` (``set_epoch`` every epoch) deals out one seeded
  permutation; local batch i of every rank together is global batch i of a 1-process run;
- augmentation and way-2 pool draws are drawn per item from the epoch's seed, not from a
  process's RNG stream, so an item gets the same crop and pool images on whichever rank;
- BatchNorm statistics are synchronised across ranks (``torch.nn.SyncBatchNorm`` on CUDA,
  :class:`CpuSyncBatchNorm` on the CPU, where torch's has no kernel);
- the way-2 memory bank is global: every rank fills all of it at the stage start (the same
  computation), and each step's fresh embeddings are all-gathered so that every rank stores
  every row; the label-neighbour table is computed identically on every rank from the fit part;
- validation and evaluation shard the items into contiguous, disjoint ranges (no padding, no
  duplicates) and all-gather the scores back in item order: every item counts exactly once.

Only rank 0 writes outputs (checkpoints, ``epochs.csv``, predictions). Resuming reads
``last.pt`` on every rank, so with several nodes the output directory must be shared storage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from retdm.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes outputs and shows progress."""
        return self.rank == 0


def world() -> World:
    """The current process group (a world of one when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[World]:
    """Join the process group of ``torchrun``'s environment for the duration of the block.

    The backend is NCCL when the processes train on CUDA, gloo otherwise; on CUDA each process
    takes the GPU of its ``LOCAL_RANK``. Nested sessions and runs without torchrun's environment
    (``WORLD_SIZE`` unset or 1) leave the process group as they find it.
    """
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1 or dist.is_initialized():
        yield world()
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written what the others read next)."""
    if world().size > 1:
        dist.barrier()


def local_batch_size(batch_size: int, w: World) -> int:
    """Each process's share of the global ``data.batch_size``.

    Raises:
        ConfigError: the global batch does not divide evenly among the processes.
    """
    if batch_size % w.size:
        raise ConfigError(f"config key 'data.batch_size': the global batch {batch_size} does not divide among "
                          f"{w.size} processes; set it to a multiple of {w.size}")
    return batch_size // w.size


def shard(n: int, w: World) -> range:
    """This rank's contiguous share of ``n`` items: disjoint, together exactly ``range(n)``."""
    return range(n * w.rank // w.size, n * (w.rank + 1) // w.size)


def gather_shards(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` (first dimensions may differ) in rank order; padding to the
    longest shard is cut off again, so nothing is duplicated."""
    w = world()
    if w.size == 1:
        return x
    size = torch.tensor([len(x)], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(w.size)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes))
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def gather_equal(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` of the same shape in rank order (the bank's fresh rows)."""
    w = world()
    if w.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(w.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def sum_over_ranks(*values: float) -> list[float]:
    """Every rank's ``values`` added up (float64), the same on every rank."""
    w = world()
    if w.size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch normalisation over the union of every rank's batch (training mode), with its exact
    gradient: the batch's mean and variance, and in backward the sums over dy and dy·x̂, are
    all-reduced, so each rank's dx is what a single process would compute for its rows."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float):  # noqa: ANN205
        dims, shape, c = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2), x.shape[1]
        x64 = x.double()
        stats = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), x64.new_tensor([x.numel() // c])])
        dist.all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises
        invstd = torch.rsqrt(var + eps).to(x.dtype)
        xhat = (x - mean.to(x.dtype).view(shape)) * invstd.view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.n = float(n)
        return xhat * weight.view(shape) + bias.view(shape), mean.to(x.dtype), (var * n / (n - 1)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy: Tensor, _mean: Tensor, _var: Tensor):  # noqa: ANN205
        xhat, weight, invstd = ctx.saved_tensors
        dims, shape, c = [0, *range(2, dy.dim())], [1, -1] + [1] * (dy.dim() - 2), dy.shape[1]
        local = torch.cat([dy.sum(dims), (dy * xhat).sum(dims)])  # this rank's dβ, dγ
        total = local.clone()
        dist.all_reduce(total)
        mean_dy, mean_dy_xhat = (total[:c] / ctx.n).view(shape), (total[c:] / ctx.n).view(shape)
        dx = (weight * invstd).view(shape) * (dy - mean_dy - xhat * mean_dy_xhat)
        return dx, local[c:], local[:c], None


class CpuSyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm`` for CPU processes (gloo): the same statistics over every rank's
    batch in training mode, plain BatchNorm in eval mode or without a process group. Same
    parameters and buffers as the BatchNorm it replaces, so checkpoints load either way."""

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and world().size > 1 and self.affine and self.track_running_stats):
            return super().forward(x)
        y, mean, var = _SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean, m)
            self.running_var.lerp_(var, m)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm synchronised across ranks (in place for its containers)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        out = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module
