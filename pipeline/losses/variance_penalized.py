"""The variance-penalized classification loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from pipeline.losses.distributed import VARIANCE_SCOPES, gather_features
from pipeline.losses.feature_tap import FeatureTap

__all__ = ["VariancePenalizedLoss", "variance_penalty", "layer_variance", "LayerVariance", "sample_feature_columns",
           "TASKS"]

TASKS = ("binary", "multiclass", "multilabel")
_EPS = 1e-7


def sample_feature_columns(num_columns: int, feature_sampling_ratio: float,
                           generator: torch.Generator | None = None) -> tuple[int, int] | None:
    """Draw a circular block of ``k = max(1, floor(feature_sampling_ratio * num_columns))`` consecutive columns.

    The block is columns ``start, start + 1, ..., start + k - 1`` taken modulo ``num_columns``, with ``start``
    drawn uniformly from ``0 .. num_columns - 1`` by ``generator`` (CPU; torch's global RNG when None): one
    integer per call, no permutation of the columns, no index tensor to copy to the device.

    Every column is in the block with probability exactly ``k / num_columns``: column ``j`` is drawn for the
    ``k`` starts ``j, j - 1, ..., j - k + 1`` (modulo ``num_columns``) out of ``num_columns`` equally likely
    ones. So the mean of any per-column quantity over the block is an unbiased estimate of its mean over all
    columns: ``E[(1/k) sum_{j in block} v_j] = (1/k) sum_j v_j k / D = (1/D) sum_j v_j``, as for a uniform
    draw without replacement. (The block's columns are neighbours, so when neighbouring columns' values are
    alike, the estimate spreads more around that mean from draw to draw than a uniform draw's would.)

    Returns:
        ``(start, k)``, or None when every column is kept (``k == num_columns``; nothing is drawn then).
    """
    num_sampled = max(1, math.floor(feature_sampling_ratio * num_columns))
    if num_sampled >= num_columns:
        return None
    start = int(torch.randint(num_columns, (1,), generator=generator).item())
    return start, num_sampled


def _column_runs(start: int, num_sampled: int, num_columns: int) -> list[tuple[int, int]]:
    """The block ``start .. start + num_sampled - 1`` (mod ``num_columns``) as one or two ``[begin, end)`` runs."""
    end = start + num_sampled
    if end <= num_columns:
        return [(start, end)]
    return [(start, num_columns), (0, end - num_columns)]


def _run_views(grid: torch.Tensor, begin: int, end: int) -> list[torch.Tensor]:
    """Views of the flat columns ``[begin, end)`` of ``grid`` ``(B, C, P)`` (flat column ``j`` is ``(j // P,
    j % P)``): a partial channel, a run of whole channels, a partial channel. Slicing only, so no copy, whatever
    the memory layout (``channels_last`` included)."""
    positions = grid.shape[2]
    first, offset = divmod(begin, positions)
    last, tail = divmod(end, positions)
    if first == last:
        return [grid[:, first, offset:tail]]
    views = []
    if offset:
        views.append(grid[:, first, offset:])
        first += 1
    if last > first:
        views.append(grid[:, first:last])
    if tail:
        views.append(grid[:, last, :tail])
    return views


def _block_views(feature: torch.Tensor, runs: list[tuple[int, int]], flat: bool) -> list[torch.Tensor]:
    """Views of the flat columns ``runs`` of ``feature`` ``(B, ...)``: with ``flat`` (for a contiguous feature) one
    slice of ``reshape(B, -1)`` per run, else slices of channels (no copy for ``channels_last`` either)."""
    if flat:  # (B, D) is a view: one slice per run
        columns = feature.view(feature.shape[0], -1)
        return [columns[:, begin:end] for begin, end in runs]
    # e.g. channels_last: slice channels, never flatten across them (that would copy the whole activation).
    # view, not reshape: a copy here would silently lose the gradient written into it.
    grid = feature.view(feature.shape[0], feature.shape[1], -1) if feature.ndim > 2 else feature.unsqueeze(-1)
    return [view for begin, end in runs for view in _run_views(grid, begin, end)]


def _viewable_by_channel(feature: torch.Tensor) -> bool:
    """Whether ``feature`` ``(B, C, ...)`` can be seen as ``(B, C, P)`` without a copy (``channels_last`` can)."""
    if feature.ndim <= 3:
        return True
    try:
        feature.view(feature.shape[0], feature.shape[1], -1)
    except RuntimeError:
        return False
    return True


class _BlockVariance(torch.autograd.Function):
    """Mean over the columns ``runs`` (``[begin, end)`` flat ranges, ``num_sampled`` columns in all) of the
    population variance across dim 0, in float32, with a hand-written gradient.

    Autograd through the views would give each view its own full-size zero gradient, each then added into the
    activation's gradient (up to six per layer for a ``channels_last`` block); here the backward pass writes all
    views' gradients, ``2 (x - mean) / (B k)`` times the incoming gradient, into one zero tensor.
    """

    @staticmethod
    def forward(ctx, feature: torch.Tensor, runs: list[tuple[int, int]], num_sampled: int) -> torch.Tensor:
        total = feature.new_zeros((), dtype=torch.float32)
        means = []
        flat = feature.is_contiguous()
        for view in _block_views(feature, runs, flat):
            variance, mean = torch.var_mean(view.float(), dim=0, correction=0)
            total = total + variance.sum()
            means.append(mean)
        ctx.save_for_backward(feature, *means)
        ctx.runs, ctx.num_sampled, ctx.flat = runs, num_sampled, flat
        return total / num_sampled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        feature, *means = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        grad = torch.zeros_like(feature)
        scale = grad_output * (2.0 / (feature.shape[0] * ctx.num_sampled))
        views = zip(_block_views(grad, ctx.runs, ctx.flat), _block_views(feature, ctx.runs, ctx.flat), means,
                    strict=True)
        for grad_view, view, mean in views:
            grad_view.copy_((view.float() - mean) * scale)
        return grad, None, None


def layer_variance(feature: torch.Tensor, feature_sampling_ratio: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Mean, over a random circular block of the flattened ``(B, D)`` columns, of the population variance across
    the batch, in float32.

    The block (:func:`sample_feature_columns`) is read through views of the feature: nothing is flattened,
    gathered or cast except the ``k`` sampled columns, so the cost in the forward pass is about the share
    sampled, also for ``channels_last`` activations; the backward pass writes one gradient tensor
    (:class:`_BlockVariance`). Columns are numbered as ``feature.reshape(B, -1)`` numbers them (channel-major),
    whatever the memory layout.
    """
    num_columns = math.prod(feature.shape[1:])
    if num_columns == 0:
        raise ValueError(f"a feature tensor of shape {tuple(feature.shape)} has no feature dimension to penalize")
    block = sample_feature_columns(num_columns, feature_sampling_ratio, generator)
    if block is None:
        return torch.var(feature.float(), dim=0, correction=0).mean()
    start, num_sampled = block
    if not (feature.is_contiguous() or _viewable_by_channel(feature)):
        feature = feature.contiguous()  # a rare layout (spatial axes permuted): one copy, through autograd
    return _BlockVariance.apply(feature, _column_runs(start, num_sampled, num_columns), num_sampled)


#: The signature of a per-layer penalty estimator (:func:`layer_variance` is the library's): feature, sampling
#: ratio, generator -> float32 scalar.
LayerVariance = Callable[[torch.Tensor, float, "torch.Generator | None"], torch.Tensor]


def variance_penalty(
    features: Sequence[torch.Tensor],
    feature_sampling_ratio: float = 1.0,
    generator: torch.Generator | None = None,
    estimator: LayerVariance = layer_variance,
) -> torch.Tensor:
    """Mean over layers of the mean sampled per-feature batch variance, computed in float32.

    Args:
        features: one ``(B, ...)`` tensor per layer; each is seen as ``(B, D)`` (``D`` = the product of the
            other dimensions, channel-major as ``reshape(B, -1)`` orders them).
        feature_sampling_ratio: share of the ``D`` columns drawn for each layer at each call:
            ``k = max(1, floor(feature_sampling_ratio * D))`` consecutive columns, modulo ``D``, from a
            uniformly random start (see :func:`sample_feature_columns`: each column is drawn with probability
            ``k / D``, so the estimate of the mean variance over all columns is unbiased).
        generator: CPU generator for the draws (reproducible sequences); global RNG when None.
        estimator: the per-layer estimate; :func:`layer_variance` (the default) or another formulation of the same
            quantity with its signature (the performance benchmarks time alternatives through this argument).

    Returns:
        A float32 scalar. The variance divides by ``B``, so a batch of one gives 0.
    """
    if len(features) == 0:
        raise ValueError("variance_penalty needs at least one feature tensor")
    device_type = features[0].device.type
    with torch.autocast(device_type=device_type, enabled=False):
        terms = [estimator(feature, feature_sampling_ratio, generator) for feature in features]
    return torch.stack(terms).mean()


class VariancePenalizedLoss(_Loss):
    """Classification loss plus a penalty on the batch variance of intermediate features.

    ``total = lambda_ * classification(input, target) + variance_weight * penalty``, where the
    penalty is, averaged over the tapped layers, the mean over a random ``feature_sampling_ratio``
    share of that layer's flattened features of their population variance across the batch
    (see :func:`variance_penalty`). Columns are drawn afresh at every call.

    Shapes:
        - ``binary``: ``input`` ``(B,)`` or ``(B, 1)`` (one logit), ``target`` ``(B,)`` or ``(B, 1)`` of 0/1.
        - ``multiclass``: ``input`` ``(B, C)``; ``target`` ``(B,)`` or ``(B, 1)`` class indices, or ``(B, C)``
          one-hot (or class probabilities).
        - ``multilabel``: ``input`` ``(B, C)``, ``target`` ``(B, C)`` of 0/1.
        - ``features``: one tensor or a list of ``(B, ...)`` tensors with the same ``B``.

    Args:
        variance_weight: strength of the penalty, >= 0. With 0 the penalty is not computed and
            the loss is ``lambda_`` times the plain classification loss.
        feature_sampling_ratio: share of feature dimensions sampled per layer and call, in (0, 1].
        lambda_: weight of the classification term, >= 0.
        task: ``"binary"`` (BCE on one logit), ``"multiclass"`` (cross-entropy) or ``"multilabel"`` (BCE).
        feature_source: a :class:`FeatureTap` read when ``features`` is not passed to ``forward``.
        seed: seed of the column sampling, for a reproducible sequence of draws. None uses torch's global RNG.
        from_logits: True when ``input`` holds logits; False when it holds probabilities (sigmoid or softmax
            outputs), as the method's original implementation took them.
        label_smoothing: in [0, 1); smooths multiclass targets as ``torch.nn.CrossEntropyLoss`` does, and
            binary/multilabel targets towards 0.5.
        reduction: how the classification term is reduced over the batch (MONAI's ``LossReduction``):
            ``"mean"``, ``"sum"``, or ``"none"`` for one term per item, ``(B,)`` (``(B, C)``, one per label, for
            multilabel). The variance term is a statistic of the whole batch, not of an item: with ``"none"`` the
            same scalar ``variance_weight * penalty`` is added to every item's term, so the mean of the ``"none"``
            result equals the ``"mean"`` result, and ``last_terms["classification"]`` holds the per-item terms.
        variance_scope: in a distributed (DistributedDataParallel) run, ``"local"`` penalizes each process's own
            batch; ``"global"`` gathers the features of every process (with gradients, see
            :mod:`pipeline.losses.distributed`) and penalizes the whole global batch, as a single process would.
            Both are the same without an initialised process group.
        estimator: the per-layer penalty estimate, :func:`layer_variance` by default (see :func:`variance_penalty`).

    After each call, ``last_terms`` holds the detached ``{"classification": ..., "variance": ...}`` terms.

    Raises:
        ValueError: on a weight < 0, ``feature_sampling_ratio`` outside (0, 1], an unknown task,
            reduction (``LossReduction``) or variance scope, or (in ``forward``) shapes that do not fit the task, or
            no features while ``variance_weight > 0``.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet18
        >>> from pipeline.losses import FeatureTap, VariancePenalizedLoss
        >>> net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=3)
        >>> tap = FeatureTap(net, layers="last_block")
        >>> loss = VariancePenalizedLoss(variance_weight=0.01, feature_sampling_ratio=0.2,
        ...                              task="multiclass", feature_source=tap, seed=0)
        >>> total = loss(net(torch.rand(8, 1, 64, 64)), torch.randint(0, 3, (8,)))
        >>> total.backward()
        >>> sorted(loss.last_terms)
        ['classification', 'variance']
    """

    def __init__(
        self,
        variance_weight: float = 0.01,
        feature_sampling_ratio: float = 0.2,
        lambda_: float = 1.0,
        task: str = "multiclass",
        feature_source: FeatureTap | None = None,
        seed: int | None = None,
        from_logits: bool = True,
        label_smoothing: float = 0.0,
        reduction: LossReduction | str = LossReduction.MEAN,
        variance_scope: str = "local",
        estimator: LayerVariance = layer_variance,
    ) -> None:
        reductions = [member.value for member in LossReduction]
        if str(getattr(reduction, "value", reduction)) not in reductions:
            raise ValueError(f"reduction must be one of {reductions}, got {reduction!r}")
        if variance_scope not in VARIANCE_SCOPES:
            raise ValueError(f"variance_scope must be one of {VARIANCE_SCOPES}, got {variance_scope!r}")
        super().__init__(reduction=LossReduction(reduction).value)
        if not (isinstance(variance_weight, (int, float)) and variance_weight >= 0 and math.isfinite(variance_weight)):
            raise ValueError(f"variance_weight must be a finite number >= 0, got {variance_weight!r}")
        if not (isinstance(feature_sampling_ratio, (int, float)) and 0 < feature_sampling_ratio <= 1):
            raise ValueError(f"feature_sampling_ratio must be in (0, 1], got {feature_sampling_ratio!r}")
        if not (isinstance(lambda_, (int, float)) and lambda_ >= 0 and math.isfinite(lambda_)):
            raise ValueError(f"lambda_ must be a finite number >= 0, got {lambda_!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.variance_weight = float(variance_weight)
        self.feature_sampling_ratio = float(feature_sampling_ratio)
        self.lambda_ = float(lambda_)
        self.task = task
        self.feature_source = feature_source
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)
        self.variance_scope = variance_scope
        self.estimator = estimator
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        features: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """
        Args:
            input: logits (or probabilities with ``from_logits=False``), shaped as the task requires.
            target: labels, shaped as the task requires.
            features: the features to penalize; read from ``feature_source`` when None.
        """
        classification = self.classification_loss(input, target)
        if self.variance_weight > 0:
            found = self._features(features, input.shape[0])
            if self.variance_scope == "global":
                found = gather_features(found)
            penalty = variance_penalty(found, self.feature_sampling_ratio, self.generator, self.estimator)
        else:
            penalty = classification.new_zeros((), dtype=torch.float32)
        total = self.lambda_ * classification + self.variance_weight * penalty
        self.last_terms = {"classification": classification.detach(), "variance": penalty.detach()}
        return total

    def classification_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The classification term alone (no penalty), reduced as configured."""
        if self.task == "binary":
            return self._binary(input, target)
        if self.task == "multilabel":
            if input.ndim != 2 or target.shape != input.shape:
                raise ValueError(
                    f"multilabel expects input (B, C) and target of the same shape, got {tuple(input.shape)} "
                    f"and {tuple(target.shape)}"
                )
            return self._bce(input, target.to(input.dtype))
        return self._multiclass(input, target)

    def _features(self, features: torch.Tensor | Sequence[torch.Tensor] | None, batch: int) -> list[torch.Tensor]:
        if features is None:
            if self.feature_source is None:
                raise ValueError("variance_weight > 0 needs features: pass features=... or set feature_source")
            found = self.feature_source.features
            if not found:
                raise ValueError(
                    "the feature tap holds no features: run the network forward with gradients enabled "
                    "before computing the loss"
                )
        elif isinstance(features, torch.Tensor):
            found = [features]
        else:
            found = list(features)
        for feature in found:
            if feature.ndim < 2 or feature.shape[0] != batch:
                raise ValueError(f"each feature must be (B, ...) with B={batch}, got {tuple(feature.shape)}")
        return found

    def _binary(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim == 2 and input.shape[1] == 1:
            input = input[:, 0]
        if input.ndim != 1:
            raise ValueError(
                f"binary expects one logit per item, input (B,) or (B, 1), got {tuple(input.shape)}; "
                "use task='multiclass' for (B, 2) outputs"
            )
        target = target.reshape(-1)
        if target.shape[0] != input.shape[0]:
            raise ValueError(f"binary target must hold B={input.shape[0]} labels, got shape {tuple(target.shape)}")
        return self._bce(input, target.to(input.dtype))

    def _bce(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)
        return F.binary_cross_entropy(input.clamp(_EPS, 1 - _EPS), target, reduction=self.reduction)

    def _multiclass(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim != 2 or input.shape[1] < 2:
            raise ValueError(f"multiclass expects input (B, C) with C >= 2, got {tuple(input.shape)}")
        if target.ndim == 2 and target.shape[1] == input.shape[1]:
            target = target.to(input.dtype)
        elif target.ndim == 1 or (target.ndim == 2 and target.shape[1] == 1):
            target = target.reshape(-1).long()
        else:
            raise ValueError(
                f"multiclass target must be (B,) or (B, 1) class indices or (B, C) one-hot with C={input.shape[1]}, "
                f"got {tuple(target.shape)}"
            )
        logits = input if self.from_logits else torch.log(input.clamp_min(_EPS))
        return F.cross_entropy(logits, target, reduction=self.reduction, label_smoothing=self.label_smoothing)
