"""data.cache = gpu (DeviceBatchLoader) and the ThreadDataLoader path: the same batches, in the same order, as the
plain MONAI loader for a seed; clear errors where the gpu cache cannot be used. Run on the CPU (the loader takes
any device), so what the gpu cache does with the data is checked without a GPU."""

import json
from itertools import islice

import numpy as np
import pytest
import torch
import yaml
from monai.data import ThreadDataLoader
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandGaussianNoised, ScaleIntensityRanged

import pipeline.engine.data_setup as components
from pipeline.config import load_config
from pipeline.data import DeviceBatchLoader, make_dataset, make_loader
from pipeline.data.device_cache import check_fits_on_device
from pipeline.engine import train
from pipeline.engine.data_setup import prepare_data
from pipeline.engine.resume import DataOrder
from pipeline.errors import ConfigError

SIZE, BATCH = 21, 4  # 21 % 4 == 1: the shuffled loader drops its last batch of one


def _items():
    generator = np.random.default_rng(0)
    return [{"image": generator.integers(0, 256, (1, 6, 5)).astype(np.float32), "label": np.array([index % 2.0]),
             "name": f"item{index}"} for index in range(SIZE)]


def _base():
    return Compose([EnsureTyped(keys="image"),
                    ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=-1, b_max=1)])


def _augmentation():
    return [RandFlipd(keys="image", prob=0.5, spatial_axis=0), RandGaussianNoised(keys="image", prob=0.5, std=0.1)]


def _plain(batch):
    return {key: value.as_tensor() if hasattr(value, "as_tensor") else value for key, value in batch.items()}


def _assert_same_batches(left, right, epochs=2):
    assert len(left) == len(right)
    for _ in range(epochs):
        seen = 0
        for a, b in zip(left, right, strict=True):
            a, b = _plain(a), _plain(b)
            assert a["name"] == b["name"]
            assert torch.equal(torch.as_tensor(a["label"]), torch.as_tensor(b["label"]))
            assert torch.allclose(a["image"], b["image"], atol=1e-6)
            seen += len(a["name"])
        assert seen == SIZE - 1


@pytest.mark.parametrize("augmented", [False, True])
def test_device_loader_gives_the_memory_cache_batches_in_the_same_order(augmented):
    augmentation = _augmentation() if augmented else []
    base = _base()
    memory = make_loader(make_dataset(_items(), Compose([base, *augmentation]) if augmented else base, "memory"),
                         BATCH, shuffle=True, num_workers=0, seed=3)
    device = DeviceBatchLoader(_items(), _base(), _augmentation() if augmented else [], BATCH, shuffle=True, seed=3,
                               device=torch.device("cpu"))
    first = next(iter(device))
    assert first["name"] != [f"item{index}" for index in range(BATCH)]  # shuffled
    device = DeviceBatchLoader(_items(), _base(), _augmentation() if augmented else [], BATCH, shuffle=True, seed=3,
                               device=torch.device("cpu"))
    _assert_same_batches(memory, device)


def test_device_loader_keeps_the_split_order_without_shuffling():
    loader = DeviceBatchLoader(_items(), _base(), [], 8, shuffle=False, seed=0, device=torch.device("cpu"))
    names = [name for batch in loader for name in batch["name"]]
    assert names == [f"item{index}" for index in range(SIZE)]
    assert [len(batch["name"]) for batch in loader] == [8, 8, 5]
    assert loader.nbytes == SIZE * 6 * 5 * 4 + SIZE * 8  # float32 images, float64 labels


def test_data_order_rewinds_a_device_loader_mid_epoch():
    loader = DeviceBatchLoader(_items(), _base(), [], BATCH, shuffle=True, seed=1, device=torch.device("cpu"))
    order = DataOrder(loader)
    next(iter(order))  # epoch 1 drawn; epoch 2 starts here
    epoch = [batch["name"] for batch in order]
    order.resume_mid_epoch(2)
    assert [batch["name"] for batch in order] == epoch[2:]


def test_thread_loader_gives_the_same_batches_in_the_same_order():
    dataset = make_dataset(_items(), _base(), "memory")
    threaded = make_loader(dataset, BATCH, shuffle=True, num_workers=0, seed=5, threaded=True)
    assert isinstance(threaded, ThreadDataLoader)
    plain = make_loader(dataset, BATCH, shuffle=True, num_workers=0, seed=5)
    _assert_same_batches(plain, threaded)
    assert torch.equal(plain.generator.get_state(), threaded.generator.get_state())
    with pytest.raises(ValueError, match="num_workers must be 0"):
        make_loader(dataset, BATCH, shuffle=True, num_workers=2, seed=5, threaded=True)


def test_gpu_cache_without_cuda_is_a_config_error_naming_data_cache(tmp_path, small_demo_data):
    config = load_config(_config_file(tmp_path, small_demo_data), ["data.cache=gpu"])
    for device in (None, torch.device("cpu")):
        with pytest.raises(ConfigError, match=r"data\.cache = 'gpu' needs a CUDA device.*set data\.cache = 'memory'"):
            prepare_data(config, splits=("train",), device=device)


def test_gpu_cache_with_worker_processes_is_rejected_when_the_config_is_read(tmp_path, small_demo_data):
    with pytest.raises(ConfigError, match=r"data\.cache = 'gpu'.*set data\.num_workers = 0 \(got 2\)"):
        load_config(_config_file(tmp_path, small_demo_data), ["data.cache=gpu", "data.num_workers=2"])


def test_a_split_larger_than_half_the_free_device_memory_is_refused():
    check_fits_on_device(50 * 2**20, 100 * 2**20, "train")
    with pytest.raises(ValueError, match="train split takes 51 MiB on the device, more than 50% of its 100 MiB"):
        check_fits_on_device(51 * 2**20, 100 * 2**20, "train")


def test_prepare_data_on_the_cpu_keeps_the_plain_loader(tmp_path, small_demo_data):
    config = load_config(_config_file(tmp_path, small_demo_data))
    data = prepare_data(config, splits=("train", "val"), device=torch.device("cpu"))
    assert not any(isinstance(loader, ThreadDataLoader) for loader in data.loaders.values())
    batch = next(islice(data.loaders["train"], 0, None))
    assert batch["image"].shape[0] == config.data.batch_size


def _config_file(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": str(data), "batch_size": 32},
                                    "model": {"name": "simplecnn"}, "output": {"root": str(tmp_path / "runs")}}))
    return path


@pytest.mark.slow
def test_training_from_the_device_loader_matches_the_memory_cache(tmp_path, small_demo_data, monkeypatch):
    # The gpu cache's loader, built on the CPU, driven by the real engine: same batches, so the same metrics.

    def records(run_dir):
        return [{key: value for key, value in record.items() if key != "epoch_seconds"}
                for record in json.loads((run_dir / "metrics.json").read_text())]

    settings = ["model.options={channels: [4, 4, 8, 8]}", "training.max_epochs=1", "training.progress_bar=false",
                "evaluation.splits=[]",
                "augmentation.transforms=[{name: rotate, prob: 0.5}, {name: gaussian_noise, prob: 0.5}]"]
    memory = train(load_config(_config_file(tmp_path, small_demo_data), [*settings, "output.name=memory"]))

    real_prepare = components.prepare_data
    monkeypatch.setattr(components, "prepare_data",
                        lambda config, **kwargs: real_prepare(config, **{**kwargs, "device": torch.device("cuda")}))
    monkeypatch.setattr(components, "_device_loader",
                        lambda *args: DeviceBatchLoader(*args[:4], shuffle=args[4] == "train", seed=args[5],
                                                        device=torch.device("cpu")))
    gpu = train(load_config(_config_file(tmp_path, small_demo_data), [*settings, "data.cache=gpu",
                                                                     "output.name=gpu_cache"]))
    assert records(gpu.run_dir) == records(memory.run_dir)
