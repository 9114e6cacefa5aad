"""The ``medvp`` command line: train, evaluate, validate, export-bundle, predict."""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from multiprocessing.dummy import DummyProcess
from pathlib import Path

from pipeline.errors import ConfigError, MedvpError

__all__ = ["main", "build_parser"]

logger = logging.getLogger("medvp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medvp", description="Train and evaluate medical image classifiers "
                                     "with the variance-penalized loss (MONAI).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("--show-headers", action="store_true",
                        help="let messages quote DICOM header fields (SeriesDescription; they can identify a patient)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser("train", help="train from a YAML config, then evaluate the configured splits")
    train.add_argument("config", type=Path)
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value (repeatable); the value is read as YAML")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue the unfinished run in RUN_DIR from its last checkpoint (the config must match); "
                            "without it, an unfinished run of the same output.name with the same config is resumed")
    train.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train with N processes on this machine (DistributedDataParallel, one per GPU on CUDA), "
                            "started by torchrun's launcher; the same as "
                            "`torchrun --standalone --nproc_per_node=N -m pipeline train CONFIG`")

    evaluate = verbs.add_parser("evaluate", help="evaluate a run directory on a split")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default=None,
                          help="default: the run's evaluation.checkpoint (best)")

    preview = verbs.add_parser("preview", help="write a PNG of a few items before and after preprocessing")
    preview.add_argument("config", type=Path)
    preview.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    preview.add_argument("--out", type=Path, default=Path("preview.png"))
    preview.add_argument("--count", type=int, default=6)

    demo_dicom = verbs.add_parser("make-demo-dicom", help="write a DICOM folder dataset from the embedded demo")
    demo_dicom.add_argument("out", type=Path)
    demo_dicom.add_argument("--per-class", type=int, default=150)

    benchmark = verbs.add_parser("benchmark", help="run a benchmark spec (finished runs are skipped)")
    benchmark.add_argument("spec", type=Path)
    benchmark.add_argument("--shard", default="1/1", metavar="K/N",
                           help="run every N-th (arm, seed) pair from the K-th: N processes split one benchmark")
    benchmark.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                           help="start no new run after this long; rerun the command to continue")
    benchmark.add_argument("--arms", default=None, metavar="A,B", help="run only these arms this time")
    benchmark.add_argument("--n", dest="sizes", default=None, metavar="N,M",
                           help="run only these training subset sizes (from the spec's n_train) this time")
    benchmark.add_argument("--seeds", default=None, metavar="S,T", help="run only these seeds this time")
    benchmark.add_argument("--allow-dirty", action="store_true",
                           help="record results although pipeline/ has uncommitted changes (marked dirty; default: "
                           "refuse)")

    tune = verbs.add_parser("tune", help="search an arm's hyperparameters on the validation split (Optuna)")
    tune.add_argument("config", type=Path, nargs="?", help="a config; or give --spec instead")
    tune.add_argument("--spec", type=Path, default=None,
                      help="a benchmark spec: tune at its scale (its base config and overrides)")
    tune.add_argument("--trials", type=int, default=20, help="completed trials to reach (pruned ones do not count)")
    tune.add_argument("--arm", default="vp_tuned", help="vp_tuned, ce_dropout, ce_label_smoothing, ce_weight_decay, "
                      "original_setup_vp (the write-up's 12-point grid)")
    tune.add_argument("--n", default="full", metavar="N", help="tune on a stratified training subset of N items")
    tune.add_argument("--warmup", type=int, default=5, metavar="EPOCHS", help="epochs before a trial can be pruned")
    tune.add_argument("--allow-dirty", action="store_true",
                      help="tune although pipeline/ has uncommitted changes (recorded as dirty; default: refuse)")
    tune.add_argument("--out", type=Path, default=Path("runs/tuning"))
    tune.add_argument("--storage", default=None, help="an Optuna database URL (default: SQLite in --out; "
                      "optuna-dashboard opens either)")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")

    report = verbs.add_parser("report", help="regenerate the benchmark document from raw results")
    report.add_argument("results", type=Path, nargs="+", help="results folders (each with spec.json)")
    report.add_argument("--out", type=Path, default=None,
                        help="the markdown document to write, figures in a folder beside it named after it "
                        "(default: report.md next to the results folders; the committed one is docs/benchmarks.md)")

    validate = verbs.add_parser("validate", help="check a YAML config without training")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")

    export = verbs.add_parser("export-bundle", help="write a run as a MONAI bundle and verify it with MONAI's tools")
    export.add_argument("run_dir", type=Path)
    export.add_argument("out_dir", type=Path)
    export.add_argument("--checkpoint", choices=("best", "last"), default=None,
                        help="default: the run's evaluation.checkpoint (best)")
    export.add_argument("--version", dest="bundle_version", default="0.1.0", help="the bundle's version")
    export.add_argument("--authors", default="medvp", help="metadata authors (and copyright holder)")
    export.add_argument("--modality", default="unspecified", help="input modality, e.g. X-ray, CT, US")

    predict = verbs.add_parser("predict", help="classify image files, folders or a .npz split with a run or bundle")
    predict.add_argument("model", type=Path, help="a medvp run directory or a MONAI bundle")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="PNG/JPEG, NIfTI or DICOM files, folders of them, or FILE.npz[:split] (default test)")
    predict.add_argument("--out", type=Path, default=Path("predictions.csv"), help="the CSV to write")
    predict.add_argument("--saliency", type=Path, default=None, metavar="OUT_DIR",
                         help="also write a Grad-CAM PNG per item into OUT_DIR")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--checkpoint", choices=("best", "last"), default=None, help="for a run directory")
    predict.add_argument("--trust-bundle", action="store_true",
                         help="run a bundle medvp did not write (its configs can execute arbitrary code)")
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    if os.environ.get("RANK", "0") != "0" and not debug:  # a distributed run's other processes: rank 0 reports
        level = logging.WARNING
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


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``train`` command line each process of ``--nproc`` runs (the same, without ``--nproc``)."""
    argv = [flag for flag, on in (("--debug", args.debug), ("--quiet", args.quiet)) if on]
    argv += ["train", str(args.config)]
    for override in args.overrides:
        argv += ["--set", override]
    if args.resume is not None:
        argv += ["--resume", str(args.resume)]
    return argv


def _launch(args: argparse.Namespace) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from pipeline.config import load_config
    from pipeline.engine.distributed import launch, launched_by_torchrun

    if args.nproc < 1:
        raise MedvpError(f"--nproc = {args.nproc}: expected a positive number of processes")
    if launched_by_torchrun():
        raise MedvpError("--nproc inside a torchrun process: use either torchrun or --nproc, not both")
    load_config(args.config, args.overrides)  # a bad configuration fails here once, not in every process
    try:
        launch(args.nproc, _worker_argv(args))
    except ChildFailedError as error:
        failures = ", ".join(f"rank {rank} (exit code {failure.exitcode})" for rank, failure in error.failures.items())
        print(f"medvp: error: distributed training failed: {failures}; the processes' errors are above",
              file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.engine import check_resumable, evaluate_run, find_run_dir, train
    from pipeline.engine.distributed import distributed_session

    if args.nproc is not None:
        return _launch(args)
    config = load_config(args.config, args.overrides)
    with distributed_session(config) as context:
        run_dir, resume = None, False
        if context.is_main:  # one process picks the run directory (find_run_dir creates it) and tells the others
            if args.resume is not None:
                check_resumable(config, args.resume)
                run_dir, resume = args.resume, True
            else:
                run_dir, resume = find_run_dir(config)
            print(f"run directory: {run_dir}{' (resuming from its last checkpoint)' if resume else ''}")
        run_dir, resume = context.broadcast((run_dir, resume))
        result = train(config, run_dir, resume=resume)
    if not context.is_main:
        return 0
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


def _check_positive(value: int, flag: str) -> None:
    if value < 1:
        raise MedvpError(f"{flag} = {value}: expected a positive number")


def _check_destination(path: Path, flag: str, kind: str = "file") -> None:
    """Refuse up front an output ``path`` (a ``kind``: file or folder) that cannot be made: below a regular file,
    or an existing folder where a file goes (or the other way round)."""
    if path.exists():
        if kind == "file" and path.is_dir():
            raise MedvpError(f"{flag} {path}: a folder; expected a file name")
        if kind == "folder" and not path.is_dir():
            raise MedvpError(f"{flag} {path}: an existing file; expected a folder")
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MedvpError(f"{flag} {path}: {parent} is a file, not a folder")
            return


def _expected_error(error: BaseException) -> MedvpError | None:
    """The user-facing error behind ``error``: MONAI's engines and transforms wrap what they call raised."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MedvpError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _preview(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.engine.preview import write_preview

    _check_positive(args.count, "--count")
    _check_destination(args.out, "--out")
    config = load_config(args.config, args.overrides)
    print(f"written: {write_preview(config, args.out, args.count)}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from pipeline.experiments import load_spec, run_benchmark

    spec = load_spec(args.spec)
    try:
        shard = tuple(int(part) for part in args.shard.split("/"))
        if len(shard) != 2:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--shard {args.shard!r}: expected K/N, e.g. 2/4") from None
    progress = run_benchmark(spec, shard=shard, time_limit_minutes=args.time_limit, allow_dirty=args.allow_dirty,
                             arms=args.arms.split(",") if args.arms else None,
                             sizes=args.sizes.split(",") if args.sizes else None,
                             seeds=[int(seed) for seed in args.seeds.split(",")] if args.seeds else None)
    print(f"{progress.done}/{progress.total} runs finished; results in {spec.results}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from pipeline.experiments.tuning import tune

    _check_positive(args.trials, "--trials")
    _check_destination(args.out, "--out", kind="folder")
    config, overrides, name = args.config, list(args.overrides), None
    if (config is None) == (args.spec is None):
        raise ConfigError("medvp tune: give either CONFIG or --spec SPEC")
    n_train = "full" if args.n == "full" else int(args.n)
    if args.spec is not None:
        from pipeline.experiments import load_spec

        spec = load_spec(args.spec)
        epochs = spec.max_epochs_by_n.get(str(n_train))
        config, name = spec.base_config, f"{spec.name}-{args.arm}-n{n_train}"
        overrides = [*spec.overrides, *([f"training.max_epochs={epochs}"] if epochs else []), *overrides]
    study = tune(config, args.arm, args.trials, args.out, overrides, args.storage, study_name=name, n_train=n_train,
                 warmup_epochs=args.warmup, allow_dirty=args.allow_dirty)
    print(f"best validation AUC {study.best_value:.4f} with {study.best_params}; "
          f"written: {args.out / f'best_{args.arm}.json'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.experiments.report import write_report

    out = args.out or args.results[0].parent / "report.md"
    _check_destination(out, "--out")
    written = write_report(args.results, out)
    print("written:\n" + "\n".join(f"  {path}" for path in written))
    return 0


def _make_demo_dicom(args: argparse.Namespace) -> int:
    from pipeline.data.demo_dicom import write_demo_dicom
    from pipeline.demo_data import packaged_file

    _check_positive(args.per_class, "--per-class")
    _check_destination(args.out, "make-demo-dicom OUT", kind="folder")
    demo = packaged_file("pneumoniamnist.npz")
    counts = write_demo_dicom(demo, args.out, per_class=args.per_class)
    print(f"written: {args.out} ({', '.join(f'{name} {count}' for name, count in counts.items())} DICOM files)")
    return 0


def _export_bundle(args: argparse.Namespace) -> int:
    from pipeline.bundle import export_bundle, verify_bundle

    _check_destination(args.out_dir, "export-bundle OUT_DIR", kind="folder")
    bundle = export_bundle(args.run_dir, args.out_dir, version=args.bundle_version, authors=args.authors,
                           modality=args.modality, checkpoint=args.checkpoint, quiet=not args.debug)
    verify_bundle(bundle, quiet=not args.debug)
    print(f"bundle written: {bundle} (metadata verified against MONAI's schema; network inputs/outputs verified)")
    print(f"run it: python -m monai.bundle run --config_file {bundle}/configs/inference.yaml "
          f"--meta_file {bundle}/configs/metadata.json --bundle_root {bundle} [--dataset_dir IMAGES_DIR]")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import torch

    from pipeline.inference import collect_inputs, load_model, predict, usable_items, write_predictions, write_saliency

    _check_positive(args.batch_size, "--batch-size")
    _check_destination(args.out, "--out")
    if args.saliency is not None:
        _check_destination(args.saliency, "--saliency", kind="folder")
    model = load_model(args.model, trust_bundle=args.trust_bundle, checkpoint=args.checkpoint)
    items = usable_items(model, collect_inputs(args.inputs, numpy_order=model.numpy_order))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictions = predict(model, items, batch_size=args.batch_size, progress=sys.stderr.isatty(), device=device)
    write_predictions(args.out, predictions)
    print(f"predicted {len(items)} item(s) with {args.model}: {args.out}")
    if args.saliency is not None:
        written = write_saliency(model, predictions, args.saliency, batch_size=args.batch_size)
        print(f"saliency maps: {len(written)} PNG(s) in {args.saliency}")
    return 0


def _shut_down_workers(timeout: float = 60.0) -> None:
    """Let the threads and processes that read data for a failed run end before the interpreter does.

    MONAI's ``CacheDataset`` fills its cache on a ``multiprocessing.pool.ThreadPool``: when an item fails, the
    exception reaches here while the pool's (daemon) worker threads still finish the items they hold. A daemon thread
    inside torch's C++ code when the interpreter finalizes is ended by ``pthread_exit`` through C++ frames, which
    aborts the process ("terminate called without an active exception", exit 134) after the error line. Loader worker
    processes of iterators the failed engine dropped are shut down once those iterators are collected.
    """
    gc.collect()
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if isinstance(thread, DummyProcess) and thread.is_alive():  # the pool's workers; the handlers end with them
            thread.join(max(0.0, deadline - time.monotonic()))
    for process in multiprocessing.active_children():
        process.join(max(0.0, deadline - time.monotonic()))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    if args.show_headers and hasattr(args, "overrides"):
        args.overrides.append("data.dicom.show_headers=true")
    verbs = {"train": _train, "evaluate": _evaluate, "validate": _validate, "preview": _preview,
             "make-demo-dicom": _make_demo_dicom, "benchmark": _benchmark, "report": _report,
             "tune": _tune, "export-bundle": _export_bundle, "predict": _predict}
    try:
        return verbs[args.verb](args)
    except Exception as error:
        expected = _expected_error(error)
        if expected is None or args.debug:
            raise
        for line in str(expected).splitlines():
            print(f"medvp: error: {line}", file=sys.stderr)
        _shut_down_workers()
        return 2
    except KeyboardInterrupt:
        print("medvp: interrupted; checkpoints up to the last finished epoch are kept", file=sys.stderr)
        _shut_down_workers()
        return 130


if __name__ == "__main__":
    sys.exit(main())
