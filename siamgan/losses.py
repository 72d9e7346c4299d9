"""Loss terms of the Siamese GAN, as short pure functions.

Notation (seed article): D maps an image to a latent vector. Real paintings B
go near the origin, translations AB at least ``margin`` away; the vector
between two inputs, D(A1) − D(A2), keeps its direction after translation.
All functions take B×L latent batches and return a scalar averaged over B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def squared_norm(vec: torch.Tensor) -> torch.Tensor:
    """‖v‖² averaged over the batch: D's loss on real B, and G's adversarial loss."""
    return vec.pow(2).sum(dim=1).mean()


def margin_loss(vec: torch.Tensor, margin: float) -> torch.Tensor:
    """max(0, m − ‖v‖)²: pushes fakes out to at least ``margin`` from the origin."""
    return F.relu(margin - vec.norm(dim=1)).pow(2).mean()


def pair_vectors(vec: torch.Tensor) -> torch.Tensor:
    """Transformation vectors D(X1) − D(X2), pairing each sample with the next one."""
    return vec - vec.roll(1, dims=0)


def transformation_cosine(va: torch.Tensor, vab: torch.Tensor) -> torch.Tensor:
    """T = 1 − cos(D(A1) − D(A2), D(AB1) − D(AB2)); 0 when parallel, 2 when opposite."""
    return (1 - F.cosine_similarity(pair_vectors(va), pair_vectors(vab), dim=1, eps=1e-8)).mean()


def transformation_mse(va: torch.Tensor, vab: torch.Tensor) -> torch.Tensor:
    """TraVeLGAN's extra term: the transformation vectors should also keep their length."""
    return (pair_vectors(va) - pair_vectors(vab)).pow(2).sum(dim=1).mean()


def hinge_d(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the optional scalar critic, discriminator side."""
    return F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()


def hinge_g(fake_score: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the optional scalar critic, generator side."""
    return -fake_score.mean()


def identity_l1(translated: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """G applied to a painting should leave it alone (keeps the palette varied)."""
    return (translated - original).abs().mean()
