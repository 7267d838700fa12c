"""Training in several processes (``torchrun``, DistributedDataParallel): the few pieces
:func:`lc_utils.training.fit` and its loaders need, all of them no-ops in a single process.

``torchrun`` starts the processes and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_from_env` joins them into one process group (NCCL on GPUs, gloo on CPUs). A notebook
never does, and everything here then behaves as one process of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from .devices import default_device


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True in the process that writes checkpoints and prints: rank 0, or the only one."""
    return rank() == 0


def init_from_env() -> torch.device:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1) and return this process's
    device: ``cuda:LOCAL_RANK`` with NCCL where there are GPUs, the CPU with gloo otherwise. In a
    single process nothing is joined and the usual device is returned."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return default_device()
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int) -> int:
    """The batch each process takes so that together they make ``global_batch``."""
    processes = world_size()
    if global_batch % processes:
        raise ValueError(f"the global batch size {global_batch} does not divide among {processes} processes; "
                         f"choose a multiple of {processes}")
    return global_batch // processes


class EpochSampler(Sampler[int]):
    """Indices for one epoch of training, this process's share of them.

    The epoch's sequence is ``num_samples`` indices: every item once per pass, each pass in a new
    order drawn from (``seed``, epoch); set the epoch with :meth:`set_epoch`. Process ``r`` of
    ``n`` takes items ``r, r + n, r + 2n, ...``: with a per-process batch of ``B / n``, step ``k``
    of all processes together holds the same ``B`` items as step ``k`` of a single process, so the
    global batch is the same whatever the number of processes.
    """

    def __init__(self, length: int, num_samples: int | None = None, *, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.length, self.num_samples = length, num_samples or length
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank(), world_size()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _sequence(self) -> np.ndarray:
        passes = -(-self.num_samples // self.length)
        if not self.shuffle:
            return np.tile(np.arange(self.length), passes)[:self.num_samples]
        rng = np.random.default_rng([self.seed, self.epoch])
        return np.concatenate([rng.permutation(self.length) for _ in range(passes)])[:self.num_samples]

    def __iter__(self) -> Iterator[int]:
        return iter(self._sequence()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients over the processes too: every
    process's loss depends on every process's input through the sum."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class _CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose batch statistics are taken over every process's batch, on CPUs (torch's
    ``SyncBatchNorm`` runs on GPUs only): sums and sums of squares are all-reduced with autograd,
    so gradients flow as if one process held the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype)
        stats = _SumOverProcesses.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1).clamp_min(1))
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every batch-norm layer computing its statistics over all processes' batches:
    torch's ``SyncBatchNorm`` on GPUs, an all-reduce over gloo on CPUs. Weights and running
    statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, _CPUSyncBatchNorm):
            replacement = _CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement)
        else:
            sync_batchnorm(child, device)
    return model


def broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics): DistributedDataParallel
    copies them at the start of each step, so after the last step they lag by one on the others."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all processes (in place, and returned); itself in one process."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` as DistributedDataParallel inside a process group, itself otherwise."""
    if not active():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def sum_over_processes(*values: float) -> tuple[float, ...]:
    """``values`` summed over all processes (as float64); themselves in one process."""
    if not active():
        return values
    return tuple(all_reduce_sum(torch.tensor(values, dtype=torch.float64)).tolist())


def global_batch_loss(loss: torch.Tensor, labelled: int) -> tuple[torch.Tensor, float]:
    """This process's share of the global batch's loss, and that loss's value.

    ``loss`` averages over this process's ``labelled`` pixels. DistributedDataParallel averages
    the gradients of the processes, so the loss is scaled to ``processes x labelled / all labelled``:
    the gradient is then the one of the mean over every labelled pixel of the global batch, as in a
    single process, however the labels fall between the processes. (Exact for an unweighted loss;
    with class weights the mean is over each process's weights.) In one process: ``loss`` as it is.
    """
    if not active():
        return loss, float(loss.detach())
    totals = all_reduce_sum(torch.tensor([float(labelled), float(loss.detach()) * labelled],
                                         dtype=torch.float64))
    all_labelled = max(float(totals[0]), 1.0)
    value = float(totals[1]) / all_labelled if totals[0] > 0 else float(loss.detach())
    return loss * (world_size() * labelled / all_labelled), value
