"""Evaluation metrics: pyramid sliced Wasserstein distance, colour baseline, SSIM, seam score,
scene palette.

All functions take numpy ``uint8`` RGB images of shape ``(H, W, 3)`` unless noted, and are pure
numpy / scipy / scikit-image so they run anywhere the package does (no GPU needed).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.metrics import structural_similarity
from skimage.transform import downscale_local_mean

# 5-tap binomial kernel used by ProGAN's SWD pyramid (separable form of their 5x5 / 256).
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0
# Wang et al. 2003 MS-SSIM scale weights, finest scale first.
_MS_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
_SSIM_SIGMA, _SSIM_RADIUS = 1.5, 5  # 11-tap gaussian window of Wang et al. 2004


def _check_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be an H x W x 3 RGB array, got shape {img.shape}")
    return img


def _luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 255] (float64), the same Y that JPEG encodes."""
    rgb = _check_rgb(img).astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------- SWD


def _pyr_down(x: np.ndarray) -> np.ndarray:
    for axis in (0, 1):
        x = ndimage.convolve1d(x, _BINOMIAL, axis=axis, mode="mirror")
    return x[::2, ::2]


def _pyr_up(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    up = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]), dtype=x.dtype)
    up[::2, ::2] = x
    # Kernel x2 per axis (x4 in 2-D) restores the energy lost to the inserted zeros.
    for axis in (0, 1):
        up = ndimage.convolve1d(up, 2.0 * _BINOMIAL, axis=axis, mode="mirror")
    return up[: shape[0], : shape[1]]


def laplacian_pyramid_levels(img: np.ndarray) -> list[np.ndarray]:
    """Three float32 ``(h, w, 3)`` levels of an RGB image, values on the [0, 255] scale.

    With ``G0`` = the image, ``G{k+1} = down(blur(Gk))`` (5-tap binomial, stride 2, mirror edges)
    and ``up`` = zero-insertion + the same blur (ProGAN's ``pyr_down`` / ``pyr_up``):

    * level 0 = ``G0``, the image itself (colour + fine texture, full resolution);
    * level 1 = ``G1 - up(G2)``, the Laplacian band at 1/2 resolution;
    * level 2 = ``G2 - up(G3)``, the Laplacian band at 1/4 resolution.

    The value scale does not matter for :func:`swd_pyramid`, which standardises descriptors.
    """
    g0 = _check_rgb(img).astype(np.float32)
    g1 = _pyr_down(g0)
    g2 = _pyr_down(g1)
    g3 = _pyr_down(g2)
    return [g0, g1 - _pyr_up(g2, g1.shape), g2 - _pyr_up(g3, g2.shape)]


def patch_descriptors(
    level: np.ndarray, n: int, rng: np.random.Generator, patch: int = 7
) -> np.ndarray:
    """``n`` random ``patch x patch x C`` neighbourhoods (uniform positions, with replacement).

    Returns a float32 array ``(n, patch * patch * C)``, i.e. ``(n, 147)`` for 7x7 RGB patches.
    """
    h, w = level.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"level {level.shape} is smaller than the {patch}x{patch} patch")
    ys = rng.integers(0, h - patch + 1, size=n)
    xs = rng.integers(0, w - patch + 1, size=n)
    offs = np.arange(patch)
    # Fancy indexing gathers all patches at once: (n, patch, patch, C).
    out = level[(ys[:, None] + offs)[:, :, None], (xs[:, None] + offs)[:, None, :]]
    return out.reshape(n, -1).astype(np.float32)


def _resample_sorted(s: np.ndarray, m: int) -> np.ndarray:
    """Linearly interpolate sorted columns ``s`` (n, d) at ``m`` evenly spaced quantiles."""
    n = s.shape[0]
    if n == m:
        return s
    pos = np.clip((np.arange(m) + 0.5) * n / m - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo)[:, None]
    return s[lo] * (1 - w) + s[hi] * w


def sliced_wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    n_projections: int = 512,
    rng: np.random.Generator | int | None = None,
) -> float:
    """Sliced Wasserstein-1 distance between descriptor sets ``a`` (n, d) and ``b`` (m, d).

    Projects both sets on ``n_projections`` random unit directions, sorts each projection and
    returns the mean absolute difference of the sorted values (over samples and directions).
    Unequal set sizes are compared on ``max(n, m)`` interpolated quantiles. ``rng=None`` means
    seed 0, so the result is deterministic by default.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor sets must be (n, d) with equal d: {a.shape}, {b.shape}")
    dirs = rng.standard_normal((a.shape[1], n_projections)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    m, total = max(len(a), len(b)), 0.0
    for i in range(0, n_projections, 128):  # chunks bound memory at (m, 128) floats
        pa = _resample_sorted(np.sort(a @ dirs[:, i : i + 128], axis=0), m)
        pb = _resample_sorted(np.sort(b @ dirs[:, i : i + 128], axis=0), m)
        total += float(np.abs(pa - pb).astype(np.float64).sum())
    return total / (m * n_projections)


def swd_pyramid(
    images_x: list[np.ndarray],
    images_y: list[np.ndarray],
    descriptors_per_image: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Multi-scale SWD (Karras et al. 2018) between image sets X (e.g. outputs) and Y (paintings).

    For each level of :func:`laplacian_pyramid_levels`, ``descriptors_per_image`` random 7x7
    patches are drawn per image (the same seeded position stream for X and Y, so identical sets
    give exactly 0). Both sets are standardised per dimension with the mean/std of Y's
    descriptors (Y is the reference) and compared with :func:`sliced_wasserstein` (512
    directions). Values are multiplied by 1e3 as in ProGAN, so two independent samples of one
    distribution give tens, not ~0. Returns ``{"level0", "level1", "level2", "mean"}``, where
    ``mean`` averages the three levels. Deterministic given ``seed``.
    """
    if not images_x or not images_y:
        raise ValueError("both image sets must be non-empty")
    # Both sets draw patch positions from identically seeded streams (common random numbers):
    # identical sets then give exactly 0, and X-vs-Y differences are not sampling noise alone.
    rng_d = np.random.default_rng([seed, 1])

    def describe(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        per_level: list[list[np.ndarray]] = [[], [], []]
        for img in images:
            for lv, band in enumerate(laplacian_pyramid_levels(img)):
                per_level[lv].append(patch_descriptors(band, descriptors_per_image, rng))
        return [np.concatenate(d) for d in per_level]

    dx = describe(images_x, np.random.default_rng([seed, 0]))
    dy = describe(images_y, np.random.default_rng([seed, 0]))
    out: dict[str, float] = {}
    for lv in range(3):
        mean = dy[lv].mean(axis=0)
        std = np.maximum(dy[lv].std(axis=0), 1e-8)
        a, b = (dx[lv] - mean) / std, (dy[lv] - mean) / std
        out[f"level{lv}"] = 1e3 * sliced_wasserstein(a, b, 512, rng_d)
    out["mean"] = float(np.mean([out[f"level{lv}"] for lv in range(3)]))
    return out


# --------------------------------------------------------------------------- colour baseline


def colour_stats(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel CIE-Lab mean and std, pooled over all pixels of all images: two (3,) arrays."""
    n, s, ss = 0, np.zeros(3), np.zeros(3)
    for img in images:  # running sums: no need to hold every image's Lab copy at once
        lab = color.rgb2lab(_check_rgb(img)).reshape(-1, 3)
        n, s, ss = n + len(lab), s + lab.sum(0), ss + (lab**2).sum(0)
    if n == 0:
        raise ValueError("no images given")
    mean = s / n
    return mean, np.sqrt(np.maximum(ss / n - mean**2, 0.0))


def reinhard_colour_transfer(
    img: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray
) -> np.ndarray:
    """Reinhard et al. 2001 colour transfer in CIE-Lab (skimage), returning uint8 RGB.

    Each Lab channel of ``img`` is standardised with the image's own mean/std and re-scaled to
    ``ref_mean`` / ``ref_std`` (from :func:`colour_stats`); out-of-gamut colours are clipped.
    """
    lab = color.rgb2lab(_check_rgb(img))
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    lab = (lab - mean) / np.maximum(std, 1e-6) * np.asarray(ref_std) + np.asarray(ref_mean)
    with warnings.catch_warnings():  # clipping negative Z is expected for out-of-gamut colours
        warnings.simplefilter("ignore")
        rgb = color.lab2rgb(lab)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- SSIM


def scene_palette(photos: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Whether a style's palette changes with the scene, over pictures of several scenes.

    ``brightness``: the Pearson correlation between each photo's mean brightness (BT.601)
    and its output's, near 1 when a night photo stays darker than a day one.
    ``spread``: how far the outputs' mean colours (CIELAB a*, b*, each picture's mean)
    lie apart, as the root of their summed variance over pictures: 0 when every scene
    gets the same palette. ``photo_spread`` is the same for the photos.
    """
    if len(photos) != len(outputs) or len(photos) < 2:
        raise ValueError("scene_palette needs two or more photos, each with an output")

    def means(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        bright = np.array([_luma(im).mean() for im in images])
        ab = np.array([color.rgb2lab(_check_rgb(im))[..., 1:].mean(axis=(0, 1))
                       for im in images])
        return bright, ab

    (b_in, ab_in), (b_out, ab_out) = means(photos), means(outputs)
    flat = b_in.std() == 0 or b_out.std() == 0
    return {"brightness": 0.0 if flat else float(np.corrcoef(b_in, b_out)[0, 1]),
            "spread": float(np.sqrt(ab_out.var(axis=0).sum())),
            "photo_spread": float(np.sqrt(ab_in.var(axis=0).sum()))}


def content_ssim(inp: np.ndarray, out: np.ndarray) -> float:
    """SSIM of BT.601 luma of ``inp`` and ``out`` after 4x box-downscaling.

    The downscale keeps only layout (what stylisation should preserve), not brush texture.
    Uses Wang et al.'s 11-tap gaussian window (sigma 1.5, data range 255); images whose
    downscaled side is under 11 px fall back to the largest odd uniform window (>= 3).
    """
    if np.shape(inp) != np.shape(out):
        raise ValueError(f"images differ in size: {np.shape(inp)} vs {np.shape(out)}")
    ya, yb = _luma(inp), _luma(out)
    h, w = (ya.shape[0] // 4) * 4, (ya.shape[1] // 4) * 4  # crop: avoid zero-padded edges
    ya = downscale_local_mean(ya[:h, :w], (4, 4))
    yb = downscale_local_mean(yb[:h, :w], (4, 4))
    side = min(ya.shape)
    if side >= 2 * _SSIM_RADIUS + 1:
        kw = {"gaussian_weights": True, "sigma": _SSIM_SIGMA, "use_sample_covariance": False}
    elif side >= 3:
        kw = {"win_size": side - 1 + side % 2}
    else:
        raise ValueError("images too small for content_ssim (need at least 12 px per side)")
    return float(structural_similarity(ya, yb, data_range=255.0, **kw))


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean luminance term l and contrast-structure term cs of 2-D float images (range 255)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        f = ndimage.gaussian_filter(z, _SSIM_SIGMA, truncate=3.5, mode="reflect")
        r = _SSIM_RADIUS  # keep only 'valid' positions, like Wang's reference code
        return f[r:-r, r:-r]

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return float(lum.mean()), float(cs.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003) of two same-sized uint8 RGB images, in [0, 1].

    Computed per RGB channel with an 11-tap gaussian window (sigma 1.5) and averaged over
    channels (as tf.image.ssim_multiscale). Uses up to 5 scales (2x2 box downsampling between
    them) but only as many as keep every side >= 11 px, e.g. 3 scales for 64x64; the standard
    weights of the scales used are renormalised to sum to 1. Negative terms are clipped to 0.
    """
    a, b = _check_rgb(a, "a").astype(np.float64), _check_rgb(b, "b").astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    win, side, scales = 2 * _SSIM_RADIUS + 1, min(a.shape[:2]), 0
    while scales < 5 and side >= win:
        scales, side = scales + 1, side // 2
    if scales == 0:
        raise ValueError(f"images must be at least {win} px per side")
    weights = _MS_SSIM_WEIGHTS[:scales] / _MS_SSIM_WEIGHTS[:scales].sum()
    per_channel = []
    for c in range(3):
        x, y, value = a[..., c], b[..., c], 1.0
        for s in range(scales):
            lum, cs = _ssim_terms(x, y)
            value *= max(cs, 0.0) ** weights[s]
            if s == scales - 1:
                value *= max(lum, 0.0) ** weights[s]
            else:
                h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
                x = downscale_local_mean(x[:h, :w], (2, 2))
                y = downscale_local_mean(y[:h, :w], (2, 2))
        per_channel.append(value)
    return float(np.mean(per_channel))


def mean_pairwise_ms_ssim(images: list[np.ndarray], n_pairs: int, seed: int = 0) -> float:
    """Mean MS-SSIM over ``n_pairs`` random pairs of distinct images (lower = more diverse)."""
    if len(images) < 2:
        raise ValueError("need at least two images")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_pairs):
        i, j = rng.choice(len(images), size=2, replace=False)
        vals.append(ms_ssim(images[i], images[j]))
    return float(np.mean(vals))


# --------------------------------------------------------------------------- seams


def _seam_ratio(profile: np.ndarray, period: int) -> float:
    n_periods = len(profile) // period
    if n_periods < 2:
        return float("nan")
    # Median over periods: a single horizon or edge falls in one period only and is ignored.
    folded = np.median(profile[: n_periods * period].reshape(n_periods, period), axis=0)
    best = 0.0
    for p in range(period):
        # Compare only with phases at the same 8-px JPEG block position, so block edges cancel.
        others = [folded[q] for q in range(p % 8, period, 8) if q != p]
        best = max(best, (folded[p] + 1e-6) / (float(np.mean(others)) + 1e-6))
    return float(best)


def seam_score(img: np.ndarray, period: int = 64) -> dict[str, float]:
    """Strength of periodic tile seams: ``{"x", "y", "score"}``; 1.0 means no seams.

    On the BT.601 luma, the mean absolute gradient along x (resp. y) gives a profile whose entry
    ``i`` is the step between pixels ``i`` and ``i+1``; it is folded by ``period`` (median over
    whole periods), and each phase is divided by the mean of the other phases congruent to it
    mod 8. The axis score is the largest such ratio; a tile seam between pixels ``period*k-1``
    and ``period*k`` shows up at phase ``period-1``. Darkening every 64th column of a smooth
    photo by 3% gives about 2. An axis with fewer than 2 whole periods is NaN, and ``score``
    is the max over the non-NaN axes (NaN if both are). ``period`` must be a multiple of 8, >= 16.
    """
    if period % 8 or period < 16:
        raise ValueError("period must be a multiple of 8 and at least 16")
    y = _luma(img)
    sx = _seam_ratio(np.abs(np.diff(y, axis=1)).mean(axis=0), period)
    sy = _seam_ratio(np.abs(np.diff(y, axis=0)).mean(axis=1), period)
    valid = [v for v in (sx, sy) if not np.isnan(v)]
    return {"x": sx, "y": sy, "score": max(valid) if valid else float("nan")}


def _level_deviation(profile: np.ndarray, period: int) -> float:
    n_periods = len(profile) // period
    if n_periods < 2:
        return float("nan")
    # Relative to the mean over one period around each position, so the picture's
    # large-scale shading cancels; the median over periods ignores a single horizon or
    # edge, as in the seam score.
    detail = profile - ndimage.uniform_filter1d(profile, period, mode="nearest")
    folded = np.median(detail[: n_periods * period].reshape(n_periods, period), axis=0)
    return float(np.abs(folded - folded.mean()).max())


def grid_level(img: np.ndarray, period: int = 64) -> dict[str, float]:
    """Mean-brightness frame of a tile grid: ``{"x", "y", "level"}`` in luma levels (0–255).

    The mean BT.601 luma of every column (resp. row) is folded by ``period``, each period
    taken relative to its own mean and the median taken over periods; an axis scores the
    largest deviation of one phase from the others. A frame one tile border wide and
    ``d`` levels brighter scores about ``d``; the :func:`seam_score` of a frame with soft
    edges can stay near 1 while this sees it. Unlike the seam score it depends on the
    picture's content (a few tenths to about one level for a smooth photo), so compare
    with the input.
    """
    if period < 2:
        raise ValueError("period must be at least 2")
    y = _luma(img)
    lx = _level_deviation(y.mean(axis=0), period)
    ly = _level_deviation(y.mean(axis=1), period)
    valid = [v for v in (lx, ly) if not np.isnan(v)]
    return {"x": lx, "y": ly, "level": max(valid) if valid else float("nan")}
