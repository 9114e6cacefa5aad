import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler
from monai.networks.nets import resnet18

from pipeline.config import PreprocessingConfig
from pipeline.data import encode_labels, make_dataset, read_medmnist
from pipeline.losses import FeatureTap, VariancePenalizedLoss
from pipeline.networks import NETWORKS, NetworkSpec, build_network
from pipeline.transforms import preprocessing_transforms


def items(split, count):
    labels = encode_labels(split.labels[:count], "binary")
    return [{"image": image, "label": label} for image, label in zip(split.images[:count], labels, strict=True)]


def small_resnet():
    return resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)


def test_last_block_of_resnet_is_layer4_output_and_network_returns_plain_logits():
    network = small_resnet()
    seen = {}
    network.layer4.register_forward_hook(lambda module, args, output: seen.update(layer4=output))
    tap = FeatureTap(network, "last_block")
    logits = network(torch.rand(3, 1, 32, 32))
    assert type(logits) is torch.Tensor and logits.shape == (3, 2)
    assert len(tap.features) == 1
    assert tap.features[0] is seen["layer4"]


def test_last_conv_is_the_convolution_output_before_normalization():
    network = small_resnet()
    tap = FeatureTap(network, "last_conv")
    assert tap.layer_names == ["layer4.1.conv2"]
    seen = {}
    network.layer4[1].bn2.register_forward_pre_hook(lambda module, args: seen.update(bn_input=args[0]))
    network(torch.rand(2, 1, 32, 32))
    assert torch.equal(tap.features[0], seen["bn_input"])


def test_all_conv_taps_every_convolution():
    network = small_resnet()
    tap = FeatureTap(network, "all_conv")
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    network(torch.rand(2, 1, 32, 32))
    assert len(tap.features) == len(convolutions) == 20


def test_only_the_latest_pass_is_held_and_no_grad_passes_keep_nothing():
    network = small_resnet()
    tap = FeatureTap(network, ["layer1", "layer3"])
    network(torch.rand(2, 1, 32, 32))
    first = tap.features
    network(torch.rand(4, 1, 32, 32))
    assert len(tap.features) == 2 and all(f.shape[0] == 4 for f in tap.features)
    assert all(a is not b for a, b in zip(first, tap.features, strict=True))
    with torch.no_grad():
        network(torch.rand(5, 1, 32, 32))
    assert tap.features == []


def test_unknown_layer_name_lists_available_names():
    with pytest.raises(ValueError, match=r"not found in ResNet; available layers: conv1, bn1, act, .*layer4"):
        FeatureTap(small_resnet(), ["layer9"])
    with pytest.raises(ValueError, match="available layers"):
        FeatureTap(small_resnet(), "lastblock")


def test_remove_detaches_every_hook():
    network = small_resnet()
    tap = FeatureTap(network, "all_conv")
    network(torch.rand(2, 1, 32, 32))
    tap.remove()
    assert tap.features == []
    network(torch.rand(2, 1, 32, 32))
    assert tap.features == []
    assert not network._forward_pre_hooks
    assert all(not module._forward_hooks for module in network.modules())


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_tap_choice_works_for_every_network(name, spatial_dims):
    network = build_network(NetworkSpec(name, spatial_dims, in_channels=1, num_outputs=3))
    for layers in ("last_block", "last_conv", "all_conv"):
        with FeatureTap(network, layers) as tap:
            logits = network(torch.rand(2, 1, *([32] * spatial_dims)))
            loss = VariancePenalizedLoss(variance_weight=1.0, feature_sampling_ratio=0.2, task="multiclass",
                                         feature_source=tap, seed=0)
            total = loss(logits, torch.tensor([0, 2]))
            assert len(tap.features) >= 1
            assert loss.last_terms["variance"] > 0
            network.zero_grad()
            total.backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())


@pytest.mark.slow
def test_tap_inside_monai_supervised_trainer_with_evaluator_between_epochs(demo_data):
    torch.manual_seed(0)  # the network's start and the shuffle: else they depend on the tests run before in the process
    splits = read_medmnist(demo_data)
    transform = preprocessing_transforms(PreprocessingConfig(), spatial_dims=2)
    train = make_dataset(items(splits["train"], 96), transform, cache="memory")
    val = make_dataset(items(splits["val"], 32), transform, cache="memory")
    network = build_network(NetworkSpec("simplecnn", 2, 1, 1, options={"channels": (8, 8, 16, 16)}))
    tap = FeatureTap(network, "last_block")
    loss = VariancePenalizedLoss(variance_weight=0.5, feature_sampling_ratio=0.2, task="binary",
                                 feature_source=tap, seed=0)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=DataLoader(val, batch_size=16),
                                    network=network)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=2,
                                train_data_loader=DataLoader(train, batch_size=32, shuffle=True), network=network,
                                optimizer=torch.optim.Adam(network.parameters(), 1e-3), loss_function=loss,
                                train_handlers=[ValidationHandler(validator=evaluator, interval=1)])
    variances, evaluations, held_after_eval = [], [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: variances.append(loss.last_terms["variance"]))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: evaluations.append(e.state.epoch))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: held_after_eval.append(len(tap.features)))
    trainer.run()
    assert len(variances) == 6 and all(torch.isfinite(v) and v > 0 for v in variances)
    assert len(evaluations) == 2
    assert held_after_eval == [0, 0]  # evaluation keeps no activations alive
