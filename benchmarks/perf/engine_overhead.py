"""Engine overhead: images/s of `medvp train` (MONAI SupervisedTrainer path, pipeline.engine.train) against a plain
PyTorch loop with the same model (ResNet-18, small-input stem, 28 px), batch size and precision on the embedded
PneumoniaMNIST, training plus validation, in alternating rounds within one run.

    python benchmarks/perf/engine_overhead.py                  # CUDA: every image, 3 epochs, batch 256, data.cache=gpu
    python benchmarks/perf/engine_overhead.py --set data.cache=memory --out ...   # CUDA, the CPU-cached loader
    python benchmarks/perf/engine_overhead.py --device cpu     # CPU: 512 train / 128 val images, 1 epoch, batch 64

Writes benchmarks/results/perf/engine_overhead_<device>.json (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import REPO, pick_device, write_record
from throughput import engine_overhead


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pneumoniamnist_demo.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 on CUDA, 1 on CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 64 on CPU")
    parser.add_argument("--train-items", type=int, default=None, help="default: all on CUDA, 512 on CPU")
    parser.add_argument("--val-items", type=int, default=None, help="default: all on CUDA, 128 on CPU")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    measured = engine_overhead(
        args.config, device, epochs=args.epochs or (3 if gpu else 1),
        batch_size=args.batch_size or (256 if gpu else 64), rounds=args.rounds,
        train_items=args.train_items or (None if gpu else 512),
        val_items=args.val_items or (None if gpu else 128), overrides=tuple(args.overrides))
    path = write_record("engine_overhead", device, measured, args.out)
    print(f"plain loop   {measured['plain_loop']['images_per_second']:>10.1f} img/s")
    print(f"medvp engine {measured['medvp_engine']['images_per_second']:>10.1f} img/s")
    print(f"engine / plain {measured['engine_to_plain_ratio']:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
