"""Penalty overhead: training images/s of MONAI ResNet-18 2D with cross-entropy alone and with the variance
penalty (last conv, ratio 0.2; every conv, ratio 0.2), in a plain PyTorch loop, as ratios within one run.

    python benchmarks/perf/penalty_overhead.py                 # CPU: 64 px, batch 32; CUDA: 224 px, batch 128, bf16
    python benchmarks/perf/penalty_overhead.py --device cpu --steps 5 --rounds 3

Writes benchmarks/results/perf/penalty_overhead_<device>.json (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import pick_device, write_record

from pipeline.benchmark.throughput import penalty_overhead


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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    precision = args.precision if args.precision != "auto" else ("bfloat16" if gpu else "float32")
    measured = penalty_overhead(
        device, image_size=args.image_size or (224 if gpu else 64), batch_size=args.batch_size or (128 if gpu else 32),
        steps=args.steps or (50 if gpu else 4), warmup=args.warmup if args.warmup is not None else (10 if gpu else 3),
        rounds=args.rounds, dtype=torch.bfloat16 if precision == "bfloat16" else None)
    path = write_record("penalty_overhead", device, measured, args.out)
    for case in measured["cases"]:
        print(f"{case['name']:<24} {case['images_per_second']:>10.1f} img/s  ratio {case['ratio_to_cross_entropy']:.3f}"
              f"  peak {case['memory']['peak_mib']:.0f} MiB")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
