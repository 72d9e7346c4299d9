"""DCGAN losses as short pure functions on D's logits.

BCE is computed on logits (``binary_cross_entropy_with_logits``), never on a
sigmoid output, so a confident D cannot produce log(0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def real_fake_targets(n: int, smoothing: float = 0.0, flip_prob: float = 0.0,
                      generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for ``n`` real and ``n`` fake samples.

    One-sided label smoothing (Salimans et al. 2016; seed 003): reals aim at
    ``1 − smoothing``, fakes stay at 0. Noisy labels: each target is swapped to
    the other side with probability ``flip_prob``.
    """
    real = torch.full((n,), 1.0 - smoothing, device=device)
    fake = torch.zeros(n, device=device)
    if flip_prob > 0:
        where = device if generator is None else generator.device
        flip_r = torch.rand(n, generator=generator, device=where).to(device) < flip_prob
        flip_f = torch.rand(n, generator=generator, device=where).to(device) < flip_prob
        real = torch.where(flip_r, torch.zeros_like(real), real)
        fake = torch.where(flip_f, torch.full_like(fake, 1.0 - smoothing), fake)
    return real, fake


def bce_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
               real_target: torch.Tensor | float = 1.0,
               fake_target: torch.Tensor | float = 0.0) -> torch.Tensor:
    """D's loss: BCE(D(x), real_target) + BCE(D(G(z)), fake_target), batch means."""
    rt = torch.as_tensor(real_target, dtype=real_logits.dtype, device=real_logits.device)
    ft = torch.as_tensor(fake_target, dtype=fake_logits.dtype, device=fake_logits.device)
    return (F.binary_cross_entropy_with_logits(real_logits, rt.expand_as(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, ft.expand_as(fake_logits)))


def bce_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: BCE(D(G(z)), 1) = −log σ(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def wgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic's loss: E[D(G(z))] − E[D(x)] (the negative Wasserstein estimate)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator's WGAN loss: −E[D(G(z))]."""
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂.

    Not yet multiplied by λ. The graph is kept so the penalty can be backpropagated.
    """
    where = real.device if generator is None else generator.device
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=where).to(real)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
