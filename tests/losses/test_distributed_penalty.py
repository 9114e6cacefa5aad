"""The ``global`` variance scope across 2 gloo processes equals the single-process loss on the concatenated batch:
the penalty's value, the column draws call after call, and the DistributedDataParallel parameter gradients."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from pipeline.engine.distributed import end_process_group
from pipeline.losses import VariancePenalizedLoss, gather_features

WORLD = 2
BATCH = 6  # global batch; 3 rows per process
CALLS = 3  # the column draws must stay in step over several calls


class TinyNet(nn.Module):
    """Returns (logits, features): a hidden layer whose activations are penalized, and a 3-class head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features


def make_inputs():
    generator = torch.Generator().manual_seed(7)
    return [(torch.randn(BATCH, 5, generator=generator), torch.randint(0, 3, (BATCH,), generator=generator))
            for _ in range(CALLS)]


def make_loss(scope: str) -> VariancePenalizedLoss:
    return VariancePenalizedLoss(variance_weight=0.7, feature_sampling_ratio=0.5, lambda_=1.0, task="multiclass",
                                 seed=3, variance_scope=scope)


def run_steps(network: nn.Module, loss: VariancePenalizedLoss, batches, rows: slice) -> list[dict]:
    """One forward/backward per batch; the penalty, the raw feature gradient and the parameter gradients of each."""
    records = []
    for x, y in batches:
        network.zero_grad()
        logits, features = network(x[rows])
        features.retain_grad()
        loss(logits, y[rows], features=[features]).backward()
        module = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
        records.append({"penalty": loss.last_terms["variance"].clone(), "feature_grad": features.grad.clone(),
                        "grads": {name: p.grad.clone() for name, p in module.named_parameters()}})
    return records


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for scope in ("global", "local"):  # each DDP wrapper is freed before the group ends (end_process_group)
            records = run_steps(nn.parallel.DistributedDataParallel(TinyNet()), make_loss(scope), make_inputs(), rows)
            torch.save(records, f"{out_dir}/{scope}{rank}.pt")
    finally:
        end_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, spawn_processes):
    """Both scopes run by 2 gloo processes (spawned once): ``{scope: [records of rank 0, records of rank 1]}``."""
    folder = tmp_path_factory.mktemp("penalty")
    spawn_processes(_worker, (str(folder / "init"), str(folder)), WORLD)
    return {scope: [torch.load(folder / f"{scope}{rank}.pt") for rank in range(WORLD)]
            for scope in ("global", "local")}


def test_global_scope_matches_the_single_process_penalty_and_gradients(two_processes):
    reference = run_steps(TinyNet(), make_loss("local"), make_inputs(), slice(None))
    ranks = two_processes["global"]
    for step, expected in enumerate(reference):
        for rank, records in enumerate(ranks):
            got = records[step]
            # every process computes the penalty of the whole batch, with the same sampled columns
            torch.testing.assert_close(got["penalty"], expected["penalty"])
            # all_gather's backward sums every process's copy of the penalty: N times the single-process feature
            # gradient (as the classification term's mean over B/N local rows also gives) ...
            rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
            torch.testing.assert_close(got["feature_grad"], WORLD * expected["feature_grad"][rows])
            # ... and DDP's averaging over the N processes leaves exactly the single-process parameter gradients
            for name, grad in expected["grads"].items():
                torch.testing.assert_close(got["grads"][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_local_scope_penalizes_each_process_batch_and_differs_from_global(two_processes):
    ranks = two_processes["local"]
    for rank, records in enumerate(ranks):
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        expected = run_steps(TinyNet(), make_loss("local"), make_inputs(), rows)
        for got, own in zip(records, expected, strict=True):
            torch.testing.assert_close(got["penalty"], own["penalty"])
    whole = run_steps(TinyNet(), make_loss("local"), make_inputs(), slice(None))
    assert not torch.allclose(ranks[0][0]["penalty"], whole[0]["penalty"])


def test_gather_is_the_identity_without_a_process_group():
    features = [torch.ones(2, 3)]
    assert gather_features(features)[0] is features[0]


def test_an_unknown_variance_scope_is_refused():
    with pytest.raises(ValueError, match="variance_scope must be one of"):
        VariancePenalizedLoss(variance_scope="world")
