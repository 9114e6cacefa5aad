"""Task-aware views of an engine's batch output for ignite and MONAI metrics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.utils import CommonKeys as Keys

from pipeline.kinds import Task

__all__ = ["probabilities", "accuracy_output", "auc_output", "loss_output"]


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities from logits: sigmoid for binary (B, 1) and multilabel, softmax for multiclass."""
    logits = logits.float()
    return torch.softmax(logits, dim=1) if task == Task.MULTICLASS else torch.sigmoid(logits)


def accuracy_output(task: str) -> Callable[[dict], tuple[torch.Tensor, torch.Tensor]]:
    """(predicted labels, labels) as ignite's ``Accuracy`` takes them for the task."""

    def transform(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits, label = output[Keys.PRED].detach().float(), output[Keys.LABEL]
        if task == Task.MULTICLASS:
            return logits, label.reshape(-1).long()
        if task == Task.BINARY:
            return (logits.reshape(-1) > 0).long(), label.reshape(-1).long()
        return (logits > 0).long(), label.long()

    return transform


def auc_output(task: str, num_classes: int) -> Callable[[dict], tuple[torch.Tensor, torch.Tensor]]:
    """(probabilities, one-hot or 0/1 labels) as MONAI's ``ROCAUC`` takes them (one-vs-rest mean for multiclass)."""

    def transform(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
        probs = probabilities(output[Keys.PRED].detach(), task)
        label = output[Keys.LABEL]
        if task == Task.MULTICLASS:
            label = torch.nn.functional.one_hot(label.reshape(-1).long(), num_classes)
        return probs, label

    return transform


def loss_output(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for ignite's ``Loss``."""
    return output[Keys.PRED].detach().float(), output[Keys.LABEL]
