"""What a checkpoint must hold besides weights for a resumed run to continue exactly where it stopped.

Each class is a small adapter with ``state_dict``/``load_state_dict`` so ignite's ``Checkpoint`` can save and load
it next to the network and optimizer. Every state is made of tensors and plain Python values, so checkpoints load
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.data import DataLoader
from monai.transforms import Compose, Randomizable

__all__ = ["RandomStates", "DataOrder", "StateAttributes", "MetricStates", "randomizable_transforms"]


def _numpy_state_to_plain(state: tuple) -> dict:
    """``RandomState.get_state()`` (which holds an ndarray) as plain values."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
            "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def _numpy_state_from_plain(state: Mapping) -> tuple:
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["position"], state["has_gauss"],
            state["cached_gaussian"])


def _weights_only_safe(value: Any) -> Any:
    """Values that ``torch.load(weights_only=True)`` accepts: numpy scalars as Python numbers, tensor subclasses
    (MONAI's MetaTensor, which augmented batches and the losses computed from them are) as plain tensors."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and type(value) is not torch.Tensor:
        return value.as_subclass(torch.Tensor)
    if isinstance(value, Mapping):
        return {key: _weights_only_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_weights_only_safe(item) for item in value)
    return value


def randomizable_transforms(transform: object) -> list[Randomizable]:
    """The MONAI transforms in ``transform`` (a Compose, possibly nested) that draw random numbers."""
    if isinstance(transform, Compose):
        return [item for item in transform.flatten().transforms if isinstance(item, Randomizable)]
    return [transform] if isinstance(transform, Randomizable) else []


class RandomStates:
    """The random number generators a training run draws from: Python's, NumPy's, torch's (CPU and CUDA), named
    ``torch.Generator`` objects (the loss's column sampling, the loader's shuffling) and the private
    ``RandomState`` of each random MONAI transform.

    Example:
        >>> states = RandomStates({"loss": loss.generator, "train_loader": loader.generator})
        >>> saved = states.state_dict(); ...; states.load_state_dict(saved)
    """

    def __init__(self, generators: Mapping[str, torch.Generator | None],
                 transforms: Iterable[Randomizable] = ()) -> None:
        self.generators = {name: generator for name, generator in generators.items() if generator is not None}
        self.transforms = list(transforms)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "generators": {name: generator.get_state() for name, generator in self.generators.items()},
            "transforms": [_numpy_state_to_plain(transform.R.get_state()) for transform in self.transforms],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np.random.set_state(_numpy_state_from_plain(state["numpy"]))
        torch.set_rng_state(state["torch"])
        for name, generator in self.generators.items():
            generator.set_state(state["generators"][name])
        for transform, saved in zip(self.transforms, state["transforms"], strict=True):
            transform.R.set_state(_numpy_state_from_plain(saved))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class DataOrder:
    """The training loader as the trainer iterates it, with what is needed to replay an epoch's batch order.

    A ``DataLoader`` draws an epoch's shuffled order from its generator when it is iterated, so the generator
    state before each epoch is kept; :meth:`resume_mid_epoch` rewinds to it and skips the batches already
    trained on. The skipped batches are read (not trained on), so worker processes and random transforms
    advance as in the original epoch; restore :class:`RandomStates` afterwards.

    Args:
        loader: the training loader; its ``generator`` must be set (``pipeline.data.make_loader`` sets it).
    """

    def __init__(self, loader: DataLoader) -> None:
        if loader.generator is None:
            raise ValueError("DataOrder needs a DataLoader created with a generator")
        self.loader = loader
        self.epoch_start_state = loader.generator.get_state()
        self._pending: Iterator | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        if self._pending is not None:
            iterator, self._pending = self._pending, None
            return iterator
        self.epoch_start_state = self.loader.generator.get_state()
        return iter(self.loader)

    def resume_mid_epoch(self, batches_done: int) -> None:
        """Make the next iteration start at batch ``batches_done`` of the epoch whose start state was loaded."""
        self.loader.generator.set_state(self.epoch_start_state)
        iterator = iter(self.loader)
        for _ in islice(iterator, batches_done):
            pass
        self._pending = iterator

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"epoch_start_state": self.epoch_start_state}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.epoch_start_state = state["epoch_start_state"]


class StateAttributes:
    """Named attributes of an engine's ``state`` (e.g. an evaluator's best metric and its epoch)."""

    def __init__(self, engine: Engine, names: Iterable[str]) -> None:
        self.engine = engine
        self.names = tuple(names)

    def state_dict(self) -> dict[str, Any]:
        # numpy scalars (metrics may return them) would not load with weights_only=True
        return {name: _weights_only_safe(getattr(self.engine.state, name)) for name in self.names}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self.names:
            setattr(self.engine.state, name, state[name])


class MetricStates:
    """The running sums of ignite metrics mid-epoch, so an epoch resumed from an iteration checkpoint reports the
    same epoch metrics as an uninterrupted one. Load them after the epoch started (which resets metrics)."""

    def __init__(self, metrics: Mapping[str, Metric]) -> None:
        self.metrics = dict(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {name: _weights_only_safe(dict(metric.state_dict())) for name, metric in self.metrics.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, metric in self.metrics.items():
            metric.load_state_dict(state[name])
