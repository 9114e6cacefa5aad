"""Gather tapped features across the processes of a distributed run, with gradients (the ``global`` penalty scope).

With ``variance_scope="global"`` every process computes the variance penalty on the features of the whole
(global) batch: its own rows and those of the other processes, in rank order. ``torch.distributed.nn.functional``'s
``all_gather`` is autograd-aware: its backward sums, for each process's rows, the gradients that every process's
copy of the penalty sends them. Every process computes the same penalty ``P`` (the same rows, and the same sampled
columns, because the loss's column generator is seeded alike on every process), so the gradient reaching a
process's own features is ``N * dP/dx_local`` for ``N`` processes; DistributedDataParallel then averages the
parameter gradients over the processes (divides by ``N``), which leaves exactly the single-process gradient of the
penalty on the concatenated batch. ``tests/losses/test_distributed_penalty.py`` checks values and gradients.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

__all__ = ["VARIANCE_SCOPES", "distributed_world_size", "gather_features"]

VARIANCE_SCOPES = ("local", "global")


def distributed_world_size() -> int:
    """The number of processes of the initialised default process group; 1 when there is none."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_features(features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each ``(B, ...)`` feature concatenated over the processes, in rank order, as ``(N * B, ...)``.

    Gradients flow back to every process's rows. Every process must pass tensors of the same shapes (the padded
    ``DistributedSampler`` of the training loader gives every process the same batch sizes). Without an initialised
    process group, or with a single process, the features are returned as they are.
    """
    if distributed_world_size() == 1:
        return list(features)
    with warnings.catch_warnings():
        # torch 2.13 deprecates it in favour of a private (underscored) module; it is the public autograd gather.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return [torch.cat(all_gather(feature), dim=0) for feature in features]
