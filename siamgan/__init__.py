"""siamgan: photos to paintings at any resolution with a tiled Siamese GAN."""

__version__ = "0.1.0"

from .stylize import Stylizer, TileConfig  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = ["Stylizer", "TileConfig", "TrainConfig", "train", "__version__"]
