"""The patch generator G and the Siamese discriminator D, with their configs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass
class GeneratorConfig:
    """Fully convolutional S×S → S×S translator.

    ``norm`` is ``"pixel"`` by default: it normalises each pixel's feature
    vector on its own, so the output never depends on statistics of the whole
    tile and neighbouring tiles cannot disagree because of it. ``"instance"``
    is kept only to measure the seams it causes.
    """

    channels: int = 32
    res_blocks: int = 4
    norm: str = "pixel"  # pixel | none | instance

    def __post_init__(self) -> None:
        if self.norm not in ("pixel", "none", "instance"):
            raise ValueError(f"unknown generator norm {self.norm!r}")
        if self.channels < 1 or self.res_blocks < 0:
            raise ValueError("channels must be ≥ 1 and res_blocks ≥ 0")


@dataclass
class DiscriminatorConfig:
    """Siamese encoder: a 2S×2S image → a latent vector of ``latent_dim``."""

    latent_dim: int = 128
    channels: int = 32
    layers: int = 5
    spectral_norm: bool = True
    critic: bool = True  # an extra scalar real/fake head (hinge loss)

    def __post_init__(self) -> None:
        if self.latent_dim < 2 or self.layers < 1:
            raise ValueError("latent_dim must be ≥ 2 and layers ≥ 1")


class PixelNorm(nn.Module):
    """Normalise each pixel's channel vector to unit RMS (ProGAN); purely local."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "pixel":
        return PixelNorm()
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    return nn.Identity()


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, padding_mode="reflect")


class ResBlock(nn.Module):
    def __init__(self, ch: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(ch, ch, 3), _norm(norm, ch), nn.LeakyReLU(0.2),
            _conv(ch, ch, 3), _norm(norm, ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PatchGenerator(nn.Module):
    """Encoder (two stride-2 convs) → residual blocks at S/4 → nearest-upsample decoder."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        c, n = cfg.channels, cfg.norm
        act = nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            _conv(3, c, 7), _norm(n, c), act,
            _conv(c, 2 * c, 3, 2), _norm(n, 2 * c), act,
            _conv(2 * c, 4 * c, 3, 2), _norm(n, 4 * c), act,
            *[ResBlock(4 * c, n) for _ in range(cfg.res_blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(4 * c, 2 * c, 3), _norm(n, 2 * c), act,
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(2 * c, c, 3), _norm(n, c), act,
            _conv(c, 3, 7), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError("tile sides must be multiples of 4")
        return self.net(x)


class SiameseDiscriminator(nn.Module):
    """Strided conv encoder → latent vector (and optionally a scalar critic)."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DiscriminatorConfig()
        wrap = spectral_norm if cfg.spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        cin = 3
        for i in range(cfg.layers):
            cout = min(cfg.channels * 2**i, 8 * cfg.channels)
            layers += [wrap(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.latent = wrap(nn.Linear(cin * 16, cfg.latent_dim))
        self.critic = wrap(nn.Linear(cin * 16, 1)) if cfg.critic else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The Siamese latent vector (B×latent_dim) and the critic score (B, or None)."""
        h = self.features(x)
        score = self.critic(h).squeeze(1) if self.critic is not None else None
        return self.latent(h), score


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
