"""The bundle's train.yaml, evaluate.yaml and inference.yaml run under MONAI's own runner (``monai.bundle run``,
``ConfigWorkflow``), and train.yaml is the run's training: it repeats the run's first epoch.

One tiny run (128 training items, a small SimpleCNN, 1 epoch) is trained by medvp and exported; each test works on a
copy of its bundle (training writes ``models/model.pt``).
"""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from pipeline.bundle import export_bundle
from pipeline.bundle.training import read_splits
from pipeline.cli import main as medvp
from pipeline.engine.rundir import RunDir

pytestmark = pytest.mark.slow

SIZES = {"train": 128, "val": 64, "test": 64}


@pytest.fixture(scope="module")
def tiny_data(demo_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    with np.load(demo_data) as archive:
        np.savez(path, **{f"{split}_{kind}": archive[f"{split}_{kind}"][:size] for split, size in SIZES.items()
                          for kind in ("images", "labels")})
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny_data, repo_root, tmp_path_factory):
    import logging

    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level  # medvp's main() sets up logging
    root = tmp_path_factory.mktemp("tiny_runs")
    arguments = ["--quiet", "train", str(repo_root / "configs" / "pneumoniamnist_demo.yaml"),
                 "--set", "training.max_epochs=1", "--set", f"output.root={root}", "--set", f"data.path={tiny_data}",
                 "--set", "evaluation.splits=[test]", "--set", "evaluation.bootstrap_samples=10",
                 "--set", "model.options.channels=[8,8,16,16]", "--set", "data.batch_size=32"]
    assert medvp(arguments) == 0
    root_logger.handlers[:], root_logger.level = handlers, level
    return root / "pneumoniamnist_demo"


@pytest.fixture(scope="module")
def tiny_bundle(tiny_run, tmp_path_factory):
    return export_bundle(tiny_run, tmp_path_factory.mktemp("tiny_bundles") / "bundle", modality="X-ray")


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path, monkeypatch):
    """A copy of the tiny bundle; what a workflow run in this process changes globally is put back afterwards:
    ``sys.path`` (the bundle root), the imported ``scripts`` package, torch's deterministic-algorithms switch."""
    import sys

    monkeypatch.setattr(sys, "path", sys.path[:])
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield shutil.copytree(tiny_bundle, tmp_path / "bundle")
    torch.use_deterministic_algorithms(deterministic)
    for name in [name for name in sys.modules if name == "scripts" or name.startswith("scripts.")]:
        del sys.modules[name]


def _workflow(bundle, workflow_type, configs=("train.yaml",), **overrides) -> ConfigWorkflow:
    files = [str(bundle / "configs" / name) for name in configs]
    return ConfigWorkflow(config_file=files if len(files) > 1 else files[0], workflow_type=workflow_type,
                          meta_file=str(bundle / "configs" / "metadata.json"), bundle_root=str(bundle), **overrides)


def test_train_yaml_repeats_the_runs_first_epoch(bundle_copy, tiny_run, tiny_data, restore_logging):
    """Same data, seed and settings: medvp and MONAI's runner give the same first epoch on CPU.

    Tolerance 1e-6 (absolute) on the epoch's mean training loss and validation AUC; the same CPU kernels run in the
    same order on the same batches, and the values came out bit-for-bit equal when this was written.
    """
    workflow = _workflow(bundle_copy, "train", dataset_dir=str(tiny_data), num_epochs=1)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    bundle_metrics = workflow.trainer.state.metrics
    run_metrics = json.loads((tiny_run / "metrics.json").read_text())[0]
    assert bundle_metrics["train_loss"] == pytest.approx(run_metrics["train_loss"], abs=1e-6)
    assert bundle_metrics["train_variance"] == pytest.approx(run_metrics["train_variance"], abs=1e-9)
    assert run_metrics["train_variance"] > 0  # the penalty was on in both
    assert workflow.evaluator.state.metrics["val_auc"] == pytest.approx(run_metrics["val_auc"], abs=1e-6)
    # the key-metric checkpoint replaced the bundle's weights with weights equal to the run's best checkpoint
    trained = torch.load(bundle_copy / "models" / "model.pt", weights_only=True)
    best = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.allclose(trained[name], best[name], atol=1e-6) for name in best)


def test_check_properties_of_train_and_inference(bundle_copy, tiny_data):
    train = _workflow(bundle_copy, "train", dataset_dir=str(tiny_data))
    train.initialize()
    assert train.check_properties() == []
    infer = _workflow(bundle_copy, "infer", configs=("inference.yaml",))
    infer.initialize()
    assert infer.check_properties() == []
    evaluate = _workflow(bundle_copy, "train", configs=("train.yaml", "evaluate.yaml"), dataset_dir=str(tiny_data))
    evaluate.initialize()
    assert evaluate.check_properties() == []


def test_monai_bundle_run_trains_with_overrides(bundle_copy, tiny_data, run_module, tmp_path):
    """``--optimizer#lr`` and ``--variance_weight 0`` (plain cross-entropy) reach the components."""
    meta = ["--meta_file", bundle_copy / "configs" / "metadata.json", "--bundle_root", bundle_copy]
    before = (bundle_copy / "models" / "model.pt").read_bytes()
    result = run_module("monai.bundle", "run", "--config_file", bundle_copy / "configs" / "train.yaml", *meta,
                        "--dataset_dir", tiny_data, "--num_epochs", "1", "--optimizer#lr", "0.0005",
                        "--variance_weight", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train_variance: 0.0000" in result.stdout + result.stderr
    state = torch.load(next((bundle_copy / "runs").glob("checkpoint_epoch=1.pt")), weights_only=True)
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == 0.0005
    assert (bundle_copy / "models" / "model.pt").read_bytes() != before
    assert list((bundle_copy / "runs").glob("events.out.tfevents.*"))


def test_evaluate_yaml_gives_the_runs_test_auc(bundle_copy, tiny_run, tiny_data, restore_logging):
    """train.yaml + evaluate.yaml (as ``monai.bundle run`` merges them): the bundle's weights on the test split give
    the run's test AUC; MONAI's MetricsSaver writes them."""
    workflow = _workflow(bundle_copy, "train", configs=("train.yaml", "evaluate.yaml"), dataset_dir=str(tiny_data))
    workflow.initialize()
    workflow.run()
    report = json.loads((tiny_run / "metrics_test.json").read_text())
    assert workflow.evaluator.state.metrics["val_auc"] == pytest.approx(report["metrics"]["auc"]["value"], abs=1e-6)
    assert len(workflow.evaluator.data_loader.dataset) == SIZES["test"]
    with open(bundle_copy / "eval" / "metrics.csv") as handle:
        saved = {row[0]: float(row[1]) for row in csv.reader(handle)}
    assert saved["val_auc"] == pytest.approx(report["metrics"]["auc"]["value"], abs=1e-6)


def test_a_bare_inference_run_predicts_the_shipped_samples(tiny_bundle, run_module, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    result = run_module("monai.bundle", "run", "--config_file", bundle / "configs" / "inference.yaml",
                        "--meta_file", bundle / "configs" / "metadata.json", "--bundle_root", bundle, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(bundle / "eval" / "predictions.csv") as handle:
        rows = list(csv.reader(handle))
    assert sorted(row[0].rsplit("/", 1)[-1] for row in rows) == [f"test_00{i}.png" for i in range(4)]
    assert all(abs(float(row[1]) + float(row[2]) - 1) < 1e-5 for row in rows)


def test_inference_without_images_stops_with_one_line(bundle_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    workflow = _workflow(bundle_copy, "infer", configs=("inference.yaml",), dataset_dir=str(tmp_path / "empty"))
    with pytest.raises(SystemExit) as stop:
        workflow.initialize()
    message = str(stop.value.code)
    assert message.startswith("inference: no .png/.jpg/.jpeg file under dataset_dir") and "\n" not in message


def test_training_data_that_is_not_shipped_stops_with_one_line(tiny_bundle, tmp_path):
    import yaml

    data = yaml.safe_load((tiny_bundle / "configs" / "train.yaml").read_text())["data"]
    with pytest.raises(SystemExit, match=r"^medvp bundle: error: dataset_dir is not set: .*--dataset_dir"):
        read_splits(data, None)
    with pytest.raises(SystemExit, match=r"dataset_dir = .*missing.npz: no such file or folder"):
        read_splits(data, str(tmp_path / "missing.npz"))
    (tmp_path / "notes.npz").write_text("not an archive")
    with pytest.raises(SystemExit) as stop:
        read_splits(data, str(tmp_path / "notes.npz"))
    assert "notes.npz" in str(stop.value.code) and "\n" not in str(stop.value.code)


def test_a_shipped_demo_file_is_the_default_training_data(tiny_bundle, bundle):
    """The demo bundle (trained on medvp's packaged file) trains bare; a run on other data names none."""
    import yaml

    assert yaml.safe_load((bundle / "configs" / "train.yaml").read_text())["dataset_dir"] == \
        "medvp:pneumoniamnist.npz"
    assert yaml.safe_load((tiny_bundle / "configs" / "train.yaml").read_text())["dataset_dir"] is None
    data = yaml.safe_load((bundle / "configs" / "train.yaml").read_text())["data"]
    splits = read_splits(data, "medvp:pneumoniamnist.npz")
    assert {split: len(items) for split, items in splits.items()} == {"train": 4708, "val": 524, "test": 624}


def test_multi_gpu_train_overrides_train_yaml_for_torchrun(tiny_bundle):
    """What multi_gpu_train.yaml changes once merged over train.yaml (a 2-process Gloo run of it is in the report:
    too slow for CI). Handlers that write are off on ranks other than 0; ignite's process group is made on every
    rank before any handler (a CheckpointSaver built on rank 0 alone would otherwise wait for the others forever)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(tiny_bundle / "configs" / name) for name in ("train.yaml", "multi_gpu_train.yaml")])
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["train#dataloader#sampler"] == "@train_sampler" and parser["train#dataloader#shuffle"] is False
    assert parser["validate#dataloader#sampler"] == "@val_sampler"
    assert parser["feature_tap#network"] == "$@network.module"
    assert parser["rank"] == "$int(os.environ['RANK'])"
    writers = [handler for section in ("train#handlers", "validate#handlers") for handler in parser[section]
               if isinstance(handler, dict) and handler["_target_"] in ("StatsHandler", "TensorBoardStatsHandler",
                                                                       "CheckpointSaver")]
    assert len(writers) == 6 and all(handler["_disabled_"] == "@is_not_rank0" for handler in writers)
    initialize = parser["initialize"]
    assert initialize.index("$idist.sync()") < initialize.index("$@network")
    assert "$dist.is_initialized() and dist.destroy_process_group()" in parser["finalize"]


def test_the_inference_glob_covers_the_file_kinds_the_run_read(tmp_path):
    """A DICOM run's bundle reads .dcm files (a series folder counts as DICOM), and ships no DICOM sample."""
    from pipeline.bundle.samples import inference_suffixes, run_file_kinds, write_samples
    from pipeline.config import parse_config

    (tmp_path / "splits.csv").write_text("item,label,split,patient\nnormal/a.dcm,normal,train,x\n"
                                         "pneumonia/series_7,pneumonia,train,y\nnormal/b.dcm,normal,test,z\n")
    (tmp_path / "data" / "normal").mkdir(parents=True)
    (tmp_path / "data" / "normal" / "b.dcm").write_bytes(b"\0" * 132)
    config = parse_config({"data": {"source": "folder", "path": str(tmp_path / "data")}}, "test", tmp_path)
    run = RunDir(tmp_path)
    kinds = run_file_kinds(run, config)
    assert kinds == [".dcm"]
    assert inference_suffixes(2, kinds) == [".png", ".jpg", ".jpeg", ".dcm"]
    assert inference_suffixes(3, [".nii.gz", ".dcm"]) == [".nii", ".nii.gz", ".dcm"]
    assert write_samples(run, config, tmp_path / "bundle") == []
    assert not list((tmp_path / "bundle" / "sample_data").iterdir())


def test_a_dicom_runs_modality_comes_from_its_header(tmp_path):
    from pydicom.data import get_testdata_file

    from pipeline.bundle.samples import dicom_modality
    from pipeline.config import parse_config

    (tmp_path / "data" / "ct").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "data" / "ct" / "a.dcm")
    (tmp_path / "splits.csv").write_text("item,label,split,patient\nct/a.dcm,ct,train,x\n")
    config = parse_config({"data": {"source": "folder", "path": str(tmp_path / "data")}}, "test", tmp_path)
    assert dicom_modality(RunDir(tmp_path), config) == "CT"
    (tmp_path / "splits.csv").write_text("item,label,split,patient\nct/gone.dcm,ct,train,x\n")
    assert dicom_modality(RunDir(tmp_path), config) is None


def test_a_run_selected_on_validation_loss_exports_a_bundle_that_keeps_the_lowest_loss(
        tiny_data, repo_root, tmp_path, monkeypatch, restore_logging):
    """training.selection_metric=val_loss reaches the run and its bundle: the best checkpoint is the epoch of the
    lowest validation loss, in the run's summary and in train.yaml's evaluator (key metric, best epoch, the
    key-metric checkpoint's weights) with early stopping on. At lr 0.02 the two disagree: the highest validation
    AUC comes at another epoch, so an AUC-selected checkpoint fails the test. train.yaml repeats every epoch of the
    run, not only the first (the loader is iterated one epoch at a time, as the run does)."""
    import sys

    from ignite.engine import Events

    monkeypatch.setattr(sys, "path", sys.path[:])
    arguments = ["--quiet", "train", str(repo_root / "configs" / "pneumoniamnist_demo.yaml"),
                 "--set", "training.max_epochs=3", "--set", f"output.root={tmp_path}",
                 "--set", f"data.path={tiny_data}",
                 "--set", "evaluation.splits=[]", "--set", "model.options.channels=[8,8,16,16]",
                 "--set", "data.batch_size=32", "--set", "training.selection_metric=val_loss",
                 "--set", "training.early_stopping_patience=2", "--set", "optimizer.lr=0.02"]
    assert medvp(arguments) == 0
    run = tmp_path / "pneumoniamnist_demo"
    history = json.loads((run / "metrics.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    lowest = min(history, key=lambda record: record["val_loss"])
    assert lowest != max(history, key=lambda record: record["val_auc"])
    assert (summary["selection_metric"], summary["best_epoch"]) == ("val_loss", lowest["epoch"])
    assert summary["best_val_loss"] == lowest["val_loss"] and summary["best_val_auc"] == lowest["val_auc"]

    workflow = _workflow(export_bundle(run, tmp_path / "bundle", modality="X-ray"), "train",
                         dataset_dir=str(tiny_data), num_epochs=3)
    workflow.initialize()
    epochs = []
    workflow.evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: epochs.append(
        {"epoch": engine.state.epoch, **engine.state.metrics}))
    workflow.run()
    workflow.finalize()
    assert workflow.evaluator.state.key_metric_name == "val_loss"
    assert [record["val_loss"] for record in epochs] == pytest.approx([r["val_loss"] for r in history], abs=1e-6)
    assert (workflow.evaluator.state.best_metric_epoch, workflow.evaluator.state.best_metric) == (
        lowest["epoch"], pytest.approx(lowest["val_loss"], abs=1e-6))
    trained = torch.load(tmp_path / "bundle" / "models" / "model.pt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.allclose(trained[name], best[name], atol=1e-6) for name in best)
