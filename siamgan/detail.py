"""Input detail: the fine detail of a picture before the generator paints it.

A style's generator learns from photos with a certain amount of fine detail. A large
photo shrunk to the coarse rung (:mod:`siamgan.pyramid`) is often far smoother than
those (a macro shot, a bokeh background, a clean sky), and the generator then paints
too little on it: seen whole, the picture stays a tinted photo. So a style records its
photos' detail (``strokes.photo_detail``: :func:`photo_detail`, the median energy of
the finest Laplacian bands relative to the brightness, seen at the coarse rung's size),
and ``stylize`` raises a smoother coarse rung to that level before painting it
(:func:`match_detail`). Pure NumPy functions (the light install uses them), plus
:func:`record_photo_detail`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .images import resize

BINOMIAL = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16
DETAIL_LEVELS = 3
"""The most bands a style's record may hold (:func:`siamgan.stylize.check_strokes`)."""
MATCHED_LEVELS = 2
"""The bands :func:`photo_detail` records, so ``stylize`` matches: the two finest. The
third (forms of 8–16 px on the coarse rung) raised too overshot the paintings' ¼ band on
the large photos (``docs/strokes.md``)."""
MAX_DETAIL_GAIN = 4.0


def _blur(x: np.ndarray) -> np.ndarray:
    """5-tap binomial blur of H×W×C float32 along both axes, mirrored edges."""
    for axis in (0, 1):
        n = x.shape[axis]
        if n < 3:
            continue  # too short to mirror: left as it is
        pad = [(0, 0)] * x.ndim
        pad[axis] = (2, 2)
        p = np.pad(x, pad, mode="reflect")
        x = sum(np.float32(w) * p.take(np.arange(i, i + n), axis=axis)
                for i, w in enumerate(BINOMIAL))
    return x


def _up(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero insertion then the blur ×4: the Laplacian pyramid's expand, cut to ``shape``."""
    up = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]), dtype=np.float32)
    up[::2, ::2] = x
    return 4 * _blur(up)[: shape[0], : shape[1]]


def detail_bands(pixels: np.ndarray, levels: int = DETAIL_LEVELS) -> list[np.ndarray]:
    """The ``levels`` finest bands of the Laplacian pyramid of H×W×3 pixels (float32,
    values on the 0–255 scale): band k is G_k − up(G_{k+1}), G_{k+1} = blur(G_k)[::2, ::2]."""
    g = pixels.astype(np.float32)
    bands = []
    for _ in range(levels):
        low = _blur(g)[::2, ::2]
        bands.append(g - _up(low, g.shape))
        g = low
    return bands


def detail_energy(pixels: np.ndarray, levels: int = DETAIL_LEVELS) -> list[float]:
    """How much fine detail a picture has, finest first: the mean absolute value of each
    of the finest ``levels`` bands (:func:`detail_bands`) in percent of the picture's
    mean level. Relative to the brightness, so a night photo's detail is not taken for
    missing because its values are small."""
    return _relative(pixels, [float(np.abs(b).mean()) for b in detail_bands(pixels, levels)])


def _relative(pixels: np.ndarray, energies: list[float]) -> list[float]:
    level = max(float(pixels.mean()), 1.0)
    return [100.0 * e / level for e in energies]


def detail_gains(energy: Sequence[float], target: Sequence[float],
                 max_gain: float = MAX_DETAIL_GAIN) -> list[float]:
    """Per-band gains that bring ``energy`` up to ``target``: never below 1 (detail is
    added, never taken away), never above ``max_gain``."""
    return [min(max(t / e, 1.0), max_gain) if e > 0 else 1.0
            for e, t in zip(energy, target)]


def match_detail(pixels: np.ndarray, target: Sequence[float],
                 max_gain: float = MAX_DETAIL_GAIN) -> np.ndarray:
    """H×W×3 uint8 with each of its finest bands that has less energy than ``target``
    scaled up toward it (:func:`detail_gains`); the picture itself if none has less."""
    bands = detail_bands(pixels, len(target))
    gains = detail_gains(_relative(pixels, [float(np.abs(b).mean()) for b in bands]),
                         target, max_gain)
    if all(g == 1.0 for g in gains):
        return pixels
    add = None
    for band, gain in zip(reversed(bands), reversed(gains)):
        add = (np.zeros_like(band) if add is None else _up(add, band.shape))
        add += np.float32(gain - 1.0) * band
    out = pixels.astype(np.float32) + add
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def photo_detail(images: Sequence[np.ndarray], picture_side: int,
                 levels: int = MATCHED_LEVELS) -> list[float]:
    """The median :func:`detail_energy` of photos seen as the coarse rung sees them:
    each larger than ``picture_side``² pixels is first shrunk to that area, as
    ``stylize`` shrinks a large photo to its coarse rung (:func:`siamgan.pyramid.ladder`).
    Rounded to two decimals, for a style's ``strokes.photo_detail``."""
    if not images:
        raise ValueError("photo_detail needs at least one photo")
    energies = []
    for img in images:
        h, w = img.shape[:2]
        ratio = picture_side / math.sqrt(h * w)
        if ratio < 1:
            img = resize(img, max(1, round(w * ratio)), max(1, round(h * ratio)))
        energies.append(detail_energy(img, levels))
    return [round(float(v), 2) for v in np.median(np.array(energies), axis=0)]


def record_photo_detail(style: str | Path, photos: str | Path, holdout_every: int,
                        output: str | Path) -> tuple[Path, list[float]]:
    """Write ``output``: the style's weights, with ``photos``' :func:`photo_detail` in its
    config (``strokes.photo_detail``). ``holdout_every`` K leaves out every K-th photo,
    as ``train --holdout-every K`` did. Needs the full install."""
    from .images import list_images, load_rgb, split_holdout
    from .paths import check_outside
    from .stylize import DEFAULT_STROKES
    from .weights_io import find_style, load_weights, save_weights

    source = find_style(str(style))
    check_outside(Path(output).with_suffix(".safetensors"), [source, photos], "-o")
    tensors, config = load_weights(source)
    paths = split_holdout(list_images(photos), holdout_every, holdout=False)
    if not paths:
        raise ValueError(f"{photos}: no images found")
    strokes = {**DEFAULT_STROKES, **config.get("strokes", {})}
    found = photo_detail([load_rgb(p) for p in paths], int(strokes["picture_side"]))
    config = {**config, "name": Path(output).stem,
              "strokes": {**strokes, "photo_detail": found}}
    return save_weights(output, tensors, config), found
