"""siamgan: photos to paintings at any resolution with a tiled Siamese GAN."""

__version__ = "0.1.0"

from .stylize import Painter, Stylizer, TileConfig, load_stylizer  # noqa: E402

__all__ = ["Painter", "Stylizer", "TileConfig", "TrainConfig", "load_stylizer", "train",
           "__version__"]


def __getattr__(name: str):
    """Training needs torch (the full install): imported on first use, not with the package."""
    if name in ("TrainConfig", "train"):
        from . import train as module

        return getattr(module, name)
    raise AttributeError(f"module 'siamgan' has no attribute {name!r}")
