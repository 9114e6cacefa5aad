"""Distributed data-parallel training: the process group torchrun describes, and who does what in it.

``torchrun`` (``torch.distributed.run``) starts the processes and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each; :func:`distributed_session` initialises the default process group from
them (``env://``): NCCL on CUDA, Gloo on CPU, one GPU per process (``cuda:LOCAL_RANK``). Without ``WORLD_SIZE`` in
the environment nothing is initialised and training runs in a single process as before. See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import torch
import torch.distributed as dist

from pipeline.config import Config
from pipeline.errors import ConfigError

__all__ = ["DistributedContext", "current_context", "distributed_session", "end_process_group", "launched_by_torchrun",
           "launch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run: ``enabled`` is False (rank 0 of 1) without a process group."""

    enabled: bool = False
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, logs and prints."""
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every process."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def current_context() -> DistributedContext:
    """The context of the initialised default process group (however it was initialised), or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistributedContext(enabled=True, rank=dist.get_rank(), local_rank=local_rank,
                              world_size=dist.get_world_size())


def end_process_group() -> None:
    """Destroy the default process group, and reset ignite's view of it: ``ignite.distributed`` keeps the group it
    first found, and would use the destroyed one in a later single-process run of the same Python process.

    Unreachable DistributedDataParallel wrappers are collected first, while the group is still registered. A DDP
    reducer freed after the group's destruction drops the group's last reference and runs its destructor with
    the GIL held; Gloo's destructor joins its worker threads, and a worker still releasing its last finished
    collective waits for the GIL: the process hangs at exit (seen about once in eight 2-process runs).
    """
    gc.collect()
    idist.sync()
    idist.finalize()


def _wants_cuda(config: Config) -> bool:
    return config.training.device == "cuda" or (config.training.device == "auto" and torch.cuda.is_available())


@contextlib.contextmanager
def distributed_session(config: Config) -> Iterator[DistributedContext]:
    """Initialise the process group torchrun describes (and destroy it afterwards); a single process otherwise.

    A process group that is already initialised (by a test, a notebook, another launcher) is used as it is.

    Raises:
        ConfigError: more processes on this machine than CUDA devices, or ``training.device = 'cuda'`` without one.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield current_context()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "gloo"
    if _wants_cuda(config):
        if not torch.cuda.is_available():
            raise ConfigError("training.device = 'cuda' but no CUDA device is available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process {local_rank} on this machine has no GPU ({torch.cuda.device_count()} "
                              "visible): start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    dist.init_process_group(backend=backend)
    try:
        context = current_context()
        logger.info("process %d of %d (local rank %d), backend %s", context.rank, context.world_size,
                    context.local_rank, backend)
        yield context
    finally:
        end_process_group()


def launch(nproc: int, worker_argv: list[str]) -> None:
    """Run ``python -m pipeline WORKER_ARGV`` in ``nproc`` processes on this machine with torchrun's launcher
    (``torch.distributed.run``, standalone rendezvous on a free local port).

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: a process failed.
    """
    from torch.distributed.run import parse_args, run

    run(parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "pipeline", *worker_argv]))
