"""The ``medvp`` command line: train, evaluate, validate."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import MedvpError

__all__ = ["main", "build_parser"]

logger = logging.getLogger("medvp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medvp", description="Train and evaluate medical image classifiers "
                                     "with the variance-penalized loss (MONAI).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser("train", help="train from a YAML config, then evaluate the configured splits")
    train.add_argument("config", type=Path)
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value (repeatable); the value is read as YAML")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue the unfinished run in RUN_DIR from its last checkpoint (the config must match); "
                            "without it, an unfinished run of the same output.name with the same config is resumed")

    evaluate = verbs.add_parser("evaluate", help="evaluate a run directory on a split")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default=None,
                          help="default: the run's evaluation.checkpoint (best)")

    validate = verbs.add_parser("validate", help="check a YAML config without training")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S",
                        force=True)
    if not debug:
        for noisy in ("ignite", "monai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # ignite logs an engine's exception before re-raising it; the error is reported once, below.
        logging.getLogger("ignite.engine").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def _summary_line(split: str, report: dict) -> str:
    parts = []
    for name in ("accuracy", "auc", "balanced_accuracy"):
        metric = report["metrics"][name]
        if metric["value"] is None:
            continue
        interval = f" [{metric['low']:.4f}, {metric['high']:.4f}]" if metric["low"] is not None else ""
        parts.append(f"{name} {metric['value']:.4f}{interval}")
    return f"{split} ({report['items']} items, {report['checkpoint']} checkpoint): " + ", ".join(parts)


def _train(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.engine import check_resumable, evaluate_run, find_run_dir, train

    config = load_config(args.config, args.overrides)
    if args.resume is not None:
        check_resumable(config, args.resume)
        run_dir, resume = args.resume, True
    else:
        run_dir, resume = find_run_dir(config)
    print(f"run directory: {run_dir}{' (resuming from its last checkpoint)' if resume else ''}")
    result = train(config, run_dir, resume=resume)
    print(f"trained {result.epochs_run} epochs in {result.seconds:.1f} s; best validation AUC "
          f"{result.best_val_auc:.4f} at epoch {result.best_epoch}")
    for split in config.evaluation.splits:
        print(_summary_line(split, evaluate_run(run_dir, split)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.engine import evaluate_run

    report = evaluate_run(args.run_dir, args.split, args.checkpoint)
    print(_summary_line(args.split, report))
    print(f"written: {args.run_dir / f'metrics_{args.split}.json'}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    config = load_config(args.config, args.overrides)
    if not config.data.path.is_file():
        raise MedvpError(f"{args.config}: data.path = {str(config.data.path)!r}: file not found")
    print(f"{args.config}: valid ({config.model.name}, variance_weight={config.loss.variance_weight}, "
          f"{config.training.max_epochs} epochs)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    verbs = {"train": _train, "evaluate": _evaluate, "validate": _validate}
    try:
        return verbs[args.verb](args)
    except MedvpError as error:
        if args.debug:
            raise
        for line in str(error).splitlines():
            print(f"medvp: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medvp: interrupted; checkpoints up to the last finished epoch are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
