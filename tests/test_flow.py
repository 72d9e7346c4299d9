"""Stroke flow: the coarse painting's texture laid along the photo's contours."""

from __future__ import annotations

import numpy as np
import pytest

from siamgan import flow, pyramid


def stripes(h: int = 48, w: int = 64, along: str = "x") -> np.ndarray:
    """A photo whose brightness changes across ``along`` only: its contours run along it."""
    y, x = np.mgrid[:h, :w]
    across = y if along == "x" else x
    return (128 + 60 * np.sin(across / 5.0)).astype(np.uint8)


@pytest.mark.parametrize("along", ["x", "y"])
def test_stroke_directions_follow_the_contours(along):
    dy, dx = flow.stroke_directions(stripes(along=along))
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(dy**2 + dx**2, 1, atol=1e-5)
    share = np.abs(dx if along == "x" else dy)[inner]
    assert share.mean() > 0.99


def test_sample_at_whole_positions_is_the_image_and_repeats_edges():
    img = np.random.default_rng(0).random((3, 5, 7), dtype=np.float32)
    y, x = np.mgrid[:5, :7].astype(np.float32)
    np.testing.assert_allclose(flow.sample(img, y, x), img, atol=1e-6)
    outside = flow.sample(img, y * 0 - 3, x + 9)  # above and right of the picture
    np.testing.assert_allclose(outside, np.broadcast_to(img[:, :1, -1:], img.shape), atol=1e-6)
    np.testing.assert_allclose(flow.sample(img, y * 0 + 0.5, x * 0), (img[:, 0, 0] + img[:, 1, 0])
                               [:, None, None] / 2 + 0 * img, atol=1e-6)


def correlation(texture: np.ndarray, axis: int, lag: int = 2) -> float:
    a = np.moveaxis(texture, axis, 0)
    return float(np.corrcoef(a[:-lag].ravel(), a[lag:].ravel())[0, 1])


def test_lay_along_forms_turns_dabs_into_strokes_along_the_contours():
    rng = np.random.default_rng(1)
    dabs = rng.integers(70, 190, (48, 64, 3), dtype=np.uint8)  # isotropic texture
    out = flow.lay_along_forms(dabs, stripes(along="x"))
    assert out.shape == dabs.shape and out.dtype == np.uint8

    def texture(im):
        im = im.astype(np.float32).transpose(2, 0, 1)
        return (im - pyramid.box_mean(im, 1)).transpose(1, 2, 0)

    assert max(abs(correlation(texture(dabs), a)) for a in (0, 1)) < 0.1  # no direction
    after = texture(out)
    assert correlation(after, 1) > 0.6  # streaks along x, the contours' direction
    assert correlation(after, 1) > correlation(after, 0) + 0.3
    before = dabs.astype(np.float32).std()
    assert 0.5 * before < out.astype(np.float32).std() < 1.5 * before  # contrast kept
    # The colours (the 3×3 mean) stay: the mean colour is the same.
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), dabs.reshape(-1, 3).mean(0), atol=3)


def test_a_flat_painting_stays_flat():
    flat = np.full((20, 30, 3), 90, np.uint8)
    assert np.array_equal(flow.lay_along_forms(flat, stripes(20, 30)), flat)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 1), (2, 3)])
def test_pictures_a_pixel_thin_keep_their_size(size):
    rng = np.random.default_rng(6)
    painting = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    out = flow.lay_along_forms(painting, rng.integers(0, 256, size, dtype=np.uint8))
    assert out.shape == painting.shape and out.dtype == np.uint8
