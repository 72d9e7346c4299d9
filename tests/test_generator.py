"""The patch generator's skip and noise input: they start at zero, load older styles,
are trained, and the tiler gives every tile one noise field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamgan import flow, pyramid
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.tiling import NOISE_SCALE, noise_field, tiled_apply
from siamgan.weights_io import WeightsError, check_style_config


def started_from_plain(**extra) -> tuple[PatchGenerator, PatchGenerator, torch.Tensor]:
    """A plain generator, one with ``extra`` started from it, and photos they paint alike."""
    torch.manual_seed(0)
    plain = PatchGenerator(GeneratorConfig(8, 1))
    grown = PatchGenerator(GeneratorConfig(8, 1, **extra))
    grown.load_from(plain)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(grown(x), plain(x))
    return plain, grown, x


def test_a_skip_generator_started_from_one_without_paints_the_same():
    plain, skip, x = started_from_plain(skip=True)
    # Once the skip is trained it changes the output, and only through full-size features.
    loss = skip(x).sum()
    loss.backward()
    assert skip.skip.weight.grad.abs().sum() > 0
    with torch.no_grad():
        skip.skip.weight.normal_(0, 0.1)
        assert not torch.allclose(skip(x), plain(x))


def test_load_from_refuses_another_architecture_and_dropping_a_skip():
    with pytest.raises(ValueError):
        PatchGenerator(GeneratorConfig(8, 1, skip=True)).load_from(
            PatchGenerator(GeneratorConfig(8, 2)))
    with pytest.raises(ValueError):
        PatchGenerator(GeneratorConfig(8, 1)).load_from(
            PatchGenerator(GeneratorConfig(8, 1, skip=True)))


def test_a_bilinear_generator_takes_a_nearest_ones_weights_and_smooths_its_blocks():
    torch.manual_seed(0)
    nearest = PatchGenerator(GeneratorConfig(8, 1))
    bilinear = PatchGenerator(GeneratorConfig(8, 1, upsample="bilinear"))
    bilinear.load_from(nearest)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, b = nearest.net[:-5](x), bilinear.net[:-5](x)  # the decoder's last upsampling
    # Nearest copies each feature into a 2×2 block; bilinear varies inside it.
    assert torch.equal(a[..., 0::2, :], a[..., 1::2, :])
    assert not torch.allclose(b[..., 0::2, :], b[..., 1::2, :])
    with pytest.raises(ValueError, match="upsampling"):
        GeneratorConfig(upsample="bicubic")


def test_style_config_accepts_a_boolean_skip_only():
    config = {"tile_size": 64, "generator": {"channels": 8, "res_blocks": 1, "skip": True}}
    check_style_config(config, "x.safetensors")
    config["generator"]["skip"] = "yes"
    with pytest.raises(WeightsError, match="generator.skip"):
        check_style_config(config, "x.safetensors")
    config["generator"].update(skip=True, upsample="cubic")
    with pytest.raises(WeightsError, match="generator.upsample"):
        check_style_config(config, "x.safetensors")


def test_noise_field_is_a_fixed_unit_variance_field_of_positions():
    rows, cols = np.arange(0, 300), np.arange(40, 360)
    field = noise_field(rows, cols, seed=0)
    assert field.shape == (300, 320) and field.dtype == np.float32
    assert abs(field.mean()) < 0.02 and field.var() == pytest.approx(1.0, abs=0.02)
    assert np.abs(field).max() <= NOISE_SCALE
    # A pixel has one value whatever window asks for it; neighbours and seeds differ.
    np.testing.assert_array_equal(noise_field(rows[100:164], cols[10:74], 0),
                                  field[100:164, 10:74])
    assert abs(np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(field.ravel(), noise_field(rows, cols, 1).ravel())[0, 1]) < 0.02


def test_a_noise_generator_started_from_one_without_paints_the_same_and_learns_noise():
    plain, noisy, x = started_from_plain(noise=True)
    noisy(x).pow(2).sum().backward()
    assert noisy.net[0].weight.grad[:, 3].abs().sum() > 0
    with pytest.raises(ValueError):
        plain.load_from(noisy)


def test_tiles_of_a_noise_generator_see_one_field_and_agree():
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(8, 1, noise=True)).eval()
    with torch.no_grad():
        gen.net[0].weight[:, 3].normal_(0, 0.5)  # the noise matters
    fn = lambda t: gen(t)  # noqa: E731
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    with torch.no_grad():
        whole = tiled_apply(picture, fn, 64, noise=0)  # one tile holds it all
        tiled = tiled_apply(picture, fn, 16, overlap=8, noise=0)
        again = tiled_apply(picture, fn, 16, overlap=8, noise=0)
        other = tiled_apply(picture, fn, 16, overlap=8, noise=1)
    np.testing.assert_array_equal(tiled, again)  # fixed, not drawn
    assert np.abs(other.astype(int) - tiled).mean() > 1  # the seed changes the strokes
    # Tiles see the same noise as the whole picture does: they differ only by the
    # context they lack, no more than a noiseless generator's tiles do.
    plain = PatchGenerator(GeneratorConfig(8, 1)).eval()
    plain.load_state_dict({k: (v[:, :3] if k == "net.0.weight" else v)
                           for k, v in gen.state_dict().items()})
    with torch.no_grad():
        gap = np.abs(tiled.astype(int) - whole).mean()
        plain_gap = np.abs(tiled_apply(picture, plain, 16, overlap=8).astype(int)
                           - tiled_apply(picture, plain, 64)).mean()
    assert gap < 2 * plain_gap + 1


def test_streaked_noise_needs_noise_and_follows_the_photos_contours():
    with pytest.raises(ValueError, match="noise"):
        GeneratorConfig(streaks=True)
    config = {"tile_size": 64, "generator": {"streaks": True}}
    with pytest.raises(WeightsError, match="streaks"):
        check_style_config(config, "x.safetensors")
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(8, 1, noise=True, streaks=True))
    rows = torch.linspace(-1, 1, 64)[:, None].expand(64, 64)
    photo = torch.sin(rows * 20)[None, None].expand(2, 3, 64, 64)  # contours along x
    noise = gen.inputs(photo)[:, 3, 8:-8, 8:-8].numpy()
    assert noise.std() == pytest.approx(1.0, abs=0.15)
    along = np.corrcoef(noise[:, :, :-2].ravel(), noise[:, :, 2:].ravel())[0, 1]
    across = np.corrcoef(noise[:, :-2].ravel(), noise[:, 2:].ravel())[0, 1]
    assert along > 0.5 and abs(across) < 0.1
    assert not np.allclose(noise[0], noise[1])  # drawn for each photo


def test_tiles_lay_streaked_noise_as_the_whole_picture_does():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    noise_out = lambda t: t[:, 3:4].repeat(1, 3, 1, 1) / 4  # noqa: E731
    field = tiled_apply(picture, noise_out, 128, noise=0, streaks=True)  # one tile
    banded = tiled_apply(picture, noise_out, 16, overlap=4, noise=0, streaks=True)
    assert np.abs(field.astype(int) - banded).max() <= 1
    expected = flow.streak_noise(pyramid.luma(picture).astype(np.float32),
                                 noise_field(np.arange(70), np.arange(90), 0))
    inner = (slice(12, -12), slice(12, -12))
    got = field.astype(np.float32)[..., 0] / 127.5 - 1
    np.testing.assert_allclose(got[inner], (expected / 4)[inner], atol=0.01)
    white = tiled_apply(picture, noise_out, 16, overlap=4, noise=0)
    assert np.abs(white.astype(int) - banded)[inner].mean() > 5
