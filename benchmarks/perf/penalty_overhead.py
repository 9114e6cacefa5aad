"""Penalty overhead: training images/s of MONAI ResNet-18 2D with cross-entropy alone and with the variance
penalty (last conv, ratio 0.2; every conv, ratio 0.2), in a plain PyTorch loop, as ratios within one run.

The library's formulation (a circular block of columns read through views) is timed next to the formulation it
replaced (a random permutation of all columns drawn on the CPU, the indices copied to the device, a gather, a
float32 variance), which exists only here, as ``*_permutation`` cases (``--no-permutation`` leaves them out).

    python benchmarks/perf/penalty_overhead.py --device cuda   # GPU: 224 px, batch 128, bf16 autocast, channels_last
    python benchmarks/perf/penalty_overhead.py --device cpu --steps 5 --rounds 3   # CPU: 64 px, batch 32, float32

Writes benchmarks/results/perf/penalty_overhead_<device>.json (or --out).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
from _common import pick_device, write_record
from throughput import PENALTY_CASES, PenaltyCase, penalty_overhead

from pipeline.losses import FeatureTap, layer_variance, variance_penalty
from pipeline.networks import NetworkSpec, build_network


def permutation_gather(feature: torch.Tensor, feature_sampling_ratio: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """The penalty's former per-layer formulation, kept for comparison: flatten, ``randperm`` of all ``D`` columns
    on the CPU, the first ``k`` indices copied to the device, ``index_select``, float32 variance."""
    flat = feature.reshape(feature.shape[0], -1)
    num_sampled = max(1, math.floor(feature_sampling_ratio * flat.shape[1]))
    if num_sampled < flat.shape[1]:
        columns = torch.randperm(flat.shape[1], generator=generator)[:num_sampled]
        flat = flat.index_select(1, columns.to(flat.device))
    return flat.float().var(dim=0, unbiased=False).mean()


def penalty_only(device: torch.device, image_size: int, batch_size: int, rounds: int, repeats: int,
                 dtype: torch.dtype | None, channels_last: bool, ratio: float = 0.2) -> dict:
    """Seconds per call of the penalty alone (forward and backward to the features) on ResNet-18's every-conv
    activations, the library's formulation against ``permutation_gather``, in interleaved rounds.

    The activations are taken once (one forward pass under autocast) and detached, so only the penalty is timed:
    on a shared machine this ratio is much steadier than the end-to-end throughput of the training loop."""
    torch.manual_seed(0)
    network = build_network(NetworkSpec("resnet18", 2, 1, 2)).to(device)
    images = torch.randn(batch_size, 1, image_size, image_size, device=device)
    if channels_last:
        network, images = network.to(memory_format=torch.channels_last), images.contiguous(
            memory_format=torch.channels_last)
    tap = FeatureTap(network, "all_conv")
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        network(images)
    features = [feature.detach().requires_grad_(True) for feature in tap.features]
    tap.remove()
    formulations = {"library": layer_variance, "permutation_gather": permutation_gather}
    generator = torch.Generator().manual_seed(0)

    def call(estimator) -> None:
        variance_penalty(features, ratio, generator, estimator).backward()
        for feature in features:
            feature.grad = None

    seconds: dict[str, list[float]] = {name: [] for name in formulations}
    for estimator in formulations.values():
        call(estimator)  # warm-up
    for _ in range(rounds):
        for name, estimator in formulations.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            for _ in range(repeats):
                call(estimator)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name].append((time.perf_counter() - started) / repeats)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {"settings": {"memory_format": "channels_last" if channels_last else "contiguous", "taps": "all_conv",
                         "tapped_layers": len(features), "feature_sampling_ratio": ratio,
                         "image_size": image_size, "batch_size": batch_size, "rounds": rounds, "repeats": repeats,
                         "feature_dtype": str(features[0].dtype),
                         "timed": "variance_penalty(features).backward() on detached activations"},
            "milliseconds_per_call": {name: round(1e3 * value, 3) for name, value in medians.items()},
            "round_milliseconds_per_call": {name: [round(1e3 * v, 3) for v in values]
                                            for name, values in seconds.items()},
            "permutation_to_library_time_ratio": round(medians["permutation_gather"] / medians["library"], 3)}


PERMUTATION_CASES = tuple(PenaltyCase(f"{case.name}_permutation", case.taps, case.feature_sampling_ratio,
                                      permutation_gather) for case in PENALTY_CASES if case.taps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: 224 on CUDA, 64 on CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case and round (CUDA 50, CPU 4)")
    parser.add_argument("--warmup", type=int, default=None, 
                        help="untimed steps per case (CUDA 10, CPU 3: oneDNN and AdamW set up)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bfloat16 autocast on CUDA, float32 on CPU")
    parser.add_argument("--no-permutation", action="store_true",
                        help="leave out the former formulation's cases (*_permutation)")
    parser.add_argument("--penalty-only-repeats", type=int, default=None,
                        help="calls per round of the penalty-alone timing (CUDA 20, CPU 5); 0 skips it")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    precision = args.precision if args.precision != "auto" else ("bfloat16" if gpu else "float32")
    measured = penalty_overhead(
        device, image_size=args.image_size or (224 if gpu else 64), batch_size=args.batch_size or (128 if gpu else 32),
        steps=args.steps or (50 if gpu else 4), warmup=args.warmup if args.warmup is not None else (10 if gpu else 3),
        rounds=args.rounds, dtype=torch.bfloat16 if precision == "bfloat16" else None,
        cases=PENALTY_CASES + (() if args.no_permutation else PERMUTATION_CASES))
    repeats = args.penalty_only_repeats if args.penalty_only_repeats is not None else (20 if gpu else 5)
    if repeats:  # the training layout (CUDA: channels_last); on the CPU both layouts
        measured["penalty_only"] = [penalty_only(
            device, measured["settings"]["image_size"], measured["settings"]["batch_size"], rounds=max(args.rounds, 5),
            repeats=repeats, dtype=torch.bfloat16 if precision == "bfloat16" else None, channels_last=channels_last)
            for channels_last in ((True,) if gpu else (False, True))]
    path = write_record("penalty_overhead", device, measured, args.out)
    for case in measured["cases"]:
        print(f"{case['name']:<36} {case['images_per_second']:>10.1f} img/s  ratio {case['ratio_to_cross_entropy']:.3f}"
              f"  peak {case['memory']['peak_mib']:.0f} MiB")
    for only in measured.get("penalty_only", []):
        print(f"penalty alone, every conv, {only['settings']['memory_format']}: {only['milliseconds_per_call']} ms "
              f"per call; permutation / library {only['permutation_to_library_time_ratio']:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
