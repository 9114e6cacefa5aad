"""The exported bundle, checked with MONAI's own bundle tools, and run against ``medvp predict``."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from monai.bundle import ConfigParser, verify_metadata

import pipeline
from pipeline.bundle import configs_digest, is_medvp_bundle, schema_path
from pipeline.bundle.configs import network_def
from pipeline.bundle.metadata import SCHEMA_MD5
from pipeline.cli import main as medvp
from pipeline.networks import NETWORKS, NetworkSpec, build_network

pytestmark = pytest.mark.slow

MANDATORY = ("schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
             "required_packages_version", "task", "description", "authors", "copyright", "intended_use",
             "network_data_format")


def read_probabilities(path, skip_header: bool) -> dict[str, np.ndarray]:
    """file name -> probabilities; MONAI's ClassificationSaver writes no header, medvp's CSV does."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1 if skip_header else 0:]
    offset = 2 if skip_header else 1  # medvp: item, predicted, probabilities...
    return {row[0]: np.array([float(value) for value in row[offset:]]) for row in rows}


def test_bundle_has_the_model_zoo_layout_and_mandatory_metadata(bundle, small_run):
    for name in ("configs/metadata.json", "configs/inference.yaml", "configs/train.yaml", "configs/evaluate.yaml",
                 "configs/multi_gpu_train.yaml", "configs/logging.conf", "models/model.pt", "models/model.ts",
                 "scripts/simple_cnn.py", "docs/README.md", "LICENSE"):
        assert (bundle / name).is_file(), name
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert all(metadata.get(key) for key in MANDATORY)
    inputs = metadata["network_data_format"]["inputs"]["image"]
    assert inputs["num_channels"] == 1 and inputs["spatial_shape"] == [28, 28] and inputs["value_range"] == [-1, 1]
    assert inputs["modality"] == "X-ray" and inputs["is_patch_data"] is False
    post = metadata["network_data_format"]["post_processed_outputs"]["pred"]
    assert post["channel_def"] == {"0": "normal", "1": "pneumonia"}
    # SimpleCNN's code ships in scripts/: inference needs MONAI alone; training declares medvp
    assert "medvp" not in metadata["required_packages_version"]
    assert metadata["training_packages_version"] == {"medvp": pipeline.__version__}
    assert "pipeline" not in (bundle / "configs" / "inference.yaml").read_text()
    assert "pipeline" not in (bundle / "scripts" / "simple_cnn.py").read_text().split('"""', 2)[2]
    assert metadata["data_source"].startswith("pneumoniamnist.npz: a MedMNIST v2 file (shipped with medvp")
    assert "range: [0.0, 255.0] mapped to [-1.0, 1.0]" in metadata["image_classes"]
    assert sorted(path.name for path in (bundle / "sample_data").iterdir()) == [f"test_00{i}.png" for i in range(4)]
    test_report = json.loads((small_run / "metrics_test.json").read_text())
    assert metadata["eval_metrics"]["test_auc"] == pytest.approx(test_report["metrics"]["auc"]["value"], abs=1e-6)
    assert "val_auc_best_epoch" in metadata["eval_metrics"]
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    best = torch.load(small_run / "checkpoints" / "best.pt", weights_only=True)
    assert weights.keys() == best.keys() and all(torch.equal(weights[k], best[k]) for k in best)
    readme = (bundle / "docs" / "README.md").read_text()
    for section in ("## Intended use", "## Data", "## Preprocessing", "## Performance", "## Method and hyperparameters",
                    "## Limitations", "variance_weight 0.01", "configs/inference.yaml --meta_file",
                    "configs/train.yaml", "configs/evaluate.yaml", "multi_gpu_train.yaml",
                    "`medvp:pneumoniamnist.npz`"):
        assert section in readme
    # nothing from the training machine's file system: the data path is replaced by a bundle-relative one
    for path in bundle.rglob("*"):
        if path.suffix in (".json", ".yaml", ".md") or path.name == "LICENSE":
            text = path.read_text()
            assert str(small_run) not in text and "demo_data/pneumoniamnist.npz" not in text, path


def test_monai_verify_metadata_against_the_shipped_schema(bundle, run_module):
    result = run_module("monai.bundle", "verify_metadata", "--meta_file", bundle / "configs" / "metadata.json",
                        "--filepath", schema_path(), "--hash_val", SCHEMA_MD5)
    assert result.returncode == 0, result.stderr
    assert "metadata is verified with no error" in result.stderr + result.stdout
    assert "skipped downloading" in result.stderr + result.stdout


def test_verify_metadata_rejects_a_metadata_file_missing_a_mandatory_key(bundle, tmp_path):
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    del metadata["authors"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="authors"):
        verify_metadata(meta_file=str(broken), filepath=str(schema_path()), hash_val=SCHEMA_MD5)


def test_monai_verify_net_in_out(bundle, run_module):
    """Run from the bundle folder, as Model Zoo bundles with ``scripts/`` are (``network_def`` is in scripts/)."""
    result = run_module("monai.bundle", "verify_net_in_out", "network_def", "--meta_file",
                        bundle / "configs" / "metadata.json", "--config_file", bundle / "configs" / "inference.yaml",
                        "--device", "cpu", cwd=bundle)
    assert result.returncode == 0, result.stderr
    assert "data shape of network is verified with no error" in result.stderr + result.stdout


def test_monai_ckpt_export_gives_torchscript_equal_to_the_weights(bundle, run_module, tmp_path, demo_data,
                                                                  monkeypatch):
    target = tmp_path / "again.ts"
    result = run_module("monai.bundle", "ckpt_export", "network_def", "--filepath", target, "--ckpt_file",
                        bundle / "models" / "model.pt", "--meta_file", bundle / "configs" / "metadata.json",
                        "--config_file", bundle / "configs" / "inference.yaml", "--bundle_root", bundle, cwd=bundle)
    assert result.returncode == 0, result.stderr
    monkeypatch.syspath_prepend(str(bundle))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    network.eval()
    with np.load(demo_data) as archive:
        images = torch.as_tensor(archive["test_images"][:8], dtype=torch.float32)[:, None] / 127.5 - 1
    with torch.no_grad():
        expected = network(images)
        for path in (bundle / "models" / "model.ts", target):
            assert torch.allclose(torch.jit.load(str(path))(images), expected, atol=1e-6), path


def test_bundle_run_matches_medvp_predict_on_the_same_files(bundle, png_folder, run_module, repo_root, tmp_path):
    out_dir = tmp_path / "eval"
    result = run_module("monai.bundle", "run", "--config_file", bundle / "configs" / "inference.yaml",
                        "--meta_file", bundle / "configs" / "metadata.json", "--bundle_root", bundle,
                        "--dataset_dir", png_folder, "--output_dir", out_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from_bundle = read_probabilities(out_dir / "predictions.csv", skip_header=False)
    assert medvp(["predict", str(bundle), str(png_folder), "--out", str(tmp_path / "medvp.csv")]) == 0
    from_medvp = read_probabilities(tmp_path / "medvp.csv", skip_header=True)
    assert len(from_bundle) == 12 and from_bundle.keys() == from_medvp.keys()
    differences = [np.abs(from_bundle[name] - from_medvp[name]).max() for name in from_bundle]
    print(f"largest probability difference, bundle run vs medvp predict: {max(differences):.3g}")
    assert max(differences) <= 1e-5
    assert all(abs(row.sum() - 1) < 1e-5 for row in from_bundle.values())


def test_predict_refuses_a_changed_bundle_without_trust(bundle, png_folder, tmp_path, capsys):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(bundle, copy)
    assert is_medvp_bundle(copy, json.loads((copy / "configs" / "metadata.json").read_text()))
    with open(copy / "configs" / "inference.yaml", "a") as handle:
        handle.write("# edited by hand\n")
    assert configs_digest(copy / "configs") != configs_digest(bundle / "configs")
    assert medvp(["predict", str(copy), str(png_folder), "--out", str(tmp_path / "p.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"medvp: error: {copy}: this bundle was not written by medvp") and "--trust-bundle" in error
    assert "\n" not in error and not (tmp_path / "p.csv").exists()
    assert medvp(["predict", str(copy), str(png_folder), "--out", str(tmp_path / "p.csv"), "--trust-bundle"]) == 0
    assert medvp(["predict", str(bundle), str(png_folder), "--out", str(tmp_path / "q.csv")]) == 0
    trusted = read_probabilities(tmp_path / "p.csv", skip_header=True)
    native = read_probabilities(tmp_path / "q.csv", skip_header=True)
    assert all(np.abs(trusted[name] - native[name]).max() <= 1e-6 for name in native)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_def_builds_the_same_network_as_medvp(name):
    spec = NetworkSpec(name=name, spatial_dims=2, in_channels=1, num_outputs=3, small_input=name.startswith("resnet"))
    definition = network_def(spec)
    assert definition["_target_"].startswith("pipeline.networks." if name == "simplecnn" else "monai.networks.nets.")
    from_config = ConfigParser({"net": definition}).get_parsed_content("net")
    built = build_network(spec)
    assert type(from_config) is type(built)
    assert {k: v.shape for k, v in from_config.state_dict().items()} == {k: v.shape for k, v in
                                                                         built.state_dict().items()}


def test_export_refuses_a_folder_that_holds_files(small_run, bundle):
    from pipeline.bundle import export_bundle
    from pipeline.errors import DataError

    with pytest.raises(DataError, match="exists and is not an empty folder"):
        export_bundle(small_run, bundle)


@pytest.fixture(scope="module")
def resnet_run(small_run, tmp_path_factory):
    """The small run's directory with its network swapped for MONAI's ResNet-18 (28-px stem, untrained weights).

    Only the export machinery is under test here, not the model's quality.
    """
    import shutil

    run = tmp_path_factory.mktemp("resnet") / "run"
    shutil.copytree(small_run, run, ignore=shutil.ignore_patterns("tensorboard", "checkpoint_epoch=*"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"].update(name="resnet18", small_input=True, options={})
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(0)
    network = build_network(NetworkSpec("resnet18", 2, 1, 1, small_input=True))
    torch.save(network.state_dict(), run / "checkpoints" / "best.pt")
    return run


def test_a_monai_network_bundle_needs_only_monai(resnet_run, png_folder, run_module, tmp_path):
    from pipeline.bundle import export_bundle, verify_bundle

    out = export_bundle(resnet_run, tmp_path / "bundle")
    verify_bundle(out)
    inference = (out / "configs" / "inference.yaml").read_text()
    assert "_target_: monai.networks.nets.resnet18" in inference and "pipeline" not in inference
    metadata = json.loads((out / "configs" / "metadata.json").read_text())
    assert "medvp" not in metadata["required_packages_version"]
    assert (out / "models" / "model.ts").stat().st_size > 1_000_000  # ResNet-18 weights, scripted
    result = run_module("monai.bundle", "run", "--config_file", out / "configs" / "inference.yaml", "--meta_file",
                        out / "configs" / "metadata.json", "--bundle_root", out, "--dataset_dir", png_folder,
                        "--output_dir", tmp_path / "eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert medvp(["predict", str(out), str(png_folder), "--out", str(tmp_path / "medvp.csv")]) == 0
    from_bundle = read_probabilities(tmp_path / "eval" / "predictions.csv", skip_header=False)
    from_medvp = read_probabilities(tmp_path / "medvp.csv", skip_header=True)
    assert from_bundle.keys() == from_medvp.keys()
    assert max(np.abs(from_bundle[name] - from_medvp[name]).max() for name in from_bundle) <= 1e-5


@pytest.mark.parametrize(("edit", "named"), [
    (lambda mark: mark.pop("network"), "medvp.network: missing or not a dict"),
    (lambda mark: mark["network"].pop("name"), "medvp.network: expected the keys"),
    (lambda mark: mark["preprocessing"].update(preset="bogus"), "medvp.preprocessing.preset"),
    (lambda mark: mark.update(class_names="normal"), "medvp.class_names: missing or not a list"),
])
def test_a_malformed_medvp_entry_is_a_one_line_error(bundle, png_folder, tmp_path, capsys, edit, named):
    """The configs digest does not cover metadata.json, so its medvp entry is checked before it is used."""
    import shutil

    copy = shutil.copytree(bundle, tmp_path / "edited")
    metadata = json.loads((copy / "configs" / "metadata.json").read_text())
    edit(metadata["medvp"])
    (copy / "configs" / "metadata.json").write_text(json.dumps(metadata))
    assert medvp(["predict", str(copy), str(png_folder), "--out", str(tmp_path / "p.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("medvp: error: ") and named in error and "\n" not in error


def test_disk_full_during_export_is_one_line_naming_the_bundle_and_leaves_the_run_alone(small_run, tmp_path,
                                                                                        monkeypatch):
    import errno

    import pipeline.bundle.export as export
    from pipeline.errors import StorageError

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = {path: path.stat().st_mtime_ns for path in small_run.rglob("*") if path.is_file()}
    monkeypatch.setattr(export.torch, "save", full_disk)
    out = tmp_path / "bundle"
    with pytest.raises(StorageError, match=f"^{out}: cannot write the bundle \\(disk full\\)$"):
        export.export_bundle(small_run, out)
    assert {path: path.stat().st_mtime_ns for path in small_run.rglob("*") if path.is_file()} == before
