"""The bundle's ``docs/README.md`` (model card) and ``LICENSE``."""

from __future__ import annotations

from typing import Any

__all__ = ["bundle_readme", "bundle_license"]


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items())
    return f"| metric | value |\n|---|---|\n{rows}"


def bundle_readme(name: str, metadata: dict[str, Any], run_config: dict[str, Any], summary: dict[str, Any]) -> str:
    """A model card: intended use, data, preprocessing, metrics, limitations, method and hyperparameters, usage."""
    loss, optimizer, training = run_config["loss"], run_config["optimizer"], run_config["training"]
    preprocessing, model = run_config["preprocessing"], run_config["model"]
    data_format = metadata["network_data_format"]["inputs"]["image"]
    classes = ", ".join(f"{index} = {label}" for index, label in
                        metadata["network_data_format"]["post_processed_outputs"]["pred"]["channel_def"].items())
    needs_medvp = "medvp" in metadata["required_packages_version"]
    reader = "PNG/JPEG files (MONAI `PILReader`, numpy row/column order)" if len(data_format["spatial_shape"]) == 2 \
        else "NIfTI volumes (MONAI `NibabelReader`, stored index order)"
    resize = f", then resized to {preprocessing['spatial_size']} (nearest)" if preprocessing["spatial_size"] else ""
    return f"""# {name}

{metadata['description']}

## Intended use

{metadata['intended_use']}

## Data

Trained on `{metadata['data_source']}`: {summary['task']} task, classes {classes}; {summary['spatial_dims']}D
images of {data_format['num_channels']} channel(s), {" x ".join(map(str, data_format['spatial_shape']))} px.
The training data is not part of this bundle. Modality: {data_format['modality']}.

## Preprocessing

Exactly the deterministic part of training: intensities mapped from {preprocessing['source_range']} to
{preprocessing['target_range']} (clipped, float32){resize}. The inference config reads {reader}.

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
`configs/train.yaml` retrains it through medvp.

## Use

```bash
python -m monai.bundle run --config_file configs/inference.yaml --meta_file configs/metadata.json \\
    --bundle_root . --dataset_dir /path/to/images --output_dir ./eval
```

writes `eval/predictions.csv` (file name, then one probability per class in the order above).
Needs MONAI with {', '.join(metadata['required_packages_version'])}{' (the network is medvp`s SimpleCNN: '
'`pip install medvp`)' if needs_medvp else ''}. `models/model.ts` is the TorchScript export of the same weights.
medvp users: `medvp predict THIS_BUNDLE images/ --out predictions.csv [--saliency maps/]`.

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
