"""The DCGAN baseline's generator and discriminator, with their config.

``arch="dcgan"`` is the seed's 5-layer pair: G maps noise of ``nz`` through
transposed convolutions (batch norm + ReLU, Tanh output) to an image; D maps
an image through strided convolutions (batch norm + LeakyReLU) to one logit.
At 96 px the first layer of D and the last of G use kernel 5, stride 3 (as the
seed's pytorch-book code does: 32 → 96 and back). ``arch="mlp"`` is seed 004's
fully connected GAN. D returns logits; the losses apply the sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DCGANConfig:
    """Everything needed to rebuild G (and D) from the JSON beside the weights.

    ``d_norm="auto"`` resolves to batch norm under the BCE loss and layer norm
    under WGAN-GP (the gradient penalty is per sample, batch norm mixes them).
    """

    image_size: int = 64  # 64 | 96
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    arch: str = "dcgan"  # dcgan | mlp
    loss: str = "bce"  # bce | wgan-gp
    d_norm: str = "auto"  # auto | batch | layer | none
    g_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.image_size not in (64, 96):
            raise ValueError(f"image_size must be 64 or 96, not {self.image_size}")
        if self.arch not in ("dcgan", "mlp"):
            raise ValueError(f"unknown arch {self.arch!r} (dcgan or mlp)")
        if self.loss not in ("bce", "wgan-gp"):
            raise ValueError(f"unknown loss {self.loss!r} (bce or wgan-gp)")
        if self.d_norm == "auto":
            self.d_norm = "layer" if self.loss == "wgan-gp" else "batch"
        if self.d_norm not in ("batch", "layer", "none"):
            raise ValueError(f"unknown d_norm {self.d_norm!r} (batch, layer or none)")
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise ValueError("WGAN-GP needs d_norm layer or none: batch norm breaks the "
                             "per-sample gradient penalty")
        if min(self.nz, self.ngf, self.ndf) < 1:
            raise ValueError("nz, ngf and ndf must be ≥ 1")
        if not 0 <= self.g_dropout < 1:
            raise ValueError("g_dropout must be in [0, 1)")


def _d_norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "layer":  # layer norm over C×H×W with a per-channel affine
        return nn.GroupNorm(1, ch)
    return nn.Identity()


def _g_block(cin: int, cout: int, kernel: int, stride: int, pad: int,
             dropout: float) -> list[nn.Module]:
    layers = [nn.ConvTranspose2d(cin, cout, kernel, stride, pad, bias=False),
              nn.BatchNorm2d(cout), nn.ReLU(True)]
    return layers + ([nn.Dropout(dropout)] if dropout else [])


class Generator(nn.Module):
    """Noise ``N×nz`` → images ``N×3×S×S`` in [-1, 1]."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.config = cfg
        s, f, p = cfg.image_size, cfg.ngf, cfg.g_dropout
        if cfg.arch == "mlp":
            widths = [cfg.nz, 2 * f, 4 * f, 8 * f, 16 * f]  # 128…1024 at ngf 64 (seed 004)
            layers: list[nn.Module] = [nn.Linear(widths[0], widths[1]), nn.ReLU(True)]
            for a, b in zip(widths[1:-1], widths[2:]):
                layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(True)]
                layers += [nn.Dropout(p)] if p else []
            layers += [nn.Linear(widths[-1], 3 * s * s), nn.Tanh()]
        else:
            last = (5, 3, 1) if s == 96 else (4, 2, 1)  # 32 → 96 or 32 → 64
            layers = [*_g_block(cfg.nz, 8 * f, 4, 1, 0, p),  # 1 → 4
                      *_g_block(8 * f, 4 * f, 4, 2, 1, p),  # → 8
                      *_g_block(4 * f, 2 * f, 4, 2, 1, p),  # → 16
                      *_g_block(2 * f, f, 4, 2, 1, 0.0),  # → 32
                      nn.ConvTranspose2d(f, 3, *last, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        if self.config.arch == "mlp":
            s = self.config.image_size
            return self.net(z).view(-1, 3, s, s)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Images ``N×3×S×S`` → real/fake logits ``N``."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.config = cfg
        s, f = cfg.image_size, cfg.ndf
        act = nn.LeakyReLU(0.2, inplace=True)
        if cfg.arch == "mlp":  # seed 004: no normalisation in D
            layers: list[nn.Module] = [
                nn.Flatten(), nn.Linear(3 * s * s, 16 * f), act,
                nn.Linear(16 * f, 4 * f), act, nn.Linear(4 * f, 1)]
        else:
            first = (5, 3, 1) if s == 96 else (4, 2, 1)  # 96 → 32 or 64 → 32
            layers = [nn.Conv2d(3, f, *first, bias=False), act]  # no norm on the input layer
            for a, b in ((f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f)):  # 32 → 16 → 8 → 4
                layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), _d_norm(cfg.d_norm, b), act]
            layers += [nn.Conv2d(8 * f, 1, 4, 1, 0, bias=False)]  # 4 → 1
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
