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


def test_box_mean_is_the_window_mean_with_edges_repeated():
    x = np.random.default_rng(2).random((2, 9, 13), dtype=np.float32) * 255
    r = 2
    p = np.pad(x, ((0, 0), (r, r), (r, r)), mode="edge")
    brute = np.stack([[[p[c, i:i + 2 * r + 1, j:j + 2 * r + 1].mean() for j in range(13)]
                       for i in range(9)] for c in range(2)])
    np.testing.assert_allclose(pyramid.box_mean(x, r), brute, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(pyramid.box_mean(x, 0), x)


def staircase_scene(block: int, h: int = 192, w: int = 256, factor: int = 8):
    """A photo with a slanted edge, its copy shrunk ``factor``×, a coarse 'painting' of
    that copy on a ``block``-px grid (each block its mean, in an orange palette), which
    enlarged is a staircase, and the same painter without a grid at full size."""
    y, x = np.mgrid[:h, :w]
    photo = np.where(y > 0.55 * x + 10, 210, 40).astype(np.uint8)[..., None].repeat(3, 2)
    small = pyramid.shrink(photo, h // factor, w // factor)
    sh, sw = small.shape[:2]
    blocks = small.astype(np.float32).reshape(sh // block, block, sw // block, block, 3)
    blocky = np.repeat(np.repeat(blocks.mean((1, 3)), block, 0), block, 1)
    colour = np.array([0.9, 0.6, 0.3], np.float32)
    painting = np.clip(np.round(blocky * colour), 0, 255).astype(np.uint8)
    return photo, small, painting, photo.astype(np.float32) * colour


@pytest.mark.parametrize("block,gain", [(1, 0.2), (2, 0.6)])
def test_guided_enlargement_takes_the_photos_edges_not_the_grids_steps(block, gain):
    """Enlarged 8×, a painting's edge is blurred (no grid) or a staircase (2-px steps,
    what shift averaging leaves of the generator's 4-px grid); guided by the photo it
    is much closer to the painter's own edge at full size."""
    photo, small, painting, ideal = staircase_scene(block)
    blank = np.zeros_like(photo)
    plain = pyramid.compose([painting, blank.copy()], [1.0, 0.0])
    guides = [pyramid.luma(small), pyramid.luma(photo)]
    guided = pyramid.compose([painting, blank.copy()], [1.0, 0.0], guides=guides)
    err = lambda out: np.abs(out.astype(np.float32) - ideal).mean()  # noqa: E731
    assert err(guided) < gain * err(plain)
    again = pyramid.compose([painting, blank.copy()], [1.0, 0.0], band_rows=5, guides=guides)
    assert np.array_equal(again, guided)  # band by band as a whole
    with pytest.raises(ValueError, match="guide"):
        pyramid.compose([painting, photo.copy()], [1.0, 0.5], guides=guides[:1])


def test_guided_enlargement_keeps_the_paintings_dabs_where_the_photo_is_flat():
    rng = np.random.default_rng(3)
    dabs = rng.integers(60, 200, (24, 32, 3), dtype=np.uint8)  # texture the photo lacks
    flat_small = np.full((24, 32), 128, np.uint8)
    flat_big = np.full((96, 128), 128, np.uint8)
    blank = np.zeros((96, 128, 3), np.uint8)
    plain = pyramid.compose([dabs, blank.copy()], [1.0, 0.0])
    guided = pyramid.compose([dabs, blank.copy()], [1.0, 0.0], guides=[flat_small, flat_big])
    assert np.abs(guided.astype(int) - plain).max() <= 1  # a flat photo: a plain enlargement
    a, b = pyramid.guided_coefficients(dabs.transpose(2, 0, 1).astype(np.float32), flat_small)
    assert np.abs(a).max() == 0
    np.testing.assert_allclose(b, dabs.transpose(2, 0, 1), atol=1e-3)


def test_guided_coefficients_band_by_band_equal_the_whole():
    rng = np.random.default_rng(5)
    base = rng.random((3, 23, 17), dtype=np.float32) * 255
    guide = rng.integers(0, 256, (23, 17), dtype=np.uint8)
    whole = pyramid.guided_coefficients(base, guide, band_rows=1000)
    for band in (1, 4, 9):
        for got, want in zip(pyramid.guided_coefficients(base, guide, band_rows=band), whole):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2)


def steps_along_edge(img: np.ndarray) -> float:
    """How much a picture of :func:`staircase_scene`'s edge varies along lines parallel
    to it, 2–3 px to either side (red channel): 0 for a straight edge, large for a
    staircase."""
    from siamgan.flow import sample

    x = np.arange(20, 160, 0.25, dtype=np.float32)
    red = img.astype(np.float32).transpose(2, 0, 1)[:1]
    return float(np.mean([sample(red, 0.55 * x + 10 + d, x).std() for d in (-3, -2, 2, 3)]))


def test_snap_to_photo_moves_a_rungs_steps_onto_the_photos_edge():
    """At the same size: a painting with 4-px steps along a slanted edge comes out with
    a straight edge."""
    photo, _, _, ideal = staircase_scene(1, factor=1)
    blocks = photo.astype(np.float32).reshape(48, 4, 64, 4, 3).mean((1, 3))
    painting = np.round(np.repeat(np.repeat(blocks, 4, 0), 4, 1) * [0.9, 0.6, 0.3])
    painting = painting.astype(np.uint8)
    snapped = pyramid.snap_to_photo(painting, pyramid.luma(photo))
    assert steps_along_edge(ideal) < 1
    assert steps_along_edge(snapped) < 0.2 * steps_along_edge(painting)
    again = pyramid.snap_to_photo(painting, pyramid.luma(photo), band_rows=7)
    assert np.abs(again.astype(int) - snapped).max() <= 1  # band by band as the whole
    # A flat photo has no forms to give: the painting's local mean by default, the
    # painting itself when what the fit leaves out is kept in flat areas.
    flat = np.full(photo.shape[:2], 100, np.uint8)
    mean = pyramid.box_mean(pyramid.box_mean(painting.astype(np.float32).transpose(2, 0, 1),
                                             4), 4).transpose(1, 2, 0)
    assert np.abs(pyramid.snap_to_photo(painting, flat).astype(int) - mean).max() <= 1
    kept = pyramid.snap_to_photo(painting, flat, edge=900.0)
    assert np.abs(kept.astype(int) - painting).max() <= 1


def test_luma_is_the_brightness():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    assert pyramid.luma(px).tolist() == [[76, 150, 29, 90]]


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


def test_photo_edges_sharpen_the_magnified_rungs_only():
    """A picture with a slanted edge: the stand-in generator keeps it, so the output of a
    guided enlargement is closer to the halved picture than a bicubic one, and a picture
    no larger than the paintings (one rung) is the same either way."""
    s = Stylizer(Halve(), TILE, config={"strokes": {"picture_side": 32, "detail": 0.5}})
    y, x = np.mgrid[:150, :200]
    pixels = np.where(y > 0.6 * x + 10, 220, 40).astype(np.uint8)[..., None].repeat(3, 2)
    halved = pixels.astype(float) / 2
    on = s.stylize_array(pixels, TileConfig())
    off = s.stylize_array(pixels, TileConfig(photo_edges=False))
    assert np.abs(on - halved).mean() < 0.8 * np.abs(off - halved).mean()
    small = pixels[:30, :30].copy()
    assert np.array_equal(s.stylize_array(small, TileConfig()),
                          s.stylize_array(small, TileConfig(photo_edges=False)))


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


def test_flow_changes_only_a_magnified_coarse_painting():
    class Dabs(torch.nn.Module):
        """A stand-in generator that adds a fixed texture (a function of the input)."""

        def forward(self, x):
            return (x + 0.3 * torch.sin(40 * x.mean(1, keepdim=True))).clamp(-1, 1)

    s = Stylizer(Dabs(), TILE, config={"strokes": {"picture_side": 32, "detail": 0.5}})
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    on = s.stylize_array(pixels, TileConfig())
    off = s.stylize_array(pixels, TileConfig(flow=False))
    assert on.shape == off.shape and np.abs(on.astype(int) - off).mean() > 1
    small = pixels[:30, :30].copy()  # one rung, not magnified: no flow
    assert np.array_equal(s.stylize_array(small, TileConfig()),
                          s.stylize_array(small, TileConfig(flow=False)))
    pixel = TileConfig(strokes="pixel", scale=0.2)  # the old reading: no flow, no guides
    assert np.array_equal(s.stylize_array(pixels, pixel),
                          s.stylize_array(pixels, TileConfig(strokes="pixel", scale=0.2,
                                                             flow=False, photo_edges=False)))
