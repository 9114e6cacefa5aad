"""medvp: train 2D and 3D CNNs on medical images with the variance-penalized loss, on MONAI."""

__version__ = "0.1.0"
