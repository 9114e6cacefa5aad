"""SimpleCNN in the original write-up's setup (benchmarks/specs/pneumoniamnist_original_setup.yaml)."""

import torch
import torch.nn.functional as F

from pipeline.config import PreprocessingConfig
from pipeline.networks import NetworkSpec, build_network
from pipeline.transforms import preprocessing_transforms


def test_the_original_setup_at_224_px_mixes_no_neighbouring_pixels_of_the_28_px_image():
    # The spec's note: the preprocessing repeats each 28-px pixel in an 8x8 block, 1x1 convolutions see one pixel
    # and each 2x2 max-pool falls inside a block, so the last block the dense head reads is the per-pixel features
    # of the 28-px image, each repeated 2x2: no spatial context, nothing the 28-px image does not hold.
    network = build_network(NetworkSpec("simplecnn", 2, 1, 1, options={
        "channels": [10, 10, 10, 10], "kernel_size": 1, "head": "flatten", "input_size": [224, 224]})).eval()
    upsample = preprocessing_transforms(PreprocessingConfig(spatial_size=[224, 224], interpolation="nearest"), 2)
    images = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float()
    upsampled = torch.stack([upsample({"image": image})["image"] for image in images])
    per_pixel = upsampled[:, :, ::8, ::8]  # the normalized 28-px image
    assert upsampled.shape == (3, 1, 224, 224)
    assert torch.equal(upsampled, F.interpolate(per_pixel, scale_factor=8, mode="nearest"))
    with torch.no_grad():
        last_block = network.features(upsampled)
        for layer in network.features:
            per_pixel = per_pixel if isinstance(layer, torch.nn.MaxPool2d) else layer(per_pixel)
    assert last_block.shape == (3, 10, 56, 56)
    assert torch.equal(last_block, F.interpolate(per_pixel, scale_factor=2, mode="nearest"))
