"""The bundle's ``docs/README.md`` (model card) and ``LICENSE``."""

from __future__ import annotations

from typing import Any

__all__ = ["bundle_readme", "bundle_license", "preprocessing_description", "data_description"]

_SOURCE_KINDS = {"folder": "a folder tree, one subfolder per class", "csv": "a CSV of image paths and labels",
                 "datalist": "a MONAI datalist (JSON)"}


def data_description(data: dict[str, Any], file_kinds: list[str], split_made_here: bool, shipped: bool) -> str:
    """Where the run's data came from: source kind, file kinds, how it was split."""
    name = data["path"].rsplit("/", 1)[-1] or data["path"]
    if data["source"] == "medmnist":
        where = " (shipped with medvp as demo data)" if shipped else ""
        return f"{name}: a MedMNIST v2 file{where}, its official train/val/test splits"
    kinds = "/".join(kind.lstrip(".").upper() for kind in file_kinds) or "image"
    split = "split here by patient (grouped, stratified)" if split_made_here else "splits given by the data"
    return f"{name}: {_SOURCE_KINDS[data['source']]}; {kinds} files; {split}"


def preprocessing_description(settings: dict[str, Any], spatial_dims: int) -> str:
    """The deterministic preprocessing, in training's order (``pipeline.transforms.preprocessing_steps``)."""
    steps = []
    if settings.get("orientation") and spatial_dims == 3:
        steps.append(f"reoriented to {settings['orientation']}")
    if settings.get("spacing"):
        steps.append(f"resampled to {settings['spacing']} mm spacing (bilinear)")
    if settings.get("resize_mode") == "crop_foreground":
        steps.append("cropped to the foreground (intensities > 0)")
    preset = settings["preset"]
    if preset == "range":
        steps.append(f"intensity preset range: {settings['source_range']} mapped to {settings['target_range']} "
                     "(clipped)")
    elif preset == "ct_window":
        steps.append(f"intensity preset ct_window: level/width {settings['window']} HU mapped to "
                     f"{settings['target_range']}")
    elif preset in ("mr_percentile", "radiograph"):
        percentiles = settings["percentiles"] if preset == "mr_percentile" else [0.5, 99.5]
        steps.append(f"intensity preset {preset}: percentiles {percentiles} mapped to {settings['target_range']}")
    else:
        steps.append(f"intensity preset {preset}")
    if settings.get("spatial_size"):
        steps.append(f"resized keeping the aspect ratio ({settings['interpolation']} interpolation), then padded to "
                     f"{settings['spatial_size']}")
    else:
        steps.append("no resizing (inputs must have the training size)")
    return "; ".join(steps) + "; float32"


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items())
    return f"| metric | value |\n|---|---|\n{rows}"


def bundle_readme(name: str, metadata: dict[str, Any], run_config: dict[str, Any], summary: dict[str, Any],
                  inference_suffixes: list[str], has_samples: bool, dataset_dir: str | None) -> str:
    """A model card: intended use, data, preprocessing, metrics, limitations, method and hyperparameters, usage."""
    loss, optimizer, training = run_config["loss"], run_config["optimizer"], run_config["training"]
    preprocessing, model = run_config["preprocessing"], run_config["model"]
    data_format = metadata["network_data_format"]["inputs"]["image"]
    classes = ", ".join(f"{index} = {label}" for index, label in
                        metadata["network_data_format"]["post_processed_outputs"]["pred"]["channel_def"].items())
    suffixes = ", ".join(inference_suffixes)
    resize = bool(preprocessing["spatial_size"])
    dataset_hint = (f"`{dataset_dir}` (the demo file shipped with medvp) by default" if dataset_dir else
                    f"the run's `{run_config['data']['source']}` dataset, which is not shipped: pass `--dataset_dir`")
    sample = ("`sample_data/` holds a few inputs from the run's test split, so the command below runs as is."
              if has_samples else "No sample input ships with this bundle (the run read DICOM files, whose headers "
              "carry patient data): pass `--dataset_dir` with your images.")
    return f"""# {name}

{metadata['description']}

## Intended use

{metadata['intended_use']}

## Data

Trained on {metadata['data_source']}: {summary['task']} task, classes {classes}; {summary['spatial_dims']}D
images of {data_format['num_channels']} channel(s), {" x ".join(map(str, data_format['spatial_shape']))} px after
preprocessing. Modality: {data_format['modality']}. The training data is not part of this bundle.

## Preprocessing

Exactly the deterministic part of training, in this order: {metadata['image_classes']}.
The inference config reads {suffixes} files under `dataset_dir`.

## Performance

Point estimates of the run that produced these weights (`test_*`: the held-out split, evaluated once
with the checkpoint of the best validation AUC; medvp's `metrics_<split>.json` hold 95% bootstrap intervals):

{_metrics_table(metadata['eval_metrics'])}

## Method and hyperparameters

Network `{model['name']}` (options {model['options'] or '{}'}, small_input {model['small_input']}, dropout
{model['dropout']}), trained from scratch with the variance-penalized loss:

    total = lambda_ * CE(logits, target) + variance_weight * mean over tapped layers of the batch variance
            of a random feature_sampling_ratio share of that layer's features

variance_weight {loss['variance_weight']}, feature_sampling_ratio {loss['feature_sampling_ratio']}, lambda_
{loss['lambda_']}, taps `{loss['taps']}` ({summary.get('taps')}). Optimizer {optimizer['name']} (lr
{optimizer['lr']}, weight decay {optimizer['weight_decay']}), batch {run_config['data']['batch_size']},
{summary['epochs_run']} epoch(s) run (best epoch {summary['best_epoch']}), scheduler
{training['scheduler']['name']}, seed {training['seed']}. Hardware: {summary['hardware']}.
`configs/train.yaml` repeats this training (see Use).

## Use

Inference needs MONAI alone ({', '.join(metadata['required_packages_version'])}; a medvp network's code ships in
`scripts/`). {sample} From the bundle folder:

```bash
python -m monai.bundle run --config_file configs/inference.yaml --meta_file configs/metadata.json \\
    --bundle_root . [--dataset_dir /path/to/images] [--output_dir ./eval]
```

writes `eval/predictions.csv` (file name, then one probability per class in the order above).
`models/model.ts` is the TorchScript export of the same weights (`python -m monai.bundle ckpt_export network_def
--filepath models/model.ts --ckpt_file models/model.pt --meta_file configs/metadata.json --config_file
configs/inference.yaml`, run from the bundle folder, rebuilds it).

Training and evaluation need medvp as well (`pip install medvp=={metadata['training_packages_version'].get('medvp')}`:
its data reader, `FeatureTap` and `VariancePenalizedLoss`); `dataset_dir` is {dataset_hint}:

```bash
python -m monai.bundle run --config_file configs/train.yaml --meta_file configs/metadata.json --bundle_root . \\
    [--dataset_dir DATA] [--num_epochs 5] [--optimizer#lr 0.0005] [--variance_weight 0]
python -m monai.bundle run --config_file "['configs/train.yaml','configs/evaluate.yaml']" \\
    --meta_file configs/metadata.json --bundle_root . [--eval_split test]     # eval/metrics.csv
torchrun --nproc_per_node=2 -m monai.bundle run \\
    --config_file "['configs/train.yaml','configs/multi_gpu_train.yaml']" --meta_file configs/metadata.json \\
    --bundle_root .
```

`train.yaml` is the run's training (same data reader, preprocessing, network, loss, optimizer, schedule and seed):
with its defaults it repeats the run. It writes the best validation-AUC weights to `models/model.pt` (replacing
these) and TensorBoard logs and per-epoch checkpoints to `runs/`. `--variance_weight 0` trains with plain
cross-entropy. medvp users: `medvp predict THIS_BUNDLE images/ --out predictions.csv [--saliency maps/]`.

## Limitations

- Research use only: not a medical device, not validated for clinical decisions.
- Trained on one public dataset at low resolution; performance on other scanners, populations or sizes is unknown.
- Images must match the training input ({data_format['num_channels']} channel(s),
  {" x ".join(map(str, data_format['spatial_shape']))}{' after resizing' if resize else ''}).
- The variance penalty's benefit over plain cross-entropy is an open question (see medvp's docs/method.md).

## License

Code and weights: Apache License 2.0 (`LICENSE`). The training data keeps its own licence ({metadata['copyright']}).
"""


def bundle_license(copyright_line: str) -> str:
    return f"""{copyright_line}

Licensed under the Apache License, Version 2.0 (the "License"); you may not use the files of this bundle
except in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License is
distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and limitations under the License.

The weights were trained on data that is licensed separately (for MedMNIST v2: CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/); cite its authors when you use them.
"""
