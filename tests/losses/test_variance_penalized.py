import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import VariancePenalizedLoss, sample_feature_columns, variance_penalty


def manual_penalty(features):
    """The formula with every column kept: mean over layers of mean over columns of Var_batch (divide by B)."""
    terms = []
    for feature in features:
        flat = feature.reshape(feature.shape[0], -1).double()
        centred = flat - flat.mean(dim=0, keepdim=True)
        terms.append((centred**2).mean(dim=0).mean())
    return torch.stack(terms).mean()


@pytest.fixture
def features():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(6, 4, 3, 3, generator=generator) * 2 + 1, torch.randn(6, 10, generator=generator)]


@pytest.mark.parametrize(
    "task,logits,target,reference",
    [
        ("binary", torch.tensor([[0.3], [-1.2], [2.0], [0.0], [0.5], [-0.7]]),
         torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]]),
         lambda x, y: F.binary_cross_entropy_with_logits(x, y)),
        ("multiclass", torch.tensor([[0.3, 1.0, -1.0], [2.0, 0.0, 0.1], [0.0, 0.0, 3.0],
                                     [1.0, 1.0, 1.0], [-2.0, 0.5, 0.0], [0.2, 0.1, 0.0]]),
         torch.tensor([1, 0, 2, 0, 1, 2]),
         lambda x, y: F.cross_entropy(x, y)),
        ("multilabel", torch.tensor([[0.3, -1.0], [2.0, 0.1], [0.0, 3.0], [1.0, -1.0], [-2.0, 0.0], [0.2, 0.1]]),
         torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
         lambda x, y: F.binary_cross_entropy_with_logits(x, y)),
    ],
)
def test_total_matches_formula_for_each_task(task, logits, target, reference, features):
    loss = VariancePenalizedLoss(variance_weight=0.3, feature_sampling_ratio=1.0, lambda_=0.5, task=task)
    total = loss(logits, target, features=features)
    expected_penalty = manual_penalty(features)
    expected = 0.5 * reference(logits, target) + 0.3 * expected_penalty
    assert torch.allclose(total.double(), expected, atol=1e-6)
    assert torch.allclose(loss.last_terms["variance"].double(), expected_penalty, atol=1e-6)
    assert torch.allclose(loss.last_terms["classification"], reference(logits, target), atol=1e-6)
    assert not loss.last_terms["variance"].requires_grad


def test_binary_accepts_flat_logits_and_multiclass_accepts_one_hot_and_column_targets():
    logits = torch.tensor([0.2, -0.4, 1.5])
    target = torch.tensor([1, 0, 1])
    binary = VariancePenalizedLoss(variance_weight=0.0, task="binary")
    assert torch.allclose(binary(logits, target), binary(logits[:, None], target[:, None].float()))
    scores = torch.tensor([[0.1, 0.9, 0.0], [1.0, -1.0, 0.5], [0.0, 0.0, 2.0]])
    labels = torch.tensor([1, 0, 2])
    multiclass = VariancePenalizedLoss(variance_weight=0.0, task="multiclass")
    by_index = multiclass(scores, labels)
    assert torch.allclose(by_index, multiclass(scores, labels[:, None]))
    assert torch.allclose(by_index, multiclass(scores, F.one_hot(labels, 3)))


def test_probabilities_input_matches_logits_when_from_logits_is_false():
    logits = torch.tensor([[0.1, 0.9, 0.0], [1.0, -1.0, 0.5]])
    labels = torch.tensor([1, 2])
    from_logits = VariancePenalizedLoss(variance_weight=0.0, task="multiclass")(logits, labels)
    from_probs = VariancePenalizedLoss(variance_weight=0.0, task="multiclass", from_logits=False)(
        torch.softmax(logits, 1), labels)
    assert torch.allclose(from_logits, from_probs, atol=1e-5)
    binary_logits = torch.tensor([0.3, -2.0])
    binary_target = torch.tensor([1.0, 0.0])
    assert torch.allclose(
        VariancePenalizedLoss(variance_weight=0.0, task="binary")(binary_logits, binary_target),
        VariancePenalizedLoss(variance_weight=0.0, task="binary", from_logits=False)(
            torch.sigmoid(binary_logits), binary_target), atol=1e-5)


def block_columns(block, num_columns):
    """The column indices of a ``(start, k)`` block from sample_feature_columns (None: all columns)."""
    if block is None:
        return torch.arange(num_columns)
    start, num_sampled = block
    return (start + torch.arange(num_sampled)) % num_columns


@pytest.mark.parametrize("num_columns,ratio", [(10, 0.2), (10, 0.05), (7, 0.5), (1000, 0.333), (5, 1.0)])
def test_sample_size_is_floor_of_ratio_with_at_least_one(num_columns, ratio):
    generator = torch.Generator().manual_seed(0)
    expected = max(1, math.floor(ratio * num_columns))
    for _ in range(20):
        block = sample_feature_columns(num_columns, ratio, generator)
        if expected == num_columns:
            assert block is None
            continue
        start, num_sampled = block
        assert num_sampled == expected
        assert 0 <= start < num_columns
        columns = block_columns(block, num_columns)
        assert len(set(columns.tolist())) == expected


def test_each_column_is_drawn_with_probability_k_over_d():
    # D = 10, k = 3: every column, the first and last included (the block wraps around), is drawn 3/10 of the
    # time. 4000 draws: a frequency's standard error is sqrt(0.3 * 0.7 / 4000) = 0.0072; allow 5 of them.
    generator = torch.Generator().manual_seed(5)
    draws = 4000
    counts = torch.zeros(10)
    for _ in range(draws):
        counts[block_columns(sample_feature_columns(10, 0.3, generator), 10)] += 1
    assert torch.allclose(counts / draws, torch.full((10,), 0.3), atol=5 * math.sqrt(0.3 * 0.7 / draws))


def test_sampled_penalty_is_an_unbiased_estimate_of_the_all_column_penalty():
    # Column variances that grow with the column index (neighbours alike: the case where a block's estimate
    # spreads most). The mean of the sampled estimate over many draws must match the all-column value within
    # 5 standard errors of that mean (standard error from the spread of the draws themselves).
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(16, 5, 4, 3, generator=generator) * torch.linspace(0.1, 3.0, 60).reshape(5, 4, 3)
    full = variance_penalty([feature], 1.0).double()
    sampler = torch.Generator().manual_seed(11)
    estimates = torch.stack([variance_penalty([feature], 0.2, sampler) for _ in range(3000)]).double()
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert estimates.std() > 0  # the draws do differ
    assert abs(estimates.mean() - full) < 5 * standard_error
    assert standard_error < 0.02 * full  # the check has teeth: a 10% bias would fail it


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("seed", range(6))
def test_value_and_gradient_match_a_float64_reference_on_the_sampled_columns(memory_format, seed):
    # (6, 5, 4, 3): D = 60, P = 12 positions per channel; ratio 0.3 gives k = 18 columns, so blocks start and end
    # inside channels and some wrap around.
    generator = torch.Generator().manual_seed(100 + seed)
    feature = (torch.randn(6, 5, 4, 3, generator=generator) * 2 + 3).contiguous(memory_format=memory_format)
    feature.requires_grad_(True)
    value = variance_penalty([feature], 0.3, torch.Generator().manual_seed(seed))
    value.backward()
    columns = block_columns(sample_feature_columns(60, 0.3, torch.Generator().manual_seed(seed)), 60)
    reference_input = feature.detach().double().reshape(6, -1).requires_grad_(True)
    sampled = reference_input[:, columns]
    reference = ((sampled - sampled.mean(0)) ** 2).mean(0).mean()
    reference.backward()
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.allclose(feature.grad.double().reshape(6, -1), reference_input.grad, atol=1e-7)
    touched = feature.grad.reshape(6, -1).abs().sum(0).nonzero().flatten()
    assert sorted(touched.tolist()) == sorted(columns.tolist())


def test_float32_statistics_stay_accurate_on_features_with_a_large_mean():
    # Variance 1e-4 around a mean of 1000: E[x^2] - E[x]^2 in float32 would lose every digit (eps * 1e6 = 0.06).
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(128, 64, 8, 8, generator=generator) * 0.01 + 1000
    reference = feature.double().reshape(128, -1).var(0, unbiased=False).mean().item()
    assert variance_penalty([feature], 1.0).item() == pytest.approx(reference, rel=1e-3)
    sampler = torch.Generator().manual_seed(1)
    block = sample_feature_columns(64 * 64, 0.2, torch.Generator().manual_seed(1))
    sampled_reference = feature.double().reshape(128, -1)[:, block_columns(block, 4096)].var(0, unbiased=False)
    assert variance_penalty([feature], 0.2, sampler).item() == pytest.approx(sampled_reference.mean().item(),
                                                                              rel=1e-3)


def test_one_draw_per_layer_and_call_from_the_generator():
    features = [torch.randn(4, 3, 5, 5), torch.randn(4, 40)]
    generator = torch.Generator().manual_seed(9)
    variance_penalty(features, 0.2, generator)
    replay = torch.Generator().manual_seed(9)
    sample_feature_columns(75, 0.2, replay)
    sample_feature_columns(40, 0.2, replay)
    assert torch.equal(generator.get_state(), replay.get_state())


def test_penalty_uses_exactly_the_sampled_share_of_columns():
    # One column with batch variance 1, 19 with variance 0; with k = 1 the penalty is 0 or 1, never between.
    features = torch.zeros(4, 20)
    features[:, 7] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.05, lambda_=0.0, task="binary",
                                 seed=3)
    values = {loss(torch.zeros(4), torch.zeros(4), features=features).item() for _ in range(200)}
    assert values == {0.0, 1.0}
    # With k = 10 of 20 the penalty is 1/10 exactly when column 7 is drawn (half the time), else 0.
    loss_half = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.5, lambda_=0.0, task="binary",
                                      seed=3)
    values = [loss_half(torch.zeros(4), torch.zeros(4), features=features).item() for _ in range(400)]
    assert set(round(v, 6) for v in values) == {0.0, 0.1}
    assert 0.4 < sum(v > 0 for v in values) / len(values) < 0.6


def test_a_fresh_sample_at_every_call_and_seed_reproducibility():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(8, 200, generator=generator) * torch.linspace(0.1, 5, 200)
    first = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.1, lambda_=0.0, task="binary",
                                  seed=42)
    second = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.1, lambda_=0.0, task="binary",
                                   seed=42)
    other = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.1, lambda_=0.0, task="binary",
                                  seed=7)
    targets = torch.zeros(8)
    run_first = [first(torch.zeros(8), targets, features=features).item() for _ in range(5)]
    run_second = [second(torch.zeros(8), targets, features=features).item() for _ in range(5)]
    run_other = [other(torch.zeros(8), targets, features=features).item() for _ in range(5)]
    assert run_first == run_second
    assert len(set(run_first)) == 5  # a new draw every call
    assert run_first != run_other


def test_gradient_with_respect_to_features():
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(5, 3, 2, generator=generator, requires_grad=True)
    loss = VariancePenalizedLoss(variance_weight=2.0, feature_sampling_ratio=1.0, lambda_=0.0, task="binary")
    loss(torch.zeros(5), torch.zeros(5), features=feature).backward()
    flat = feature.detach().reshape(5, -1)
    # d/dx_bj of 2 * mean_j mean_b (x_bj - mean_j)^2 = 2 * 2 (x_bj - mean_j) / (B * D)
    expected = 2 * 2 * (flat - flat.mean(0)) / (5 * flat.shape[1])
    assert torch.allclose(feature.grad.reshape(5, -1), expected, atol=1e-6)


def test_gradient_reaches_only_the_sampled_columns():
    feature = torch.randn(4, 50, requires_grad=True)
    loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.2, lambda_=0.0, task="binary", seed=0)
    loss(torch.zeros(4), torch.zeros(4), features=feature).backward()
    touched = (feature.grad.abs().sum(0) > 0).sum().item()
    assert touched == 10


def test_batch_of_one_gives_zero_penalty_not_nan():
    loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.5, task="multiclass")
    total = loss(torch.tensor([[0.2, 0.8]]), torch.tensor([1]), features=[torch.randn(1, 16), torch.randn(1, 2, 3)])
    assert torch.isfinite(total)
    assert loss.last_terms["variance"].item() == 0.0


def test_bf16_features_give_float32_statistics_close_to_float32():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(32, 64, 4, 4, generator=generator) * 3 + 10
    loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=1.0, lambda_=0.0, task="binary")
    reference = loss(torch.zeros(32), torch.zeros(32), features=features).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(torch.zeros(32, dtype=torch.bfloat16), torch.zeros(32), features=features.bfloat16())
    assert value.dtype == torch.float32
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(reference, rel=2e-2)
    assert variance_penalty([features.half()]).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"feature_sampling_ratio": 0.0}, "feature_sampling_ratio must be in \\(0, 1\\], got 0.0"),
        ({"feature_sampling_ratio": 1.5}, "got 1.5"),
        ({"variance_weight": -0.1}, "variance_weight .* got -0.1"),
        ({"lambda_": -1}, "lambda_ .* got -1"),
        ({"task": "regression"}, "task must be one of"),
        ({"reduction": "max"}, "reduction must be"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VariancePenalizedLoss(**kwargs)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="binary expects one logit"):
        VariancePenalizedLoss(variance_weight=0.0, task="binary")(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="multilabel expects"):
        VariancePenalizedLoss(variance_weight=0.0, task="multilabel")(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="needs features"):
        VariancePenalizedLoss(variance_weight=0.1, task="binary")(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="B=3"):
        VariancePenalizedLoss(variance_weight=0.1, task="binary")(torch.zeros(3), torch.zeros(3),
                                                                   features=torch.zeros(4, 2))


def test_zero_weight_is_plain_cross_entropy_without_features():
    logits = torch.tensor([[0.2, 0.8], [1.0, 0.0]])
    labels = torch.tensor([1, 0])
    loss = VariancePenalizedLoss(variance_weight=0.0, lambda_=1.0, task="multiclass")
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits, labels))


def test_label_smoothing_matches_torch():
    logits = torch.tensor([[0.2, 0.8, 0.1], [1.0, 0.0, -1.0]])
    labels = torch.tensor([1, 0])
    loss = VariancePenalizedLoss(variance_weight=0.0, task="multiclass", label_smoothing=0.1)
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))


@pytest.mark.parametrize("make", [
    lambda x: x.contiguous(memory_format=torch.channels_last),
    lambda x: x.transpose(2, 3).contiguous().transpose(2, 3),  # non-contiguous, not channels_last
    lambda x: x[:, :, :, ::2],  # strided: zeros_like gives a contiguous gradient
])
def test_gradient_on_non_contiguous_features_matches_contiguous(make):
    generator = torch.Generator().manual_seed(4)
    base = torch.randn(5, 6, 4, 8, generator=generator)
    through_contiguous = base.clone().requires_grad_(True)
    variance_penalty([make(through_contiguous).contiguous()], 0.45, torch.Generator().manual_seed(2)).backward()
    source = base.clone().requires_grad_(True)
    feature = make(source)
    assert not feature.is_contiguous()
    variance_penalty([feature], 0.45, torch.Generator().manual_seed(2)).backward()
    assert torch.allclose(source.grad, through_contiguous.grad, atol=1e-7)
    assert source.grad.abs().sum() > 0


def test_bf16_features_get_a_bf16_gradient_close_to_float32():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(16, 8, 4, 4, generator=generator) * 2 + 1
    full = base.clone().requires_grad_(True)
    variance_penalty([full], 0.3, torch.Generator().manual_seed(1)).backward()
    half = base.bfloat16().requires_grad_(True)
    variance_penalty([half], 0.3, torch.Generator().manual_seed(1)).backward()
    assert half.grad.dtype == torch.bfloat16
    assert torch.allclose(half.grad.float(), full.grad, rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize("task, logits, target", [
    ("binary", torch.randn(6, 1), torch.randint(0, 2, (6,))),
    ("multiclass", torch.randn(6, 3), torch.randint(0, 3, (6,))),
    ("multilabel", torch.randn(6, 3), torch.randint(0, 2, (6, 3)).float()),
])
def test_reduction_none_gives_one_term_per_item_with_the_batch_penalty_added_to_each(task, logits, target):
    features = [torch.randn(6, 4, 5, 5)]
    losses = {reduction: VariancePenalizedLoss(variance_weight=0.5, feature_sampling_ratio=1.0, lambda_=0.7,
                                               task=task, reduction=reduction)
              for reduction in ("none", "mean", "sum")}
    per_item = losses["none"](logits, target, features)
    assert per_item.shape == ((6, 3) if task == "multilabel" else (6,))
    penalty = losses["none"].last_terms["variance"]
    torch.testing.assert_close(per_item, 0.7 * losses["none"].last_terms["classification"] + 0.5 * penalty)
    torch.testing.assert_close(per_item.mean(), losses["mean"](logits, target, features))
    torch.testing.assert_close(losses["sum"](logits, target, features),
                               0.7 * losses["sum"].last_terms["classification"] + 0.5 * penalty)
    assert losses["sum"].last_terms["classification"].ndim == 0


def test_another_estimator_replaces_the_library_formulation_without_patching():
    calls = []

    def full_variance(feature, ratio, generator):
        calls.append(ratio)
        return feature.float().var(dim=0, unbiased=False).mean()

    features = [torch.randn(4, 2, 3, 3)]
    loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.5, lambda_=0.0, estimator=full_variance)
    total = loss(torch.randn(4, 2), torch.randint(0, 2, (4,)), features)
    assert calls == [0.5]
    torch.testing.assert_close(total, features[0].var(dim=0, unbiased=False).mean())
