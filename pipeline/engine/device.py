"""Where and how a run computes: the device, the autocast precision, seeding and determinism, and the
DistributedDataParallel wrapper of a distributed run."""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path

import cpuinfo
import torch
from monai.utils import set_determinism
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.config import Config
from pipeline.engine.distributed import DistributedContext
from pipeline.errors import ConfigError

__all__ = ["select_device", "run_device", "autocast_dtype", "seed_everything", "cpu_model", "hardware_description",
           "wrap_for_distributed"]

logger = logging.getLogger(__name__)


def select_device(config: Config) -> torch.device:
    if config.training.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device = 'cuda' but no CUDA device is available")
    if config.training.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.training.device)


def run_device(config: Config, context: DistributedContext) -> torch.device:
    """The device of this process: :func:`select_device`, on this process's own GPU in a distributed run.

    Raises:
        ConfigError: ``training.sync_batchnorm`` in a distributed run without CUDA devices.
    """
    device = select_device(config)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if context.enabled and config.training.sync_batchnorm and device.type != "cuda":
        raise ConfigError("training.sync_batchnorm = true needs CUDA devices (NCCL): PyTorch's SyncBatchNorm "
                          "does not run on CPU; set it to false")
    return device


def autocast_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """bf16 where the device supports it and amp is not off; None means full precision.

    MONAI's engines autocast on CUDA only, so CPU runs stay in float32.
    """
    if config.training.amp is False or device.type != "cuda":
        if config.training.amp is True and device.type != "cuda":
            logger.warning("training.amp = true has no effect on %s: MONAI's engines autocast on CUDA only", device)
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if config.training.amp is True else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's brand string: /proc/cpuinfo's ``model name`` on Linux, else py-cpuinfo's, else what ``platform``
    says. Linux's file is read first because py-cpuinfo, which returns the same string there, starts a
    subprocess and takes about a second: every training run names its CPU. Cached: it does not change while the
    process runs."""
    proc_cpuinfo = Path("/proc/cpuinfo")
    if proc_cpuinfo.is_file():
        for line in proc_cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    brand = cpuinfo.get_cpu_info().get("brand_raw", "")
    return brand or platform.processor() or platform.machine()


def hardware_description(device: torch.device) -> str:
    """Where a run trains, for its summary and logs: the GPU model and CUDA version, or the CPU model and the
    threads torch computes on (e.g. ``CPU: AMD EPYC, 1 thread``)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return f"CPU: {cpu_model()}, {threads} thread{'' if threads == 1 else 's'}"


def seed_everything(config: Config, device: torch.device, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (with ``training.seed + rank``: the processes of a distributed run draw
    different dropout masks; DistributedDataParallel gives them rank 0's initial weights); with
    ``training.deterministic`` also force deterministic kernels.

    On CUDA, deterministic cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use, and operations without
    a deterministic kernel (the backward of adaptive average pooling, in every medvp network) warn instead of
    failing: docs/reliability.md lists them.
    """
    seed = config.training.seed + rank
    if config.training.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_determinism(seed=seed)  # seeds, cudnn.deterministic; leaves torch's algorithm switch alone
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    else:
        set_determinism(seed=seed, use_deterministic_algorithms=False)
        torch.backends.cudnn.benchmark = True


def wrap_for_distributed(config: Config, network: nn.Module, device: torch.device,
                          context: DistributedContext) -> nn.Module:
    """The network the trainer runs: DistributedDataParallel (after SyncBatchNorm, if configured) when
    distributed, the network itself otherwise. Both share the parameters."""
    if not context.enabled:
        if config.training.sync_batchnorm:
            logger.info("training.sync_batchnorm has no effect in a single process")
        return network
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
