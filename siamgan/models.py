"""The patch generator G and the Siamese discriminator D, with their configs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .flow import streak_noise
from .pyramid import LUMA
from .tiling import NOISE_SCALE

UPSAMPLING = ("nearest", "bilinear")


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
    skip: bool = False  # full-size features reach the decoder (see PatchGenerator)
    noise: bool = False  # a fourth input channel of noise (see PatchGenerator)
    upsample: str = "nearest"  # nearest | bilinear: the decoder's two 2× upsamplings
    streaks: bool = False  # the noise laid in streaks along the photo's contours

    def __post_init__(self) -> None:
        if self.norm not in ("pixel", "none", "instance"):
            raise ValueError(f"unknown generator norm {self.norm!r}")
        if self.streaks and not self.noise:
            raise ValueError("streaks are a kind of noise input: they need noise")
        if self.upsample not in UPSAMPLING:
            raise ValueError(f"unknown generator upsampling {self.upsample!r}")
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
    patch_heads: tuple[int, ...] = ()  # depths with a patch critic (multi-scale D)

    def __post_init__(self) -> None:
        if self.latent_dim < 2 or self.layers < 1:
            raise ValueError("latent_dim must be ≥ 2 and layers ≥ 1")
        self.patch_heads = tuple(int(d) for d in self.patch_heads)
        if any(not 1 <= d <= self.layers for d in self.patch_heads):
            raise ValueError(f"patch_heads must be depths in 1..{self.layers}")


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


def _upsample(mode: str) -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode=mode,
                       align_corners=False if mode == "bilinear" else None)


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
    """Encoder (two stride-2 convs) → residual blocks at S/4 → nearest-upsample decoder.

    Everything between the first conv block and the output conv runs at S/4 or S/2,
    so without help G lays its texture on a 4-px grid of its own. ``skip`` adds the
    first block's full-size features to the decoder's last features through a 1×1
    conv that starts at zero: a style without it loads unchanged (:meth:`load_from`)
    and training decides how much full-size detail of the photo the strokes follow.

    ``noise`` gives G a fourth input channel of noise, uniform with unit variance
    (:data:`NOISE_SCALE`), so it can paint strokes in a flat sky from the noise
    rather than from the position on its grid. Given three channels, G draws the
    noise itself (training); the tiler passes a fixed field of the picture's pixel
    positions instead, so tiles agree and a picture always paints the same
    (:func:`siamgan.tiling.noise_field`). Its weights start at zero, as the skip's.

    ``streaks`` lays that noise along the photo's brightness contours
    (:func:`siamgan.flow.streak_noise`), so the texture G paints from it already follows
    the forms; the tiler lays the fixed field the same way, band by band.

    ``upsample`` is the decoder's upsampling: ``"nearest"`` copies each S/4 feature to
    a 4×4 block, which the two convs after it only partly smooth, so a magnified coarse
    painting shows the blocks along its edges; ``"bilinear"`` interpolates instead. The
    weights are the same either way, so a style can be fine-tuned from one to the other.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        c, n = cfg.channels, cfg.norm
        act = nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            _conv(4 if cfg.noise else 3, c, 7), _norm(n, c), act,
            _conv(c, 2 * c, 3, 2), _norm(n, 2 * c), act,
            _conv(2 * c, 4 * c, 3, 2), _norm(n, 4 * c), act,
            *[ResBlock(4 * c, n) for _ in range(cfg.res_blocks)],
            _upsample(cfg.upsample),
            _conv(4 * c, 2 * c, 3), _norm(n, 2 * c), act,
            _upsample(cfg.upsample),
            _conv(2 * c, c, 3), _norm(n, c), act,
            _conv(c, 3, 7), nn.Tanh(),
        )
        self.skip = nn.Conv2d(c, c, 1) if cfg.skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError("tile sides must be multiples of 4")
        x = self.inputs(x)
        if self.skip is None:
            return self.net(x)
        first = self.net[:3](x)
        return self.net[-2:](self.net[3:-2](first) + self.skip(first))

    def inputs(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` as the first conv takes it: a noise generator's three channels get a
        fourth, ``noise`` (B×1×H×W) or a fresh draw; four channels pass as they are."""
        if not self.config.noise or x.shape[1] == 4:
            return x
        if noise is None:
            noise = (torch.rand_like(x[:, :1]) * 2 - 1) * NOISE_SCALE
            if self.config.streaks:
                noise = streaks_of(x, noise)
        return torch.cat([x, noise.to(x.dtype)], dim=1)

    def load_from(self, other: PatchGenerator) -> None:
        """Take ``other``'s weights; it may lack this one's skip or noise input, which then
        start at zero, so this generator paints as ``other`` did (its upsampling may
        differ too: it has no weights)."""
        mine, theirs = self.config, other.config
        if ((mine.channels, mine.res_blocks, mine.norm) != (
                theirs.channels, theirs.res_blocks, theirs.norm)
                or (theirs.skip and not mine.skip) or (theirs.noise and not mine.noise)):
            raise ValueError(f"cannot start a generator {mine} from {theirs}")
        state = other.state_dict()
        first = state["net.0.weight"]
        if mine.noise and not theirs.noise:
            state["net.0.weight"] = torch.cat([first, first.new_zeros(first[:, :1].shape)], 1)
        self.load_state_dict(state, strict=not mine.skip or theirs.skip)


def streaks_of(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """:func:`siamgan.flow.streak_noise` of each image of ``x`` (B×3×H×W, [-1, 1]) and
    its ``noise`` (B×1×H×W), computed in NumPy; B×1×H×W float32 on ``x``'s device."""
    rgb = x[:, :3].detach().float().cpu().numpy()
    luma = np.einsum("bchw,c->bhw", rgb, LUMA)
    n = noise.detach().float().cpu().numpy()
    out = np.stack([streak_noise(g, m[0]) for g, m in zip(luma, n)])[:, None]
    return torch.from_numpy(out).to(x.device)


class SiameseDiscriminator(nn.Module):
    """Strided conv encoder → latent vector (and optionally a scalar critic).

    ``patch_heads`` adds a patch critic (a 3×3 conv to one channel) after each of
    those encoder depths: a map of real/fake scores whose receptive field grows
    with depth (about 10, 22, 46 px at depths 2, 3, 4), so D judges strokes at
    several scales as well as the whole crop (pix2pixHD; Sanakoyeu et al. 2018).
    """

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
        widths = [min(cfg.channels * 2**i, 8 * cfg.channels) for i in range(cfg.layers)]
        self.patch = nn.ModuleList(wrap(nn.Conv2d(widths[d - 1], 1, 3, 1, 1))
                                   for d in cfg.patch_heads)

    def forward(self, x: torch.Tensor, patches: bool = False):
        """The Siamese latent vector (B×latent_dim) and the critic score (B, or None);
        with ``patches``, also the list of patch-critic maps (B×1×h×w each)."""
        maps: list[torch.Tensor] = []
        h = x
        for i, layer in enumerate(self.features):
            h = layer(h)
            depth = (i + 1) // 2  # after each conv's activation
            if patches and i % 2 == 1 and depth in self.config.patch_heads:
                maps.append(self.patch[self.config.patch_heads.index(depth)](h))
        score = self.critic(h).squeeze(1) if self.critic is not None else None
        return (self.latent(h), score, maps) if patches else (self.latent(h), score)


def nce_layers(config: GeneratorConfig) -> tuple[int, ...]:
    """Where PatchNCE reads G's encoder (indices into ``PatchGenerator.net``): after the
    first conv block (full size), after each stride-2 block (½, ¼) and after the second
    residual block (or the last, if fewer)."""
    blocks = min(2, config.res_blocks)
    return (2, 5, 8) + ((8 + blocks,) if blocks else ())


def encoder_features(gen: PatchGenerator, x: torch.Tensor) -> list[torch.Tensor]:
    """G's own feature maps of ``x`` at :func:`nce_layers` (CUT's encoder; no pretrained
    network)."""
    layers = nce_layers(gen.config)
    feats, h = [], gen.inputs(x, torch.zeros_like(x[:, :1]))
    for i, layer in enumerate(gen.net[: max(layers) + 1]):
        h = layer(h)
        if i in layers:
            feats.append(h)
    return feats


class PatchNCEHead(nn.Module):
    """CUT's projection: per layer a two-layer MLP to ``dim``, L2-normalised, applied to
    the same ``patches`` random positions of two images' feature maps."""

    def __init__(self, widths: list[int], dim: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in widths)

    def forward(self, feats: list[torch.Tensor], positions: list[torch.Tensor]
                ) -> list[torch.Tensor]:
        """B×C×H×W maps → B×P×dim unit vectors at ``positions`` (flat indices per layer)."""
        out = []
        for mlp, f, pos in zip(self.mlps, feats, positions):
            flat = f.flatten(2).transpose(1, 2)[:, pos]  # B×P×C
            out.append(nn.functional.normalize(mlp(flat), dim=-1))
        return out


def nce_positions(feats: list[torch.Tensor], patches: int) -> list[torch.Tensor]:
    """Up to ``patches`` distinct random flat positions per feature map."""
    return [torch.randperm(f.shape[-2] * f.shape[-1], device=f.device)[:patches]
            for f in feats]


def encoder_widths(gen: PatchGenerator) -> list[int]:
    """Channels of each :func:`encoder_features` map."""
    with torch.no_grad():
        return [f.shape[1] for f in encoder_features(gen, torch.zeros(1, 3, 8, 8))]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
