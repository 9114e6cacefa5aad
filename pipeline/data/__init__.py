"""Data: sources that read datasets into split arrays, and the MONAI datasets and loaders over them."""

from pipeline.data.device_cache import DeviceBatchLoader
from pipeline.data.items import (
    SPLITS,
    DatasetInfo,
    SplitItems,
    describe_dataset,
    encode_labels,
    make_dataset,
    make_loader,
)
from pipeline.data.medmnist import read_medmnist

__all__ = [
    "SPLITS",
    "DatasetInfo",
    "DeviceBatchLoader",
    "SplitItems",
    "describe_dataset",
    "encode_labels",
    "make_dataset",
    "make_loader",
    "read_medmnist",
]
