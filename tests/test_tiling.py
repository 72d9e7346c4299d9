"""Tiled inference and the Combo model with identity and stub generators, on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from siamgan import tiling
from siamgan.images import to_pixels
from siamgan.stylize import Stylizer, TileConfig
from siamgan.tiling import blend_window, combo, merge_grid, split_grid, tiled_apply

TILE = 16



def noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def identity_stylizer() -> Stylizer:
    return Stylizer(torch.nn.Identity(), tile_size=TILE, device="cpu")


# ----------------------------------------------------------------- identity stylize

SIZES = [(1, 1), (7, 300), (300, 7), (97, 131), (16, 16), (32, 64), (80, 112), (123, 77)]


@pytest.mark.parametrize("overlap", [0, 4, 8])
@pytest.mark.parametrize("h, w", SIZES)
def test_identity_stylize_returns_rgb_input_exactly(h, w, overlap):
    pixels = noise(h, w, seed=h * 1000 + w)
    out = identity_stylizer().stylize(Image.fromarray(pixels), TileConfig(overlap=overlap))
    assert out.mode == "RGB" and out.size == (w, h)
    np.testing.assert_array_equal(np.asarray(out), pixels)


@pytest.mark.parametrize("overlap", [0, 8])
@pytest.mark.parametrize("h, w", [(1, 1), (7, 300), (97, 131)])
def test_identity_stylize_greyscale_becomes_rgb_with_equal_channels(h, w, overlap):
    grey = noise(h, w, channels=1, seed=3)
    out = identity_stylizer().stylize(Image.fromarray(grey, "L"), TileConfig(overlap=overlap))
    assert out.mode == "RGB" and out.size == (w, h)
    arr = np.asarray(out)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], grey)


@pytest.mark.parametrize("overlap", [0, 4])
@pytest.mark.parametrize("h, w", [(1, 1), (300, 7), (97, 131)])
def test_identity_stylize_rgba_keeps_alpha_exactly(h, w, overlap):
    rgba = noise(h, w, channels=4, seed=5)
    out = identity_stylizer().stylize(Image.fromarray(rgba, "RGBA"), TileConfig(overlap=overlap))
    assert out.mode == "RGBA" and out.size == (w, h)
    np.testing.assert_array_equal(np.asarray(out), rgba)


# ----------------------------------------------------------------- Combo model


def test_split_merge_round_trip_and_row_major_order():
    x = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    tiles = split_grid(x, 8)
    assert tiles.shape == (2 * 2 * 3, 3, 8, 8)
    for b in range(2):
        for r in range(2):
            for c in range(3):
                expected = x[b, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8]
                torch.testing.assert_close(tiles[b * 6 + r * 3 + c], expected, rtol=0, atol=0)
    torch.testing.assert_close(merge_grid(tiles, 2, 3), x, rtol=0, atol=0)


def test_split_grid_refuses_partial_tiles():
    with pytest.raises(ValueError, match="whole number"):
        split_grid(torch.zeros(1, 3, 16, 20), 8)
    with pytest.raises(ValueError, match="whole"):
        merge_grid(torch.zeros(5, 3, 8, 8), 2, 2)


def mark_border(tiles: torch.Tensor) -> torch.Tensor:
    """A generator that keeps each tile but sets its outermost ring of pixels to +1."""
    out = tiles.clone()
    out[..., 0, :] = 1.0
    out[..., -1, :] = 1.0
    out[..., :, 0] = 1.0
    out[..., :, -1] = 1.0
    return out


@pytest.mark.parametrize("tile", [4, 8])
def test_combo_marks_tile_borders_exactly_at_the_seams(tile):
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(3, 3, 2 * tile, 2 * tile, generator=g) * 1.8 - 0.9  # never +1
    out = combo(mark_border, crops, tile)
    assert out.shape == crops.shape
    lines = [0, tile - 1, tile, 2 * tile - 1]
    expected = torch.zeros(2 * tile, 2 * tile, dtype=torch.bool)
    expected[lines, :] = True
    expected[:, lines] = True
    marked = out == 1.0
    for b in range(3):
        for ch in range(3):
            assert torch.equal(marked[b, ch], expected)
    # Everything off the seams is the untouched input.
    torch.testing.assert_close(out[..., ~expected], crops[..., ~expected], rtol=0, atol=0)


# ----------------------------------------------------------------- feathered blending


@pytest.mark.parametrize("overlap", [0, 1, 4, 7, 8, 12, 15])
def test_feather_window_positive_and_at_most_one(overlap):
    win = blend_window(TILE, overlap)
    assert win.shape == (TILE,)
    assert (win > 0).all() and (win <= 1).all()
    if overlap:
        assert win[0] < 1 and win[-1] < 1  # really feathered at both ends
        np.testing.assert_allclose(win, win[::-1])


@pytest.mark.parametrize("overlap", [1, 2, 4, 6, 8])
def test_feather_windows_sum_to_a_constant_where_tiles_overlap(overlap):
    stride = TILE - overlap
    length = 10 * TILE
    total = np.zeros(length + TILE)
    for start in range(0, length, stride):
        total[start : start + TILE] += blend_window(TILE, overlap)
    # Away from the first and last tile every position is covered by full ramps.
    inner = total[TILE : length - TILE]
    np.testing.assert_allclose(inner, inner[0], rtol=1e-6)


@pytest.mark.parametrize("overlap", [0, 3, 8, 12, 15])
@pytest.mark.parametrize("h, w", [(1, 1), (40, 37), (17, 70)])
def test_tiled_apply_of_constant_output_is_constant_everywhere(h, w, overlap):
    """The weights are normalised at every pixel, edges and corners included."""
    def constant(x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.2)

    out = tiled_apply(noise(h, w, seed=1), constant, TILE, overlap)
    expected = to_pixels(torch.full((3, 1, 1), 0.2))[0, 0]
    assert (out == expected).all()


def per_tile_constant(calls: list[int]):
    """A stub whose output for the k-th tile it sees is the constant −0.9 + 0.2·k."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        first = sum(calls)
        calls.append(x.shape[0])
        k = torch.arange(first, first + x.shape[0], dtype=torch.float32)
        return (-0.9 + 0.2 * k)[:, None, None, None].expand_as(x).clone()
    return fn


def test_without_overlap_tile_constants_step_abruptly_at_borders():
    calls: list[int] = []
    out = tiled_apply(noise(TILE, 4 * TILE), per_tile_constant(calls), TILE, 0, batch_size=3)
    assert sum(calls) == 4
    row = out[0, :, 0].astype(int)
    steps = np.diff(row)
    seams = [TILE - 1, 2 * TILE - 1, 3 * TILE - 1]  # diff index i is between px i and i+1
    assert (steps[seams] >= 25).all()
    assert (np.delete(steps, seams) == 0).all()
    assert (out == out[:1]).all()  # a single band: every row alike


def test_with_overlap_tile_constants_blend_into_a_smooth_ramp():
    calls: list[int] = []
    overlap = 8
    out = tiled_apply(noise(TILE, 4 * TILE), per_tile_constant(calls), TILE, overlap)
    stride = TILE - overlap
    assert sum(calls) == len(tiling.tile_starts(4 * TILE, TILE, stride)) == 7
    row = out[0, :, 0].astype(int)
    steps = np.diff(row)
    assert (steps >= 0).all()  # monotonic: later tiles have larger constants
    assert steps.max() <= 5  # 25.5 per tile spread over an 8-px ramp, no jump
    assert row[-1] - row[0] >= 6 * 25  # the blend still spans all seven tile constants


# ----------------------------------------------------------------- scale


def smooth_image(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 60 * np.sin(x / 9.0) + 40 * np.cos(y / 7.0)
    g = 40 + 150 * x / w
    b = 200 - 120 * y / h
    return np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8)


def test_scale_half_resizes_back_to_input_size_close_to_input():
    pixels = smooth_image(64, 96)
    seen: list[int] = []

    class Counting(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.shape[0])
            return x

    out = Stylizer(Counting(), TILE).stylize_array(pixels, TileConfig(scale=0.5, strokes="pixel"))
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert sum(seen) == 2 * 3  # the 32×48 working image, not the 4×6 tiles of the input
    err = np.abs(out.astype(int) - pixels.astype(int))
    assert err.mean() < 3


# ----------------------------------------------------------------- memory bound


@pytest.mark.parametrize("h, w, overlap", [(64, 20000, 0), (64, 20000, 4), (2000, 64, 0)])
def test_tiled_apply_works_one_band_at_a_time(monkeypatch, h, w, overlap):
    batch_size = 7
    stride = TILE - overlap
    per_band_limit = math.ceil(w / stride)
    batches: list[int] = []
    converted: list[tuple[int, ...]] = []
    bands: list[int] = []
    rows_reported: list[int] = []
    real = tiling.to_model_range

    def spy(pixels):
        converted.append(tuple(pixels.shape))
        return real(pixels)

    monkeypatch.setattr(tiling, "to_model_range", spy)

    def fn(x: torch.Tensor) -> torch.Tensor:
        batches.append(x.shape[0])
        return x

    def on_band(rows_done: int) -> None:
        bands.append(len(batches))
        rows_reported.append(rows_done)

    pixels = np.full((h, w, 3), 77, np.uint8)
    pixels[:, ::5] = 200
    out = tiled_apply(pixels, fn, TILE, overlap, batch_size, on_band)
    np.testing.assert_array_equal(out, pixels)

    assert max(batches) <= batch_size
    band_calls = np.diff([0, *bands])
    band_tiles = [sum(batches[a:b]) for a, b in zip([0, *bands[:-1]], bands)]
    assert len(bands) == len(tiling.tile_starts(h, TILE, stride))
    assert max(band_tiles) <= per_band_limit
    assert (band_calls == math.ceil(band_tiles[0] / batch_size)).all()
    # Only one band (tile rows × padded width) is ever turned into float32.
    assert all(s[0] <= TILE and s[1] < w + TILE for s in converted)
    assert len(converted) == len(bands)
    assert rows_reported == sorted(set(rows_reported)) and rows_reported[-1] == h


@pytest.mark.parametrize("overlap, blend", [(0, "feather"), (4, "feather"), (6, "crop")])
def test_tiled_apply_on_a_device_matches_the_host_path(overlap, blend):
    # The device path (image uploaded once, bands gathered and blended in torch)
    # is exercised here with the CPU as the "device"; it must give the same bytes.
    pixels = noise(37, 53, seed=3)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")
    torch.nn.init.normal_(conv.weight, std=0.3)

    def fn(tiles: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.tanh(conv(tiles))

    host = tiled_apply(pixels, fn, TILE, overlap, 3, blend=blend)
    calls = []
    on_device = tiled_apply(pixels, fn, TILE, overlap, 3, calls.append, blend, device="cpu")
    assert isinstance(on_device, np.ndarray) and on_device.dtype == np.uint8
    np.testing.assert_array_equal(on_device, host)
    assert calls[-1] == 37


def blocky(picture: np.ndarray, on_band=None, origin=(0, 0)) -> np.ndarray:
    """A painter on a 4-px inner grid: each 4×4 block (from the picture's corner) becomes
    its mean, so a slanted edge comes out as a staircase."""
    h, w = picture.shape[:2]
    ph, pw = -h % 4, -w % 4
    p = np.pad(picture.astype(np.float32), ((0, ph), (0, pw), (0, 0)), mode="edge")
    means = p.reshape(p.shape[0] // 4, 4, p.shape[1] // 4, 4, 3).mean((1, 3))
    out = np.repeat(np.repeat(means, 4, 0), 4, 1)[:h, :w]
    if on_band is not None:
        on_band(h)
    return np.round(out).astype(np.uint8)


def slanted_edge(h: int = 40, w: int = 48) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.where(y > 0.6 * x + 5, 220, 30).astype(np.uint8)[..., None].repeat(3, 2)


def test_shift_averaged_identity_and_one_pass():
    img = noise(21, 30)
    same = tiling.shift_averaged(img, lambda p, **_: p, ((0, 0), (2, 2)))
    assert np.array_equal(same, img)  # shifted, painted, shifted back: exact
    painted = np.zeros_like(img)
    assert tiling.shift_averaged(img, lambda p, **_: painted, ((0, 0),)) is painted
    with pytest.raises(ValueError):
        tiling.shift_averaged(img, blocky, ())


def test_shift_averaged_smooths_a_grid_staircase_and_reports_once():
    edge = slanted_edge()
    one = tiling.shift_averaged(edge, blocky, ((0, 0),))
    reports = []
    two = tiling.shift_averaged(edge, blocky, ((0, 0), (2, 2)), on_band=reports.append)
    # The staircase is what depends on where the grid falls: measured against the mean
    # over every placement of the grid (a painter that no longer has one).
    every = tiling.shift_averaged(edge, blocky, [(dy, dx) for dy in range(4) for dx in range(4)])
    err = lambda out: np.abs(out.astype(float) - every).mean()  # noqa: E731
    assert err(two) < 0.7 * err(one)
    assert reports == [edge.shape[0] + 2]  # the last (shifted) pass only


def test_shift_averaged_keeps_a_noise_input_on_the_pictures_pixels():
    import functools

    # A painter that paints its noise channel: every copy must see the same noise at the
    # same picture pixel, so the mean of the shifted copies is one copy, exactly.
    grey = lambda t: (t[:, 3:] / tiling.NOISE_SCALE * 0.9).expand(-1, 3, -1, -1)  # noqa: E731
    img = noise(37, 45)
    paint = functools.partial(tiling.tiled_apply, fn=grey, tile=16, overlap=4, noise=3)
    once = tiling.shift_averaged(img, paint, ((0, 0),))
    np.testing.assert_array_equal(tiling.shift_averaged(img, paint, ((0, 0), (2, 2))), once)
    assert once.std() > 20  # it is noise, not a constant


def test_stylizer_shift_averages_only_the_magnified_rungs():
    from siamgan.stylize import GRID_SHIFTS, SHIFT_MAGNIFIED

    class Count(torch.nn.Module):  # the identity, counting the tiles it paints
        tiles = 0

        def forward(self, x):
            Count.tiles += x.shape[0]
            return x

    s = Stylizer(Count(), TILE, config={"strokes": {"picture_side": 32, "detail": 0.5}})
    t_on, t_off = TileConfig(), TileConfig(shift_average=False)
    h, w = 150, 200
    rungs = [size for size, _ in s.rungs(h, w, t_on)]
    magnified = [rh * SHIFT_MAGNIFIED <= h for rh, _ in rungs]
    assert magnified[0] and not magnified[-1]
    assert [s.shifts(rh, h, t_on) for rh, _ in rungs] == [
        GRID_SHIFTS if m else ((0, 0),) for m in magnified]
    assert all(s.shifts(rh, h, t_off) == ((0, 0),) for rh, _ in rungs)
    # The count of tiles (which batches small images) is that of the passes painted.
    for t in (t_on, t_off):
        Count.tiles = 0
        s.stylize_array(noise(h, w), t)
        assert Count.tiles == s.tile_count(h, w, t)
    assert s.tile_count(h, w, t_on) > s.tile_count(h, w, t_off)
    # A picture no larger than the paintings has one rung, at its own size: untouched.
    small = noise(30, 30)
    assert np.array_equal(s.stylize_array(small, t_on), s.stylize_array(small, t_off))
