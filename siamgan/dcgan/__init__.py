"""The DCGAN anime-face baseline: models, losses, training and sampling (full install)."""

from importlib import import_module

_WHERE = {"DCGANConfig": "models", "Discriminator": "models", "Generator": "models",
          "load_generator": "sample", "sample_grid": "sample",
          "DCGANTrainConfig": "train", "train_dcgan": "train"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Imported on first use: `siamgan dcgan`'s command line loads without torch."""
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
