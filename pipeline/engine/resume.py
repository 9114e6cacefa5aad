"""What a checkpoint must hold besides weights for a resumed run to continue exactly where it stopped.

Each class is a small adapter with ``state_dict``/``load_state_dict`` so ignite's ``Checkpoint`` can save and load
it next to the network and optimizer. Every state is made of tensors and plain Python values, so checkpoints load
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import types
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.data import DataLoader
from monai.transforms import Transform

from pipeline.errors import DataError

__all__ = ["RandomStates", "DataOrder", "StateAttributes", "MetricStates", "transform_generators"]


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


def _walk(node: object, seen: set[int], found: list) -> None:
    """Depth-first, in attribute order, so two runs that build the same chain list the same generators."""
    if id(node) in seen or isinstance(node, (str, bytes, int, float, bool, type(None), np.ndarray, torch.Tensor,
                                             type, types.ModuleType, types.FunctionType, types.MethodType)):
        return
    seen.add(id(node))
    if isinstance(node, (np.random.RandomState, torch.Generator)):
        found.append(node)
        return
    if isinstance(node, Mapping):
        children: Iterable = node.values()
    elif isinstance(node, (list, tuple, set, frozenset)):
        children = node if not isinstance(node, (set, frozenset)) else ()
    elif hasattr(node, "__dict__") and (isinstance(node, Transform) or type(node).__module__.startswith("monai.")):
        children = vars(node).values()
    else:
        return
    for child in children:
        _walk(child, seen, found)


def transform_generators(transform: object) -> list[np.random.RandomState | torch.Generator]:
    """Every random number generator a transform chain holds, found by walking it.

    MONAI's random dictionary transforms wrap array transforms with generators of their own (``RandAffined`` holds a
    ``RandAffine`` holding a ``RandAffineGrid``; ``RandGaussianNoised`` a ``RandGaussianNoise``), and ``Compose`` /
    ``OneOf`` hold lists of transforms; so the chain's attributes, lists and mappings are walked recursively (MONAI
    objects and transforms only), each generator listed once in a stable order. A list of classes would miss the
    next transform that nests one.
    """
    found: list = []
    _walk(transform, set(), found)
    return found


def _generator_state(generator: np.random.RandomState | torch.Generator) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    return _numpy_state_to_plain(generator.get_state())


def _set_generator_state(generator: np.random.RandomState | torch.Generator, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    else:
        generator.set_state(_numpy_state_from_plain(state))


class RandomStates:
    """The random number generators a training run draws from: Python's, NumPy's, torch's (CPU and CUDA), named
    ``torch.Generator`` objects (the loss's column sampling, the loader's shuffling) and every generator of the
    training transform chain (:func:`transform_generators`), nested ones included.

    Example:
        >>> states = RandomStates({"loss": loss.generator, "train_loader": loader.generator}, loader.dataset.transform)
        >>> saved = states.state_dict(); ...; states.load_state_dict(saved)
    """

    def __init__(self, generators: Mapping[str, torch.Generator | None],
                 transform: object = None) -> None:
        self.generators = {name: generator for name, generator in generators.items() if generator is not None}
        self.transform_generators = transform_generators(transform)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "generators": {name: generator.get_state() for name, generator in self.generators.items()},
            "transforms": [_generator_state(generator) for generator in self.transform_generators],
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
        saved = state["transforms"]
        if len(saved) != len(self.transform_generators):
            raise DataError(f"the checkpoint holds {len(saved)} random states of the augmentation transforms and this "
                            f"run's transforms have {len(self.transform_generators)} (a checkpoint of another "
                            "augmentation config or an older medvp); it cannot resume this run exactly")
        for generator, generator_state in zip(self.transform_generators, saved, strict=True):
            _set_generator_state(generator, generator_state)
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
        # Exactly one epoch of batches, without asking the loader for more: an exhausted shuffling sampler draws
        # from the generator once more (torch's RandomSampler), at the next epoch's start, after the epoch's
        # checkpoint was written; a run resumed from that checkpoint has no exhausted iterator to make that draw.
        return islice(iter(self.loader), len(self.loader))

    def resume_mid_epoch(self, batches_done: int) -> None:
        """Make the next iteration start at batch ``batches_done`` of the epoch whose start state was loaded."""
        self.loader.generator.set_state(self.epoch_start_state)
        iterator = iter(self.loader)
        for _ in islice(iterator, batches_done):
            pass
        self._pending = islice(iterator, len(self.loader) - batches_done)

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
