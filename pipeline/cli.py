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
from collections.abc import Sequence
from multiprocessing.dummy import DummyProcess
from pathlib import Path

from pipeline.errors import ConfigError, MedvpError, StorageError, os_reason, storage_cause
from pipeline.kinds import SelectionMetric

__all__ = ["main", "build_parser"]

logger = logging.getLogger("medvp")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's default shown, unless it has none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = (None, False, [], argparse.SUPPRESS)
        if "%(default)" not in text and action.option_strings and action.default not in hidden:
            text += " (default: %(default)s)"
        return text


def _flags() -> argparse.ArgumentParser:
    """--debug and --quiet, accepted before the verb and after it (``medvp train CONFIG --quiet``)."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("output")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging, library warnings, and tracebacks for errors")
    group.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="log warnings and errors only (results are still printed)")
    group.add_argument("--show-headers", action="store_true", default=argparse.SUPPRESS,
                       help="let messages quote DICOM header fields (SeriesDescription; they can identify a patient)")
    return flags


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"medvp {of('medvp')} (MONAI {of('monai')}, PyTorch {of('torch')}, ignite {of('pytorch-ignite')})"


def _verb(verbs, name: str, help_text: str, examples: list[str], flags: argparse.ArgumentParser):
    epilog = "example" + "s" * (len(examples) > 1) + ":\n" + "\n".join(f"  {line}" for line in examples)
    return verbs.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                            epilog=epilog, parents=[flags], formatter_class=_HelpFormatter)


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, read as YAML (repeatable), e.g. --set training.max_epochs=5")


def build_parser() -> argparse.ArgumentParser:
    flags = _flags()
    parser = argparse.ArgumentParser(
        prog="medvp", formatter_class=_HelpFormatter,
        description="Train and evaluate medical image classifiers with the variance-penalized loss (MONAI).",
        epilog="examples:\n  medvp train configs/pneumoniamnist_demo.yaml\n  medvp evaluate "
               "runs/pneumoniamnist_demo --split val\n  medvp VERB --help    (options and an example for each verb)")
    parser.add_argument("--version", action="version", version=_version(), help="print the versions and exit")
    parser.add_argument("--debug", action="store_true", help="debug logging, library warnings, and tracebacks")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only (results still printed)")
    parser.add_argument("--show-headers", action="store_true",
                        help="let messages quote DICOM header fields (SeriesDescription; they can identify a patient)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = _verb(verbs, "train", "train from a YAML config, then evaluate the configured splits",
                  ["medvp train configs/pneumoniamnist_demo.yaml --set training.max_epochs=5",
                   "medvp train configs/pneumoniamnist_demo.yaml --resume runs/pneumoniamnist_demo"], flags)
    train.add_argument("config", type=Path, help="a YAML config (see configs/)")
    _overrides(train)
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue the unfinished run in RUN_DIR from its last checkpoint (the config must match); "
                            "without it, an unfinished run of the same output.name with the same config is resumed")
    train.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train with N processes on this machine (DistributedDataParallel, one per GPU on CUDA), "
                            "started by torchrun's launcher; the same as "
                            "`torchrun --standalone --nproc_per_node=N -m pipeline train CONFIG` (default: 1 process)")

    evaluate = _verb(verbs, "evaluate", "evaluate a run directory on a split: metrics with intervals, figures",
                     ["medvp evaluate runs/pneumoniamnist_demo --split val --checkpoint last"], flags)
    evaluate.add_argument("run_dir", type=Path, help="a run directory written by medvp train")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"), help="the split to evaluate")
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default=None,
                          help="best validation AUC or the last epoch (default: the run's evaluation.checkpoint)")

    preview = _verb(verbs, "preview", "write a PNG of a few items as read, preprocessed and augmented",
                    ["medvp preview configs/pneumoniamnist_demo.yaml --out preview.png --count 4"], flags)
    preview.add_argument("config", type=Path, help="a YAML config")
    _overrides(preview)
    preview.add_argument("--out", type=Path, default=Path("preview.png"), help="the PNG to write")
    preview.add_argument("--count", type=int, default=6, help="how many training items to show")

    demo_dicom = _verb(verbs, "make-demo-dicom", "write a DICOM folder dataset from the embedded demo",
                       ["medvp make-demo-dicom demo_dicom && medvp train configs/dicom_folder_demo.yaml"], flags)
    demo_dicom.add_argument("out", type=Path, help="the folder to write (one subfolder per class)")
    demo_dicom.add_argument("--per-class", type=int, default=150, help="DICOM files written per class")

    benchmark = _verb(verbs, "benchmark", "run a benchmark spec's arms and seeds (finished runs are skipped)",
                      ["medvp benchmark benchmarks/specs/pneumoniamnist.yaml --shard 1/2 --time-limit 60"], flags)
    benchmark.add_argument("spec", type=Path, help="a benchmark spec (benchmarks/specs/*.yaml)")
    benchmark.add_argument("--shard", default="1/1", metavar="K/N",
                           help="run every N-th (arm, seed) pair from the K-th: N processes split one benchmark")
    benchmark.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                           help="start no new run after this long; rerun the command to continue (default: no limit)")
    benchmark.add_argument("--arms", default=None, metavar="A,B", help="run only these arms this time (default: all)")
    benchmark.add_argument("--n", dest="sizes", default=None, metavar="N,M",
                           help="run only these training subset sizes (from the spec's n_train) this time")
    benchmark.add_argument("--seeds", default=None, metavar="S,T", help="run only these seeds this time (default: all)")
    benchmark.add_argument("--record-spec", action="store_true",
                           help="only write the results folder's spec.json (after editing the spec's description or "
                           "conclusion); run nothing")
    benchmark.add_argument("--allow-dirty", action="store_true",
                           help="record results although pipeline/ has uncommitted changes (marked dirty; default: "
                           "refuse)")
    benchmark.add_argument("--keep-checkpoints", action="store_true",
                           help="keep each finished run's checkpoints (default: delete them once its result is "
                           "written; curves and logs stay)")

    tune = _verb(verbs, "tune", "search an arm's hyperparameters on the validation split (Optuna)",
                 ["medvp tune --spec benchmarks/specs/pneumoniamnist.yaml --arm vp_tuned --trials 6"], flags)
    tune.add_argument("config", type=Path, nargs="?", help="a config; or give --spec instead")
    tune.add_argument("--spec", type=Path, default=None,
                      help="a benchmark spec: tune at its scale (its base config and overrides)")
    tune.add_argument("--trials", type=int, default=20, help="completed trials to reach (pruned ones do not count)")
    tune.add_argument("--arm", default="vp_tuned", help="vp_tuned, ce_dropout, ce_label_smoothing, ce_weight_decay, "
                      "original_setup_vp (the write-up's 12-point grid)")
    tune.add_argument("--n", default="full", metavar="N", help="tune on a stratified training subset of N items")
    tune.add_argument("--warmup", type=int, default=5, metavar="EPOCHS", help="epochs before a trial can be pruned")
    tune.add_argument("--worker", type=int, default=0, metavar="K",
                      help="this process's number among several sharing one study (--storage or --out): each "
                           "draws from its own sampler seed")
    tune.add_argument("--seeds", default=None, metavar="S,T",
                      help="score each trial by its mean validation AUC over these seeds (each trains on its own "
                      "subset; default: the spec's tuning.seeds, else 0)")
    tune.add_argument("--allow-dirty", action="store_true",
                      help="tune although pipeline/ has uncommitted changes (recorded as dirty; default: refuse)")
    tune.add_argument("--keep-checkpoints", action="store_true",
                      help="keep each trial's checkpoints (default: delete them once the trial is scored or pruned)")
    tune.add_argument("--out", type=Path, default=Path("runs/tuning"),
                      help="folder for the trials' runs, the SQLite study and best_<arm>.json")
    tune.add_argument("--storage", default=None, help="an Optuna database URL (default: SQLite in --out; "
                      "optuna-dashboard opens either)")
    _overrides(tune)

    report = _verb(verbs, "report", "regenerate the benchmark document from raw results",
                   ["medvp report benchmarks/results/pneumoniamnist --out docs/benchmarks.md"], flags)
    report.add_argument("results", type=Path, nargs="+", help="results folders (each with spec.json)")
    report.add_argument("--out", type=Path, default=None,
                        help="the markdown document to write, figures in a folder beside it named after it "
                        "(default: report.md next to the results folders; the committed one is docs/benchmarks.md)")

    validate = _verb(verbs, "validate", "check a YAML config (and that its data file exists) without training",
                     ["medvp validate configs/pneumoniamnist.yaml --set loss.variance_weight=0"], flags)
    validate.add_argument("config", type=Path, help="a YAML config")
    _overrides(validate)

    export = _verb(verbs, "export-bundle", "write a run as a MONAI bundle and verify it with MONAI's tools",
                   ["medvp export-bundle runs/pneumoniamnist_demo bundles/pneumonia --modality X-ray"], flags)
    export.add_argument("run_dir", type=Path, help="a finished run directory")
    export.add_argument("out_dir", type=Path, help="the bundle folder to write")
    export.add_argument("--checkpoint", choices=("best", "last"), default=None,
                        help="the weights to export (default: the run's evaluation.checkpoint)")
    export.add_argument("--version", dest="bundle_version", default="0.1.0", help="the bundle's version")
    export.add_argument("--authors", default="medvp", help="metadata authors (and copyright holder)")
    export.add_argument("--modality", default="unspecified", help="input modality, e.g. X-ray, CT, US")

    predict = _verb(verbs, "predict", "classify image files, folders or a .npz split with a run or bundle",
                    ["medvp predict runs/pneumoniamnist_demo medvp:pneumoniamnist.npz:test --out predictions.csv",
                     "medvp predict bundles/pneumonia scans/ --saliency saliency/"], flags)
    predict.add_argument("model", type=Path, help="a medvp run directory or a MONAI bundle")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="PNG/JPEG, NIfTI or DICOM files, folders of them, or FILE.npz[:split] (default test)")
    predict.add_argument("--out", type=Path, default=Path("predictions.csv"), help="the CSV to write")
    predict.add_argument("--saliency", type=Path, default=None, metavar="OUT_DIR",
                         help="also write a Grad-CAM PNG per item into OUT_DIR")
    predict.add_argument("--show-names", action="store_true",
                         help="put each item's file name in its saliency figure's title (off: names can identify "
                              "patients; the PNG's file name still follows the item)")
    predict.add_argument("--batch-size", type=int, default=64, help="items per inference batch")
    predict.add_argument("--checkpoint", choices=("best", "last"), default=None,
                         help="for a run directory: the weights to use (default: the run's evaluation.checkpoint)")
    predict.add_argument("--trust-bundle", action="store_true",
                         help="run a bundle medvp did not write (its configs can execute arbitrary code)")
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    """One format for medvp, MONAI, ignite and Optuna (pipeline.logs); MONAI is imported here, once, so that the
    loggers it sets up at import time are handed to that format before any verb runs."""
    from pipeline.logs import adopt_library_loggers, configure_logging

    configure_logging("debug" if debug else "quiet" if quiet else "info", rank=int(os.environ.get("RANK", "0")))
    import monai  # noqa: F401  (every verb imports it; its import configures loggers)

    adopt_library_loggers(debug=debug)


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
    from pipeline.engine import check_resumable, find_run_dir, train
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
            logger.info("run directory: %s%s", run_dir, " (resuming from its last checkpoint)" if resume else "")
        run_dir, resume = context.broadcast((run_dir, resume))
        train_started = time.perf_counter()
        result = train(config, run_dir, resume=resume)
    if not context.is_main:
        return 0
    chosen = f"validation AUC {result.best_val_auc:.4f}"
    if result.selection_metric is SelectionMetric.VAL_LOSS:
        chosen = f"validation loss {result.best_val_loss:.4f} (AUC {result.best_val_auc:.4f})"
    print(f"\ntrained {result.epochs_run} epoch{'s' * (result.epochs_run != 1)} in {result.seconds:.1f} s; best "
          f"{chosen} at epoch {result.best_epoch}")
    phases = {"start-up": train_started - args.started, "data": result.timings.get("data", 0.0),
              "training": (result.seconds, {"validation": result.timings.get("validation", 0.0)})}
    for split in config.evaluation.splits:
        report = _print_evaluation(run_dir, split, None)
        phases[f"{split} evaluation"] = (sum(report["seconds"].values()), report["seconds"])
    _print_end(run_dir, args, phases)
    return 0


def _print_evaluation(run_dir: Path, split: str, checkpoint: str | None) -> dict:
    from pipeline.engine import evaluate_run
    from pipeline.evaluation.summary import metrics_table

    report = evaluate_run(run_dir, split, checkpoint)
    print("\n" + "\n".join(metrics_table(report)))
    return report


def _print_end(folder: Path, args: argparse.Namespace, phases: dict) -> None:
    """The files this command wrote into ``folder``, then where its time went."""
    import torch

    from pipeline.evaluation.summary import files_block, files_written, time_split

    print("\n" + "\n".join(files_block(folder, files_written(folder, args.started_wall))))
    print(time_split(phases, time.perf_counter() - args.started, torch.get_num_threads()))


def _evaluate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    report = _print_evaluation(args.run_dir, args.split, args.checkpoint)
    _print_end(args.run_dir, args, {"start-up": started - args.started,
                                    "evaluation": (sum(report["seconds"].values()), report["seconds"])})
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.data.sources import data_path_problem

    config = load_config(args.config, args.overrides)
    problem = data_path_problem(config.data.source, config.data.path)
    if problem is not None:
        raise MedvpError(f"{args.config}: data.path = {str(config.data.path)!r}: {problem}")
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
    """The user-facing error behind ``error``: MONAI's engines and transforms wrap what they call raised. A full disk
    or a forbidden folder met anywhere else (a write without its own handling) is one line naming the file too."""
    seen, outer = set(), error
    while error is not None and id(error) not in seen:
        if isinstance(error, MedvpError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    cause = storage_cause(outer)
    if cause is not None:
        where = cause.filename if cause.filename is not None else "a file"
        return StorageError(f"{where}: cannot write ({os_reason(cause)})")
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
    from pipeline.experiments.runner import record_spec

    spec = load_spec(args.spec)
    if args.record_spec:
        print(f"{record_spec(spec)}: spec recorded; nothing run")
        return 0
    try:
        shard = tuple(int(part) for part in args.shard.split("/"))
        if len(shard) != 2:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--shard {args.shard!r}: expected K/N, e.g. 2/4") from None
    progress = run_benchmark(spec, shard=shard, time_limit_minutes=args.time_limit, allow_dirty=args.allow_dirty,
                             arms=args.arms.split(",") if args.arms else None,
                             sizes=args.sizes.split(",") if args.sizes else None,
                             seeds=_seed_list(args.seeds) if args.seeds else None,
                             keep_checkpoints=args.keep_checkpoints)
    print(f"{progress.done}/{progress.total} runs finished; results in {spec.results}")
    return 0


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` as integers, or a one-line error that names the flag."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected whole numbers separated by commas, e.g. 0,1,2") from None


def _tune(args: argparse.Namespace) -> int:
    from pipeline.experiments.tuning import tune

    _check_positive(args.trials, "--trials")
    if args.worker < 0:
        raise ConfigError(f"--worker {args.worker}: expected 0 or a positive number")
    _check_destination(args.out, "--out", kind="folder")
    config, overrides, name = args.config, list(args.overrides), None
    if (config is None) == (args.spec is None):
        raise ConfigError("medvp tune: give either CONFIG or --spec SPEC")
    n_train = "full" if args.n == "full" else int(args.n)
    seeds = [0]
    if args.spec is not None:
        from pipeline.experiments import load_spec

        spec = load_spec(args.spec)
        epochs = spec.max_epochs_by_n.get(str(n_train))
        config, name = spec.base_config, f"{spec.name}-{args.arm}-n{n_train}"
        overrides = [*spec.overrides, *([f"training.max_epochs={epochs}"] if epochs else []), *overrides]
        seeds = spec.tuning.get("seeds", seeds)
    seeds = _seed_list(args.seeds) if args.seeds else seeds
    study = tune(config, args.arm, args.trials, args.out, overrides, args.storage, study_name=name, n_train=n_train,
                 warmup_epochs=args.warmup, seeds=tuple(seeds), allow_dirty=args.allow_dirty,
                 worker=args.worker, keep_checkpoints=args.keep_checkpoints)
    objective = "validation AUC" if study.direction.name == "MAXIMIZE" else "validation loss"
    print(f"best {objective} {study.best_value:.4f} with {study.best_params}; "
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
    items = usable_items(model, collect_inputs(args.inputs, model.spatial_dims, model.dicom))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictions = predict(model, items, batch_size=args.batch_size, progress=sys.stderr.isatty(), device=device)
    write_predictions(args.out, predictions)
    print(f"predicted {len(items)} item(s) with {args.model}: {args.out}")
    if args.saliency is not None:
        written = write_saliency(model, predictions, args.saliency, batch_size=args.batch_size,
                                 show_names=args.show_names)
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
    started, started_wall = time.perf_counter(), time.time()
    args = build_parser().parse_args(argv)
    args.started, args.started_wall = started, started_wall  # for the time split and the files written
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
