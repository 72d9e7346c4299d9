"""Tests for siamgan.metrics on small seeded synthetic images (no files needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import color

from siamgan import metrics as M


def _photo(h: int = 512, w: int = 640, seed: int = 0, noise: float = 3.0) -> np.ndarray:
    """Photo-like image: smooth gradients + a smoothed random field + mild sensor noise."""
    r = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(r.standard_normal((h, w, 3)), (24, 24, 0))
    yy, xx = np.mgrid[0:h, 0:w]
    base = 110 + 40 * yy[..., None] / h + 20 * xx[..., None] / w + field / field.std() * 25
    return np.clip(base + r.normal(0, noise, base.shape), 0, 255).round().astype(np.uint8)


def _textures(n: int, seed: int, shift: float = 0.0, size: int = 64) -> list[np.ndarray]:
    r = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = ndimage.gaussian_filter(r.standard_normal((size, size, 3)), (3, 3, 0))
        img = 128 + shift + f / f.std() * 30 + r.normal(0, 2, f.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


# ------------------------------------------------------------------ SWD


def test_pyramid_shapes_and_bands() -> None:
    img = _textures(1, 0, size=67)[0]
    levels = M.laplacian_pyramid_levels(img)
    assert [lv.shape for lv in levels] == [(67, 67, 3), (34, 34, 3), (17, 17, 3)]
    assert all(lv.dtype == np.float32 for lv in levels)
    np.testing.assert_array_equal(levels[0], img.astype(np.float32))
    # Band-pass levels are roughly zero-mean, unlike the image level.
    assert abs(levels[1].mean()) < 2 and abs(levels[2].mean()) < 5
    assert levels[0].mean() > 100


def test_patch_descriptors() -> None:
    level = np.arange(20 * 30 * 3, dtype=np.float32).reshape(20, 30, 3)
    d = M.patch_descriptors(level, 50, np.random.default_rng(0))
    assert d.shape == (50, 147) and d.dtype == np.float32
    # Each row must be a contiguous 7x7 window: top-left value fixes the rest.
    first = d[:, 0]
    y, x = (first // 3) // 30, (first // 3) % 30
    for k in range(50):
        np.testing.assert_array_equal(
            d[k], level[int(y[k]) : int(y[k]) + 7, int(x[k]) : int(x[k]) + 7].ravel()
        )
    with pytest.raises(ValueError):
        M.patch_descriptors(level[:5], 3, np.random.default_rng(0))


def test_sliced_wasserstein_basic() -> None:
    r = np.random.default_rng(0)
    a = r.standard_normal((2000, 147))
    assert M.sliced_wasserstein(a, a.copy()) < 1e-9
    b = r.standard_normal((1500, 147))  # unequal sizes go through quantile resampling
    same = M.sliced_wasserstein(a, b, rng=1)
    shifted = M.sliced_wasserstein(a, b + 0.5, rng=1)
    assert same < 0.1 < shifted
    # A shift of 0.5 in every dimension projects to 0.5 * sum(u) ~ N(0, 0.25): E|.| ~ 0.4.
    assert 0.3 < shifted < 0.5
    assert M.sliced_wasserstein(a, b, rng=1) == same


def test_swd_pyramid_identical_shifted_symmetric_deterministic() -> None:
    x, y = _textures(8, 0), _textures(8, 1)
    z = _textures(8, 2, shift=25.0)
    ident = M.swd_pyramid(x, x, descriptors_per_image=64)
    assert set(ident) == {"level0", "level1", "level2", "mean"}
    assert all(v < 1e-6 for v in ident.values())
    xy = M.swd_pyramid(x, y, descriptors_per_image=64)
    yx = M.swd_pyramid(y, x, descriptors_per_image=64)
    zy = M.swd_pyramid(z, y, descriptors_per_image=64)
    assert xy == M.swd_pyramid(x, y, descriptors_per_image=64)  # deterministic
    assert abs(xy["mean"] - yx["mean"]) < 0.3 * xy["mean"]  # symmetric-ish
    # A brightness shift changes the image level strongly, the band-pass levels hardly.
    assert zy["level0"] > 3 * xy["level0"]
    assert zy["mean"] > xy["mean"]
    assert xy["mean"] == pytest.approx(np.mean([xy[f"level{i}"] for i in range(3)]))


# ------------------------------------------------------------------ colour baseline


def test_reinhard_matches_reference_stats() -> None:
    img = _photo(128, 160, seed=3)
    ref_mean, ref_std = np.array([60.0, 10.0, 20.0]), np.array([12.0, 6.0, 9.0])
    out = M.reinhard_colour_transfer(img, ref_mean, ref_std)
    assert out.shape == img.shape and out.dtype == np.uint8
    mean, std = M.colour_stats([out])
    np.testing.assert_allclose(mean, ref_mean, atol=1.0)
    np.testing.assert_allclose(std, ref_std, rtol=0.05)


def test_colour_stats_pools_images() -> None:
    a, b = _textures(2, 5)
    mean, std = M.colour_stats([a, b])
    lab = color.rgb2lab(np.concatenate([a, b])).reshape(-1, 3)
    np.testing.assert_allclose(mean, lab.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(std, lab.std(0), rtol=1e-6)


# ------------------------------------------------------------------ SSIM


def test_content_ssim() -> None:
    img = _photo(256, 320, seed=1)
    assert M.content_ssim(img, img) == pytest.approx(1.0)
    r = np.random.default_rng(0)
    noise = r.integers(0, 256, img.shape, dtype=np.uint8)
    assert M.content_ssim(img, noise) < 0.35
    # Pixel noise mostly averages out in the 4x downscale; a different layout does not.
    jitter = r.integers(-30, 31, img.shape)
    noisy = M.content_ssim(img, np.clip(img.astype(int) + jitter, 0, 255).astype(np.uint8))
    assert noisy > 0.85
    assert M.content_ssim(img, _photo(256, 320, seed=2)) < noisy - 0.1
    with pytest.raises(ValueError):
        M.content_ssim(img, img[:-4])


def test_ms_ssim() -> None:
    a, b = _textures(2, 7)
    assert M.ms_ssim(a, a) == pytest.approx(1.0)
    assert M.ms_ssim(a, b) < 0.5
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-10, 11, a.shape), 0, 255)
    assert 0.5 < M.ms_ssim(a, noisy.astype(np.uint8)) < 1.0
    assert M.mean_pairwise_ms_ssim([a, b, a], n_pairs=6, seed=0) > M.ms_ssim(a, b)
    with pytest.raises(ValueError):
        M.ms_ssim(a, b[:32])


# ------------------------------------------------------------------ seams


def _darken_columns(img: np.ndarray, every: int = 64, factor: float = 0.97) -> np.ndarray:
    out = img.astype(np.float64)
    out[:, every - 1 :: every] *= factor
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def test_seam_score_clean_photo_is_one() -> None:
    s = M.seam_score(_photo())
    assert s["score"] < 1.2 and s["x"] >= 1.0 and s["y"] >= 1.0


def test_seam_score_detects_column_seams_along_x_only() -> None:
    img = _photo()
    seamy = M.seam_score(_darken_columns(img))
    assert seamy["x"] > 1.5 and seamy["score"] == seamy["x"]
    assert seamy["y"] < 1.2
    # The transposed image moves the seams to the y axis.
    assert M.seam_score(_darken_columns(img).transpose(1, 0, 2))["y"] > 1.5


def test_seam_score_ignores_single_horizon_line() -> None:
    img = _photo().astype(np.int64)
    img[:200] += 60  # bright sky above one strong horizontal edge at row 200
    s = M.seam_score(np.clip(img, 0, 255).astype(np.uint8))
    assert s["y"] < 1.2


def test_seam_score_ignores_jpeg_blocks() -> None:
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG", quality=75)
    assert M.seam_score(np.array(Image.open(buf)))["score"] < 1.3


def test_seam_score_small_image_is_nan() -> None:
    s = M.seam_score(_photo(100, 300))  # fewer than 2 periods along y
    assert np.isnan(s["y"]) and s["score"] == s["x"]
    assert np.isnan(M.seam_score(_photo(64, 64))["score"])


# ------------------------------------------------------------------ grid level


def _soft_frame(img: np.ndarray, levels: float, period: int = 64) -> np.ndarray:
    """A brighter band, soft-edged (3 px ramps), along every tile border in x and y."""
    phase = np.arange(period)
    dist = np.minimum(phase, period - phase)  # distance to the nearest border, in px
    ramp = np.clip(1 - dist / 3, 0, 1)
    bump = np.tile(ramp, img.shape[1] // period + 1)[: img.shape[1]]
    bump_y = np.tile(ramp, img.shape[0] // period + 1)[: img.shape[0]]
    frame = levels * np.maximum(bump[None, :], bump_y[:, None])
    return np.clip(img + frame[..., None], 0, 255).round().astype(np.uint8)


def test_grid_level_of_a_clean_photo_is_small_and_a_soft_frame_is_measured() -> None:
    img = _photo()
    assert M.grid_level(img)["level"] < 1.0  # content alone: under a level
    framed = M.grid_level(_soft_frame(img.astype(np.float64), 6.0))
    assert 4.0 < framed["x"] < 7.0 and 4.0 < framed["y"] < 7.0
    # The seam score barely sees the same frame: its edges are soft.
    assert M.seam_score(_soft_frame(img.astype(np.float64), 6.0))["score"] < 1.5


def test_grid_level_ignores_large_scale_shading() -> None:
    y, x = np.mgrid[0:512, 0:1024]
    shaded = 100 + 60 * np.sin(x / 150) + 40 * np.cos(y / 90)
    img = np.repeat(shaded[..., None], 3, axis=2).round().astype(np.uint8)
    assert M.grid_level(img)["level"] < 0.3


def test_scene_palette_tells_one_palette_for_all_from_one_per_scene():
    from siamgan.metrics import scene_palette

    rng = np.random.default_rng(0)
    tints = [(20, 30, 90), (200, 180, 60), (60, 160, 70), (150, 60, 50)]
    photos = [np.clip(rng.normal(t, 15, (32, 32, 3)), 0, 255).astype(np.uint8) for t in tints]
    kept = scene_palette(photos, photos)
    assert kept["brightness"] == pytest.approx(1.0)
    assert kept["spread"] == pytest.approx(kept["photo_spread"]) and kept["spread"] > 20
    ochre = [np.full_like(p, (190, 150, 70)) for p in photos]
    same = scene_palette(photos, ochre)
    assert same["spread"] < 1e-6 and same["brightness"] == 0.0
    inverted = scene_palette(photos, [255 - p for p in photos])
    assert inverted["brightness"] < -0.9
    with pytest.raises(ValueError):
        scene_palette(photos[:1], photos[:1])
