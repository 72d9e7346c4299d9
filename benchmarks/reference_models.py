"""The peers' generators, rebuilt from their papers' architecture descriptions.

Only speed and memory are measured, so weights stay random. Both networks are
written here from the published layer lists, not copied from their projects:

* :class:`ResnetGenerator`: CycleGAN's ``resnet_9blocks`` (Zhu et al., ICCV 2017,
  appendix 7.2: ``c7s1-64, d128, d256, R256 ×9, u128, u64, c7s1-3``), with
  reflection padding, instance norm without affine parameters (so convolutions
  keep their biases), ReLU and a final tanh. ngf=64 gives ~11.4 M parameters.
* :class:`TransformerNet`: Johnson et al.'s fast-neural-style network (ECCV 2016,
  supplementary: ``9×9 conv 32, 3×3/2 conv 64, 3×3/2 conv 128, 5 residual
  blocks of 128, two ×2 upsampling convs 64 and 32, 9×9 conv 3``) as people
  run it today: instance norm (Ulyanov et al.) instead of batch norm, reflection
  padding, nearest-neighbour upsampling followed by a convolution. ~1.7 M
  parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

# --- CycleGAN resnet_9blocks ---------------------------------------------------


def _c7s1(cin: int, cout: int) -> list[nn.Module]:
    """7×7 stride-1 conv on a reflection-padded input."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7)]


class CycleResBlock(nn.Module):
    """R_k: two reflection-padded 3×3 convs with instance norm, added to the input."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ``resnet_9blocks`` generator for 3-channel images (sides multiples of 4)."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_c7s1(3, ngf), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):  # d128, d256: 3×3 stride-2 convs
            layers += [nn.Conv2d(ch, 2 * ch, 3, 2, 1), nn.InstanceNorm2d(2 * ch), nn.ReLU(True)]
            ch *= 2
        layers += [CycleResBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):  # u128, u64: 3×3 fractionally strided convs
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [*_c7s1(ch, 3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# --- Johnson et al. TransformerNet ---------------------------------------------


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class JohnsonResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(True),
            _conv(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network (sides multiples of 4)."""

    def __init__(self, base: int = 32, n_blocks: int = 5) -> None:
        super().__init__()
        c = base
        self.net = nn.Sequential(
            _conv(3, c, 9), nn.InstanceNorm2d(c, affine=True), nn.ReLU(True),
            _conv(c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(True),
            _conv(2 * c, 4 * c, 3, 2), nn.InstanceNorm2d(4 * c, affine=True), nn.ReLU(True),
            *[JohnsonResBlock(4 * c) for _ in range(n_blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(4 * c, 2 * c, 3),
            nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(2 * c, c, 3),
            nn.InstanceNorm2d(c, affine=True), nn.ReLU(True),
            _conv(c, 3, 9),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
