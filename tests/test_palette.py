"""The palette match: Lab conversions, the transfer itself, styles that record a palette."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import folder
from skimage import color
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.metrics import colour_stats, seam_score
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.palette import Palette, lab_stats, lab_to_rgb, match_palette, rgb_to_lab
from siamgan.stylize import Stylizer, TileConfig, load_style
from siamgan.weights_io import WeightsError, load_weights, save_weights

PAINTINGS = Palette((55.0, 8.0, 25.0), (20.0, 12.0, 18.0), 0.5)


def smooth_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth, mid-saturation image: gradients in every channel plus mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([90 + 80 * x, 110 + 60 * y, 70 + 50 * (x + y) / 2], axis=-1)
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_lab_conversion_matches_skimage_and_round_trips():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_lab(img), color.rgb2lab(img), atol=1e-3)  # NumPy
    np.testing.assert_array_equal(lab_to_rgb(rgb_to_lab(img)), img)
    lab = color.rgb2lab(img) * [1.0, 1.6, 1.6] + [15.0, 0.0, 0.0]  # some out of gamut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.clip(np.round(color.lab2rgb(lab) * 255), 0, 255)
    got = lab_to_rgb(lab.astype(np.float32)).astype(int)
    assert np.abs(got - expected).max() <= 1


def test_strength_zero_is_the_identity_and_one_gives_the_paintings_statistics():
    img = smooth_image()
    assert match_palette(img, PAINTINGS, 0.0) is img
    full = match_palette(img, PAINTINGS, 1.0)
    mean, std = lab_stats(full)
    np.testing.assert_allclose(mean, PAINTINGS.lab_mean, atol=1.0)
    np.testing.assert_allclose(std, PAINTINGS.lab_std, rtol=0.05)


def test_half_strength_lies_between_the_image_and_the_paintings():
    img = smooth_image()
    before, _ = lab_stats(img)
    half, _ = lab_stats(match_palette(img, PAINTINGS, 0.5))
    target = np.asarray(PAINTINGS.lab_mean)
    np.testing.assert_allclose(half, (before + target) / 2, atol=1.0)
    assert np.abs(half - target).sum() < np.abs(before - target).sum()


def test_blocks_of_rows_give_the_same_result_as_one_block():
    img = smooth_image(70, 40)
    expected = match_palette(img, PAINTINGS, 0.7, rows=1000)
    np.testing.assert_array_equal(match_palette(img, PAINTINGS, 0.7, rows=7), expected)
    copy = img.copy()
    assert match_palette(copy, PAINTINGS, 0.7, rows=7, in_place=True) is copy
    np.testing.assert_array_equal(copy, expected)


def test_the_palette_adds_no_seam():
    img = smooth_image(256, 512, seed=3)
    out = match_palette(img, PAINTINGS, 1.0)
    assert seam_score(out, 64)["score"] == pytest.approx(seam_score(img, 64)["score"], abs=0.05)


def test_pooled_palette_of_a_collection_matches_skimage():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (30 + 5 * i, 40, 3), dtype=np.uint8) for i in range(3)]
    palette = Palette.from_images(images)
    mean, std = colour_stats(images)
    np.testing.assert_allclose(palette.lab_mean, mean, atol=1e-3)
    np.testing.assert_allclose(palette.lab_std, std, atol=1e-3)


@pytest.mark.parametrize("kwargs", [dict(lab_std=(1.0, 0.0, 1.0)), dict(strength=1.5),
                                    dict(lab_mean=(1.0, 2.0))])
def test_bad_palettes_are_refused(kwargs):
    with pytest.raises(ValueError):
        Palette(**{"lab_mean": (50.0, 0.0, 0.0), "lab_std": (1.0, 1.0, 1.0), **kwargs})


def test_stylizer_applies_the_styles_palette_unless_told_otherwise():
    img = smooth_image()
    s = Stylizer(Identity(), 16, "cpu", {"palette": PAINTINGS.to_dict()})
    assert s.palette_strength() == 0.5
    np.testing.assert_array_equal(s.stylize_array(img, TileConfig(palette=0.0)), img)
    default = s.stylize_array(img)
    np.testing.assert_array_equal(default, match_palette(img, PAINTINGS, 0.5))
    np.testing.assert_array_equal(s.stylize_arrays([img, img[:40]])[0], default)
    assert not np.array_equal(s.stylize_array(img, TileConfig(palette=1.0)), default)
    plain = Stylizer(Identity(), 16, "cpu")  # a style without a palette: nothing to match
    np.testing.assert_array_equal(plain.stylize_array(img, TileConfig(palette=1.0)), img)
    with pytest.raises(ValueError):
        TileConfig(palette=-0.1)


def tiny_style(tmp_path, config: dict | None = None):
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(4, 1))
    cfg = {"kind": "style", "name": "tiny", "tile_size": 16, "generator": {
        "channels": 4, "res_blocks": 1, "norm": "pixel"}, **(config or {})}
    return save_weights(tmp_path / "tiny.safetensors", gen.state_dict(), cfg), gen


def test_palette_command_records_the_paintings_and_keeps_the_weights(tmp_path):
    src, gen = tiny_style(tmp_path)
    paintings = folder(tmp_path / "paintings", 3, seed=2)
    out = tmp_path / "with-palette.safetensors"
    r = CliRunner().invoke(app, ["palette", "--style", str(src), "--paintings",
                                 str(paintings), "-o", str(out), "--strength", "0.3"])
    assert r.exit_code == 0, r.output
    tensors, cfg = load_weights(out)
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(tensors[k], v)
    assert cfg["palette"]["strength"] == 0.3 and cfg["palette"]["images"] == 3
    assert cfg["name"] == "with-palette" and cfg["generator"]["channels"] == 4
    assert json.loads(out.with_suffix(".json").read_text())["palette"] == cfg["palette"]
    assert Stylizer.from_style(str(out), "cpu").palette_strength() == 0.3
    r = CliRunner().invoke(app, ["palette", "--style", str(src), "--paintings",
                                 str(tmp_path / "empty"), "-o", str(out)])
    assert r.exit_code == 2


def test_a_style_with_a_broken_palette_is_refused(tmp_path):
    path, _ = tiny_style(tmp_path, {"palette": {"lab_mean": [50, 0, 0], "lab_std": [0, 1, 1]}})
    with pytest.raises(WeightsError, match="palette"):
        load_style(path)
