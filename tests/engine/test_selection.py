"""training.selection_metric: which validation epoch keeps the best checkpoint, stops early and scores a trial."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.data import DatasetInfo
from pipeline.engine.checkpoint import BEST_CHECKPOINT
from pipeline.engine.engines import attach_best_checkpoint, build_evaluator
from pipeline.evaluation.plots import best_epoch
from pipeline.kinds import SelectionMetric, Split
from pipeline.losses import VariancePenalizedLoss

#: validation logits per epoch for labels 0, 0, 1, 1. Epoch 1 ranks the four perfectly (AUC 1) but calls them all
#: positive (high NLL); epoch 2 misranks one pair (AUC 0.75) with scores on the right side of 0.5 (lower NLL).
LABELS = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
LOGITS = {1: torch.tensor([[1.0], [2.0], [3.0], [4.0]]), 2: torch.tensor([[-3.0], [0.5], [0.4], [3.0]])}


class ScriptedNetwork(nn.Module):
    """Returns the logits scripted for the epoch it is told; its buffer records which epoch a checkpoint holds."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("epoch", torch.tensor(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return LOGITS[int(self.epoch)][: len(images)] + 0.0 * images.flatten(1)[:, :1]


@pytest.mark.parametrize(("selection", "expected"), [(SelectionMetric.VAL_AUC, 1), (SelectionMetric.VAL_LOSS, 2)])
def test_the_best_checkpoint_is_the_epoch_of_the_selection_metric(tmp_path, selection, expected):
    network = ScriptedNetwork()
    loader = [{"image": torch.zeros(4, 1, 2, 2), "label": LABELS}]
    info = DatasetInfo(task="binary", class_names=["a", "b"], in_channels=1, spatial_dims=2, spatial_shape=(2, 2))
    data = SimpleNamespace(info=info, loaders={Split.VAL: loader})
    parts = SimpleNamespace(network=network, loss=VariancePenalizedLoss(task="binary", variance_weight=0.0))
    evaluator = build_evaluator(data, parts, torch.device("cpu"), None, None, selection)
    saver = attach_best_checkpoint(evaluator, parts, tmp_path, selection)
    metrics = {}
    for epoch in (1, 2):
        network.epoch.fill_(epoch)
        evaluator.run(epoch)
        metrics[epoch] = dict(evaluator.state.metrics)
    assert metrics[1]["val_auc"] == 1.0 and metrics[2]["val_auc"] == 0.75
    assert metrics[2]["val_loss"] < metrics[1]["val_loss"]
    assert evaluator.state.best_metric_epoch == expected
    saved = torch.load(tmp_path / BEST_CHECKPOINT, weights_only=True)
    assert int(saved["epoch"]) == expected and saver.last_checkpoint is not None


def test_selection_metric_picks_the_first_best_record_and_skips_missing_values():
    records = [{"epoch": 1, "val_auc": 0.8, "val_loss": 0.5}, {"epoch": 2, "val_auc": math.nan, "val_loss": 0.3},
               {"epoch": 3, "val_auc": 0.8, "val_loss": 0.3}, {"epoch": 4}]
    assert best_epoch(records, SelectionMetric.VAL_AUC) == 1  # NaN never wins; ties keep the first
    assert best_epoch(records, SelectionMetric.VAL_LOSS) == 2
    assert best_epoch([{"epoch": 1, "val_loss": math.nan}], SelectionMetric.VAL_LOSS) is None
    assert SelectionMetric.VAL_LOSS.score(0.3) == -0.3 and SelectionMetric.VAL_AUC.score(0.3) == 0.3
