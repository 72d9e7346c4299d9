"""Property tests for tiled inference: tiling must never change what a local model computes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from siamgan.images import to_model_range, to_pixels
from siamgan.tiling import tile_starts, tiled_apply

FAST = settings(max_examples=30, deadline=None)


@st.composite
def layouts(draw, min_side: int = 1):
    """An image (H, W), a tile size (multiple of 4), an overlap in [0, tile) and a batch."""
    h = draw(st.integers(min_side, 40))
    w = draw(st.integers(min_side, 40))
    tile = 4 * draw(st.integers(1, 8))
    overlap = draw(st.integers(0, tile - 1))
    batch = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return pixels, tile, overlap, batch, seed


def whole(fn, pixels: np.ndarray) -> np.ndarray:
    """The model applied to the whole image at once: what tiling must reproduce."""
    return to_pixels(fn(to_model_range(pixels)[None]))[0]


@FAST
@given(layouts())
def test_identity_model_returns_the_input_exactly(layout):
    pixels, tile, overlap, batch, _ = layout
    calls = []

    def identity(x):
        calls.append(x.shape[0])
        return x.clone()

    out = tiled_apply(pixels, identity, tile, overlap, batch)
    np.testing.assert_array_equal(out, pixels)
    assert max(calls) <= batch


@FAST
@given(layouts())
def test_pointwise_conv_is_unchanged_by_tiling(layout):
    pixels, tile, overlap, batch, seed = layout
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(3, 3, 1, 1, generator=g) * 0.6, torch.randn(3, generator=g) * 0.2

    def conv1x1(x):
        return torch.tanh(F.conv2d(x, weight, bias))

    tiled = tiled_apply(pixels, conv1x1, tile, overlap, batch).astype(int)
    assert np.abs(tiled - whole(conv1x1, pixels).astype(int)).max() <= 1


def valid_positions(length: int, tile: int, stride: int) -> np.ndarray:
    """Positions whose 3-pixel neighbourhood lies inside every tile covering them.

    A tile edge that is also the image edge is fine: the tile's reflect padding
    there equals the whole image's.
    """
    ok = np.ones(length, bool)
    for start in tile_starts(length, tile, stride):
        end = start + tile - 1  # last position inside this tile
        if start > 0 and start < length:
            ok[start] = False
        if end < length - 1:
            ok[end] = False
    return ok


@FAST
@given(layouts(min_side=2))
def test_3x3_conv_matches_away_from_inner_tile_edges(layout):
    pixels, tile, overlap, batch, seed = layout
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(3, 3, 3, 3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.2

    def conv3x3(x):
        return torch.tanh(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias))

    tiled = tiled_apply(pixels, conv3x3, tile, overlap, batch).astype(int)
    reference = whole(conv3x3, pixels).astype(int)
    h, w = pixels.shape[:2]
    stride = tile - overlap
    mask = np.outer(valid_positions(h, tile, stride), valid_positions(w, tile, stride))
    assert np.abs(tiled - reference)[mask].max(initial=0) <= 1
    if h <= tile and w <= tile:  # a single tile: everything must match
        assert mask.all()


@FAST
@given(layouts(min_side=5), st.integers(2, 4))
def test_crop_blend_with_enough_overlap_matches_the_whole_image_everywhere(layout, radius):
    """Each kept pixel had ≥ overlap/2 px of real surroundings: a model that looks no
    further than that gives its whole-image output exactly, at tile edges too."""
    pixels, tile, _, batch, seed = layout
    overlap = 2 * radius + seed % 3
    tile = max(tile, overlap + 4 - overlap % 4)
    g = torch.Generator().manual_seed(seed)
    k = 2 * radius + 1
    weight, bias = torch.randn(3, 3, k, k, generator=g) * 0.1, torch.randn(3, generator=g) * 0.2

    def conv(x):  # sides ≥ 5 > radius, as reflect padding needs
        return torch.tanh(F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), weight, bias))

    tiled = tiled_apply(pixels, conv, tile, overlap, batch, blend="crop").astype(int)
    diff = np.abs(tiled - whole(conv, pixels).astype(int))
    # Within `radius` of the image's own edges the whole-image model sees its padding,
    # a last tile that ends just past the edge sees the tile's: not comparable there.
    inner = diff[radius:-radius, radius:-radius]
    assert inner.max(initial=0) <= 1
