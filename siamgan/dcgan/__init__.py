"""The DCGAN anime-face baseline: models, losses, training and sampling."""

from .models import DCGANConfig, Discriminator, Generator
from .sample import load_generator, sample_grid
from .train import DCGANTrainConfig, train_dcgan

__all__ = ["DCGANConfig", "DCGANTrainConfig", "Discriminator", "Generator", "load_generator",
           "sample_grid", "train_dcgan"]
