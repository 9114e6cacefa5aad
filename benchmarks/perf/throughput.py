"""Throughput measurements: the variance penalty's cost and medvp's engine against a plain PyTorch loop.

Every figure is recorded with the hardware and the versions it was measured with (:func:`environment`). Cases
that are compared run interleaved, in rounds, inside one process, so a comparison is a ratio within one run:
on a shared machine the absolute numbers drift, the ratios much less.

The scripts in ``benchmarks/perf/`` call these functions and write the JSON.
"""

from __future__ import annotations

import datetime
import logging
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import ignite
import monai
import numpy as np
import torch

from pipeline.config import load_config
from pipeline.data import SPLITS
from pipeline.data.npz_guard import check_npz_headers
from pipeline.engine import train
from pipeline.engine.builders import make_loss, make_network, make_optimizer
from pipeline.engine.data_setup import prepare_data
from pipeline.engine.device import autocast_dtype, hardware_description
from pipeline.experiments.provenance import provenance
from pipeline.losses import FeatureTap, LayerVariance, VariancePenalizedLoss, layer_variance
from pipeline.networks import NetworkSpec, build_network

__all__ = ["environment", "PeakMemory", "peak_memory", "PenaltyCase", "PENALTY_CASES", "penalty_overhead",
           "engine_overhead", "subset_medmnist"]

logger = logging.getLogger(__name__)

_PAGE_BYTES = 4096


def environment(device: torch.device) -> dict:
    """The code, hardware and software a figure was measured on: commit, device, CPU, threads, versions, time
    (UTC)."""
    code = provenance()
    record = {
        "commit": code["commit"], "commit_source": code["commit_source"], "dirty": code["dirty"],
        "device": str(device),
        "cpu": code["cpu"],
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
                     "ignite": ignite.__version__, "numpy": np.__version__},
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        record.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                      cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    record["hardware"] = hardware_description(device)  # as train_summary.json records it
    return record


def _resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def _reset_peak_resident() -> bool:
    """Reset the kernel's peak resident set size of this process (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _peak_resident_bytes() > 0


def _peak_resident_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class PeakMemory:
    """Peak memory of a measured block, in MiB: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak
    resident set size of the process (the kernel's VmHWM after a reset, or where that is not allowed sampled every
    2 ms from ``/proc/self/statm``) and its size before."""

    method: str
    peak_mib: float = 0.0
    before_mib: float = 0.0

    def as_dict(self) -> dict:
        return {"method": self.method, "peak_mib": round(self.peak_mib, 1), "before_mib": round(self.before_mib, 1)}


@contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """Measure the peak memory of the block: ``with peak_memory(device) as memory: ...; memory.peak_mib``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        memory = PeakMemory("torch.cuda.max_memory_allocated", before_mib=torch.cuda.memory_allocated(device) / 2**20)
        yield memory
        torch.cuda.synchronize(device)
        memory.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        return
    before = _resident_bytes()
    if _reset_peak_resident():
        # The kernel's own high-water mark, reset at the start: exact, whatever the load on the machine. "Before" is
        # the mark just after the reset (the resident size then), not the statm read above, which memory freed in
        # between could leave above the peak (seen once in CI: peak 817.1 against before 817.2 MiB).
        memory = PeakMemory("process peak resident set size (VmHWM, reset through /proc/self/clear_refs)",
                            before_mib=_peak_resident_bytes() / 2**20)
        yield memory
        memory.peak_mib = _peak_resident_bytes() / 2**20
        return
    memory = PeakMemory("process resident set size (/proc/self/statm, sampled every 2 ms)", before_mib=before / 2**20)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], _resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield memory
    finally:
        stop.set()
        sampler.join()
        memory.peak_mib = max(peak[0], _resident_bytes()) / 2**20


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


@dataclass(frozen=True)
class PenaltyCase:
    """One loss configuration of the penalty-overhead benchmark; ``taps=None`` is cross-entropy alone."""

    name: str
    taps: str | None = None
    feature_sampling_ratio: float = 0.2
    #: another formulation of the per-layer penalty (``pipeline.losses.LayerVariance``), passed to this case's loss
    #: as its ``estimator``: to time it against the library's ``layer_variance`` in the same run.
    layer_variance: LayerVariance | None = None


PENALTY_CASES = (
    PenaltyCase("cross_entropy"),
    PenaltyCase("penalty_last_conv_0.2", "last_conv", 0.2),
    PenaltyCase("penalty_all_conv_0.2", "all_conv", 0.2),
)


def _penalty_step(case: PenaltyCase, device: torch.device, image_size: int, batch_size: int, num_classes: int,
                  dtype: torch.dtype | None, seed: int) -> tuple[Callable[[], None], Callable[[], None], list[str]]:
    """A plain PyTorch training step for ``case`` (MONAI ResNet-18 2D, AdamW, synthetic inputs on the device),
    a clean-up function, and the tapped layer names."""
    torch.manual_seed(seed)
    network = build_network(NetworkSpec("resnet18", 2, 1, num_classes)).to(device)
    if device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    tap = FeatureTap(network, case.taps) if case.taps else None
    loss = VariancePenalizedLoss(variance_weight=0.01 if tap else 0.0,
                                 feature_sampling_ratio=case.feature_sampling_ratio, task="multiclass",
                                 feature_source=tap, seed=seed, estimator=case.layer_variance or layer_variance)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 1, image_size, image_size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    network.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            total = loss(network(images), labels)
        total.backward()
        optimizer.step()

    def close() -> None:
        if tap is not None:
            tap.remove()

    return step, close, tap.layer_names if tap else []


def penalty_overhead(device: torch.device, image_size: int, batch_size: int, steps: int, warmup: int, rounds: int,
                     dtype: torch.dtype | None = None, cases: tuple[PenaltyCase, ...] = PENALTY_CASES,
                     num_classes: int = 2, seed: int = 0) -> dict:
    """Training throughput of ResNet-18 2D with cross-entropy alone and with the penalty, in a plain loop.

    Each round times ``steps`` steps of every case, after ``warmup`` untimed steps per case; a case's figure is the
    median over rounds, and ``ratio_to_cross_entropy`` divides it by cross-entropy's median of the same run.

    Args:
        device: where to train.
        image_size: input side in pixels (one channel).
        batch_size: images per step.
        steps: timed steps per case and round.
        warmup: untimed steps per case before the first round.
        rounds: interleaved rounds.
        dtype: autocast dtype (``torch.bfloat16`` on a GPU), or None for float32.

    Returns:
        ``{"settings": ..., "cases": [{"name", "taps", "tapped_layers", "images_per_second", "round_images_per_second",
        "ratio_to_cross_entropy", "memory"}, ...]}``
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    prepared = {case.name: _penalty_step(case, device, image_size, batch_size, num_classes, dtype, seed)
                for case in cases}
    memory: dict[str, PeakMemory] = {}
    for case in cases:
        step = prepared[case.name][0]
        with peak_memory(device) as memory[case.name]:
            for _ in range(warmup):
                step()
            _synchronize(device)
    rates: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            step = prepared[case.name][0]
            _synchronize(device)
            started = time.perf_counter()
            for _ in range(steps):
                step()
            _synchronize(device)
            rates[case.name].append(steps * batch_size / (time.perf_counter() - started))
    for _, close, _ in prepared.values():
        close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    baseline = medians[cases[0].name]
    results = [{
        "name": case.name, "taps": case.taps,
        "feature_sampling_ratio": case.feature_sampling_ratio if case.taps else None,
        "tapped_layers": len(prepared[case.name][2]),
        "formulation": case.layer_variance.__name__ if case.layer_variance else "library (circular block of columns)",
        "images_per_second": round(medians[case.name], 2),
        "round_images_per_second": [round(value, 2) for value in rates[case.name]],
        "ratio_to_cross_entropy": round(medians[case.name] / baseline, 4),
        "memory": memory[case.name].as_dict(),
    } for case in cases]
    settings = {"model": "MONAI resnet18, spatial_dims=2, 1 input channel, standard stem", "image_size": image_size,
                "batch_size": batch_size, "num_classes": num_classes, "optimizer": "AdamW lr 1e-3",
                "precision": str(dtype) if dtype else "float32", "variance_weight": 0.01, "steps": steps,
                "warmup": warmup, "rounds": rounds, "inputs": "synthetic, resident on the device",
                "memory_format": "channels_last" if device.type == "cuda" else "contiguous",
                "loop": "plain PyTorch: zero_grad, forward (autocast), VariancePenalizedLoss, backward, step"}
    return {"settings": settings, "cases": results}


MEDMNIST_ARRAYS = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]

def subset_medmnist(source: Path, out: Path, train_items: int, val_items: int) -> Path:
    """Write the first ``train_items``/``val_items`` of a MedMNIST ``.npz``'s train/val splits (and its whole test
    split) to ``out``: real images, fewer of them, for a short run."""
    check_npz_headers(source, MEDMNIST_ARRAYS)  # the guard every medvp reader of an .npz goes through
    with np.load(source, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for split, count in (("train", train_items), ("val", val_items)):
        arrays[f"{split}_images"] = arrays[f"{split}_images"][:count]
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"][:count]
    np.savez(out, **arrays)
    return out


def _plain_loop(config, device: torch.device, epochs: int,
                warmup: int = 3) -> tuple[float, int, PeakMemory, tuple[int, int]]:
    """Train and validate ``epochs`` epochs with a plain PyTorch loop on the same data, model, batch sizes,
    optimizer, loss and precision as ``medvp train``; the preprocessed splits are held as tensors on the device.

    ``warmup`` untimed steps come first. Returns the seconds, the images processed (training plus validation),
    the peak memory and the split sizes."""
    data = prepare_data(config, splits=("train", "val"), device=device)
    splits = {}
    for split, loader in data.loaders.items():
        batches = [(batch["image"].as_tensor() if hasattr(batch["image"], "as_tensor") else batch["image"],
                    batch["label"]) for batch in loader]
        splits[split] = (torch.cat([images for images, _ in batches]).to(device),
                         torch.cat([labels for _, labels in batches]).to(device))
    torch.manual_seed(config.training.seed)
    network = make_network(config, data.info, tuple(splits["train"][0].shape[1:])).to(device)
    loss, tap = make_loss(config, data.info.task, network)
    optimizer = make_optimizer(config, network)
    dtype = autocast_dtype(config, device)
    train_images, train_labels = splits["train"]
    val_images, _ = splits["val"]
    batch, eval_batch = config.data.batch_size, config.data.eval_batch_size
    generator = torch.Generator().manual_seed(config.training.seed)
    network.train()
    for start in range(0, warmup * batch, batch):  # untimed: oneDNN/cuDNN set-up and the optimizer's state
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            loss(network(train_images[start:start + batch]), train_labels[start:start + batch]).backward()
        optimizer.step()
    processed = 0
    with peak_memory(device) as memory:
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(epochs):
            network.train()
            order = torch.randperm(len(train_images), generator=generator).to(device)
            for start in range(0, len(order), batch):
                index = order[start:start + batch]
                if len(index) < 2:  # as make_loader: batch normalization cannot take one item
                    continue
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device, dtype):
                    total = loss(network(train_images[index]), train_labels[index])
                total.backward()
                optimizer.step()
                processed += len(index)
            network.eval()
            with torch.no_grad(), _autocast(device, dtype):
                for start in range(0, len(val_images), eval_batch):
                    network(val_images[start:start + eval_batch]).float().softmax(dim=1)
            processed += len(val_images)
        _synchronize(device)
        seconds = time.perf_counter() - started
    if tap is not None:
        tap.remove()
    return seconds, processed, memory, (len(train_images), len(val_images))


def engine_overhead(base_config: Path, device: torch.device, epochs: int, batch_size: int, rounds: int,
                    train_items: int | None = None, val_items: int | None = None,
                    overrides: tuple[str, ...] = ()) -> dict:
    """Images per second of ``medvp train`` (``pipeline.engine.train``: MONAI's SupervisedTrainer and
    SupervisedEvaluator with medvp's handlers, checkpoints and logs) against a plain PyTorch loop.

    Both train ResNet-18 (small-input stem) with cross-entropy alone on the config's data, for ``epochs``
    epochs, validating after each; both count training and validation images. Rounds alternate the two. On CUDA
    the engine runs with ``data.cache=gpu`` (the preprocessed splits held on the GPU, as the plain loop holds them);
    an ``overrides`` entry ``data.cache=memory`` measures the CPU-cached path instead.

    Args:
        base_config: a medvp config (its data, preprocessing and optimizer are kept).
        device: ``cpu`` or ``cuda``.
        epochs: epochs per measured run.
        batch_size: training batch size (validation uses the config's ``eval_batch_size``).
        rounds: alternating (plain loop, engine) rounds; the figures are medians.
        train_items, val_items: keep only the first so many training/validation images (None: all).
        overrides: further ``SECTION.KEY=VALUE`` settings.
    """
    with tempfile.TemporaryDirectory(prefix="medvp-perf-") as scratch:
        scratch_dir = Path(scratch)
        data_override = []
        if train_items is not None or val_items is not None:
            source = load_config(base_config).data.path
            check_npz_headers(source, MEDMNIST_ARRAYS)  # the guard every medvp reader of an .npz goes through
            with np.load(source, allow_pickle=False) as archive:
                counts = (train_items or len(archive["train_labels"]), val_items or len(archive["val_labels"]))
            subset = subset_medmnist(source, scratch_dir / "subset.npz", *counts)
            data_override = [f"data.path={subset}"]
        settings = [*data_override, "model.name=resnet18", "model.options={}", "model.small_input=true",
                    "loss.variance_weight=0",
                    f"data.batch_size={batch_size}", f"training.max_epochs={epochs}", "training.scheduler.name=none",
                    f"training.device={device.type}", "training.deterministic=false", "training.progress_bar=false",
                    *(["data.cache=gpu"] if device.type == "cuda" else []),
                    "evaluation.splits=[]", f"output.root={scratch_dir / 'runs'}", *overrides]
        config = load_config(base_config, settings)
        plain_rates, engine_rates, plain_memory, engine_memory = [], [], [], []
        for _ in range(rounds):
            if device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            seconds, processed, memory, data_sizes = _plain_loop(config, device, epochs)
            plain_rates.append(processed / seconds)
            plain_memory.append(memory)
            with peak_memory(device) as memory:
                result = train(config)  # a fresh run directory each round (name, name-2, ...)
            engine_memory.append(memory)
            engine_rates.append(epochs * sum(data_sizes) / result.seconds)
    plain, engine = statistics.median(plain_rates), statistics.median(engine_rates)
    return {
        "settings": {"config": str(base_config), "overrides": settings, "model": "MONAI resnet18, small-input stem",
                     "loss": "cross-entropy alone (variance_weight 0)", "epochs": epochs, "batch_size": batch_size,
                     "eval_batch_size": config.data.eval_batch_size, "train_items": data_sizes[0],
                     "val_items": data_sizes[1], "rounds": rounds,
                     "precision": str(autocast_dtype(config, device) or "float32"),
                     "counted": "training plus validation images per second of the timed span",
                     "engine_span": "trainer.run(): training, validation, checkpoints, logs (TrainResult.seconds)",
                     "plain_span": "training and validation loops over preprocessed tensors held on the device"},
        "plain_loop": {"images_per_second": round(plain, 2), "round_images_per_second": [round(v, 2) for v in
                                                                                         plain_rates],
                       "memory": max(plain_memory, key=lambda m: m.peak_mib).as_dict()},
        "medvp_engine": {"images_per_second": round(engine, 2),
                         "round_images_per_second": [round(v, 2) for v in engine_rates],
                         "memory": max(engine_memory, key=lambda m: m.peak_mib).as_dict()},
        "engine_to_plain_ratio": round(engine / plain, 4),
    }
