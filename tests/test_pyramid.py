"""Stroke scale: the ladder of sizes, the band-wise composition, the Stylizer's rungs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from siamgan import pyramid
from siamgan.stylize import Stylizer, TileConfig

TILE = 16


@pytest.mark.parametrize("size", [(1600, 2560), (300, 400), (7071, 7071), (2000, 300)])
def test_ladder_starts_at_the_paintings_area_and_doubles_at_most(size):
    h, w = size
    scales = pyramid.ladder(h, w, 256)
    assert scales[-1] == 1.0
    assert scales[0] == pytest.approx(256 / math.sqrt(h * w))
    ratios = [b / a for a, b in zip(scales, scales[1:])]
    assert all(1 < r <= 2 + 1e-9 for r in ratios)
    assert len(pyramid.ladder(h, w, 256, scale=0.5)) >= len(scales)  # larger strokes


def test_ladder_of_a_small_picture_is_a_pixel_scale():
    assert pyramid.ladder(200, 200, 256) == [1.0]
    assert pyramid.ladder(100, 100, 256, scale=2.0) == [2.0]
    assert pyramid.ladder(100, 100, 256, scale=0.5) == [0.5, 1.0]  # never above the scale
    # Continuous across the paintings' size: just above it, almost the same base.
    assert pyramid.ladder(257, 257, 256, scale=0.5)[0] == pytest.approx(0.5, rel=0.01)


@pytest.mark.parametrize("size", [(150, 211), (74, 106), (37, 53), (20, 30), (12, 97)])
def test_upsample_rows_band_by_band_equals_the_whole_and_torch(size):
    """The NumPy bicubic (no torch in the light install) is torch's, up or down."""
    src = np.random.default_rng(0).random((3, 37, 53), dtype=np.float32) * 255
    h, w = size
    whole = pyramid.upsample_rows(src, h, w, (0, h))
    bands = np.concatenate([pyramid.upsample_rows(src, h, w, (r, min(h, r + 17)))
                            for r in range(0, h, 17)], axis=1)
    np.testing.assert_array_equal(whole, bands)
    np.testing.assert_array_equal(pyramid.resize_bicubic(src, h, w, band_rows=7), whole)
    expected = F.interpolate(torch.from_numpy(src)[None], size=(h, w), mode="bicubic",
                             align_corners=False)[0].numpy()
    np.testing.assert_allclose(whole, expected, atol=5e-3)  # float32 sums, values 0–255


def test_compose_keeps_the_coarse_colours_and_the_fine_detail():
    rng = np.random.default_rng(0)
    fine = rng.integers(88, 168, (64, 96, 3), dtype=np.uint8)  # detail around grey
    coarse = np.full((16, 24, 3), 200, np.uint8)  # a flat colour
    out = pyramid.compose([coarse, fine.copy()], [1.0, 1.0], band_rows=7)
    assert out.shape == fine.shape
    assert abs(out.astype(float).mean() - 200) < 3  # the coarse colour, not the fine one's 128
    flat = pyramid.compose([coarse, fine.copy()], [1.0, 0.0])
    assert np.abs(flat.astype(int) - 200).max() <= 1  # no detail: the coarse rung alone
    assert out.astype(float).std() > 10 * max(flat.astype(float).std(), 0.1)
    # A picture that is the same at every rung comes back (nearly) as it was.
    smooth = np.clip(np.linspace(0, 255, 96)[None, :, None] + np.zeros((64, 1, 3)), 0, 255)
    smooth = smooth.astype(np.uint8)
    small = np.asarray(pyramid.shrink(smooth, 32, 48))
    same = pyramid.compose([small, smooth.copy()], [1.0, 1.0])
    assert np.abs(same.astype(int) - smooth).max() <= 3


def test_compose_band_size_does_not_change_the_result():
    rng = np.random.default_rng(1)
    rungs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(10, 15, 3), (20, 29, 3),
                                                             (40, 57, 3)]]
    a = pyramid.compose([r.copy() for r in rungs], [1.0, 0.5, 0.5], band_rows=3)
    b = pyramid.compose(rungs, [1.0, 0.5, 0.5], band_rows=1000)
    assert np.array_equal(a, b)
    assert b is rungs[-1]  # written over the full-size rung, no second full-size array


class Halve(torch.nn.Module):
    """A stand-in generator: halves the brightness, and counts the pixels it paints."""

    def __init__(self):
        super().__init__()
        self.pixels = 0

    def forward(self, x):
        self.pixels += x.shape[0] * x.shape[-1] * x.shape[-2]
        return (x + 1) * 0.5 - 1


def test_stylizer_paints_every_rung_and_returns_the_input_size():
    gen = Halve()
    s = Stylizer(gen, TILE, config={"strokes": {"picture_side": 32, "detail": 0.5}})
    pixels = np.full((150, 200, 3), 160, np.uint8)
    rungs = s.rungs(150, 200, TileConfig())
    assert [size for size, _ in rungs][-1] == (150, 200)
    assert len(rungs) == len(pyramid.ladder(150, 200, 32))
    assert all(layout[2] == "crop" for _, layout in rungs[:-1])  # coarse rungs seamless
    done = []
    out = s.stylize_array(pixels, TileConfig(), on_band=done.append)
    assert out.shape == pixels.shape
    assert np.abs(out.astype(int) - 80).max() <= 1  # a flat picture stays flat, halved
    assert done == sorted(done) and done[-1] == 150
    # No detail: the full-size rung is not painted at all.
    painted = gen.pixels
    gen.pixels = 0
    s.stylize_array(pixels, TileConfig(detail=0))
    assert gen.pixels < painted / 3
    assert s.tile_count(150, 200, TileConfig()) > s.tile_count(150, 200, TileConfig(detail=0))


def test_pixel_strokes_keep_the_old_single_pass():
    s = Stylizer(Halve(), TILE, config={"strokes": {"picture_side": 32}})
    assert len(s.rungs(150, 200, TileConfig(strokes="pixel"))) == 1
    assert s.rungs(150, 200, TileConfig(strokes="pixel", scale=0.5))[0][0] == (75, 100)
    with pytest.raises(ValueError, match="strokes"):
        TileConfig(strokes="brush")


def test_stroke_scale_records_are_checked():
    from siamgan.stylize import check_strokes
    from siamgan.train import picture_side

    assert check_strokes({"picture_side": 256, "detail": 0.5})
    for bad in ({"picture_side": 0}, {"picture_side": True}, {"picture_side": 1e9},
                {"detail": -1}, {"detail": float("nan")}, {"detail": "x"}):
        with pytest.raises(ValueError):
            check_strokes(bad)
    with pytest.raises(TypeError):
        check_strokes([256])
    images = [np.zeros((256, 256, 3), np.uint8), np.zeros((200, 320, 3), np.uint8),
              np.zeros((512, 512, 3), np.uint8)]
    assert picture_side(images) == 256
