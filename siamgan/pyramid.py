"""Stroke scale: painting a large photo at the paintings' scale, then adding detail.

A style learns strokes from whole paintings shrunk to ``picture_side`` pixels
(256 for ``vangogh``): there a stroke is a few pixels and a tile holds a good part
of the scene. Painted at a 2560-px photo's full size, the same generator lays a fine
texture on a photo instead of painting it. So ``stylize`` works on a *ladder* of
sizes (:func:`ladder`): the coarsest is the photo shrunk until its area matches a
``picture_side``² painting (times the user's ``--scale``), and each rung is at most
2× the one below, up to the photo's own size.

The generator paints every rung; the rungs are then composed as a Laplacian
pyramid (:func:`compose`): the coarsest painting gives the composition-sized
strokes and the colours, and each finer rung adds only its own band of detail
(the rung minus its own blurred self), weighted by ``detail``. Pure functions on
uint8 arrays, in NumPy (no torch: the light install stylizes with them); the result
is built one band of rows at a time, so beyond the rungs themselves memory grows with
the width, not the area.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC


def ladder(height: int, width: int, picture_side: int, scale: float = 1.0) -> list[float]:
    """Scales (fractions of the input size) of the rungs, coarsest first, ending at 1.0.

    The coarsest is ``scale × picture_side / √(height × width)`` (the picture shrunk to
    the paintings' area, times the brush-size control ``scale``), but never above
    ``scale`` itself, so a picture no larger than the paintings is resized by ``scale``
    as a plain pixel scale would. At 1 or more there is one rung, at that scale (the
    caller resizes back). Below 1 the rungs grow geometrically, by at most 2×, to 1.0.
    """
    if picture_side < 1 or scale <= 0:
        raise ValueError("picture_side and scale must be positive")
    base = min(scale * picture_side / math.sqrt(height * width), scale)
    if base >= 1.0 - 1e-9:
        return [base]
    steps = math.ceil(math.log2(1.0 / base) - 1e-9)
    ratio = (1.0 / base) ** (1.0 / steps)
    return [base * ratio**i for i in range(steps)] + [1.0]


def rung_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of a rung, at least 1 px each."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def cubic_taps(out_len: int, src_len: int, start: int = 0, stop: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and float32 weights (n×4 each) of bicubic resampling along one axis
    for output positions ``start:stop`` of ``out_len``, as torch's ``F.interpolate(
    mode="bicubic", align_corners=False)`` computes them (Keys, a = −0.75, edges repeated)."""
    stop = out_len if stop is None else stop
    pos = (np.arange(start, stop, dtype=np.float64) + 0.5) * (src_len / out_len) - 0.5
    base = np.floor(pos)
    d = np.abs(np.arange(-1, 3, dtype=np.float64)[None, :] - (pos - base)[:, None])
    a = -0.75
    w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                 np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    idx = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3)[None, :], 0, src_len - 1)
    return idx, w.astype(np.float32)


def upsample_rows(src: np.ndarray, out_h: int, out_w: int, rows: tuple[int, int]
                  ) -> np.ndarray:
    """Rows ``rows`` of ``src`` (3×H×W float32) resized bicubically to ``out_h × out_w``:
    computed for those rows alone, equal to the same rows of the whole resized image
    (and, within float rounding, to torch's bicubic ``F.interpolate``)."""
    iy, wy = cubic_taps(out_h, src.shape[1], *rows)
    band = np.einsum("cnkw,nk->cnw", src[:, iy], wy)  # 3×n×W_src
    ix, wx = cubic_taps(out_w, src.shape[2])
    return np.einsum("cnwk,wk->cnw", band[:, :, ix], wx)


def resize_bicubic(src: np.ndarray, out_h: int, out_w: int, band_rows: int = 256
                   ) -> np.ndarray:
    """The whole of ``src`` (3×H×W float32) resized bicubically, a band of rows at a time."""
    return np.concatenate([upsample_rows(src, out_h, out_w, (r, min(out_h, r + band_rows)))
                           for r in range(0, out_h, band_rows)], axis=1)


def detail_weights(count: int, detail: float) -> list[float]:
    """Weight of each rung's detail band: the coarsest is the base (1); the finer
    ones ``detail`` each."""
    return [1.0] + [detail] * (count - 1)


def shrink(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bicubic shrink of H×W×3 uint8 (PIL: fast, and no float copy)."""
    return np.asarray(Image.fromarray(pixels).resize((width, height), RESAMPLE))


def compose(rungs: list[np.ndarray], weights: Sequence[float],
            band_rows: int = 256, on_rows: Callable[[int], None] | None = None) -> np.ndarray:
    """Laplacian composition of paintings of one picture at growing sizes.

    ``rungs[0]`` is the coarsest; the last has the output's size. Collapsed from the
    coarsest up: ``C_0 = rungs[0]`` and ``C_k = up(C_{k−1} − w_k·down(rungs[k])) +
    w_k·rungs[k]``, where ``down`` shrinks a rung to the size of the one below and
    ``up`` enlarges to its own; so each finer rung adds its own band of detail, scaled
    by ``weights[k]`` (``weights[0]`` is unused: the base is whole). The last, full-size
    step runs ``band_rows`` output rows at a time, written over the last rung's own
    rows (it must be writable; it is returned), so the full size is never held as float.
    ``on_rows(done)`` follows each band.
    """
    if len(rungs) != len(weights) or not rungs:
        raise ValueError("one weight per rung, at least one rung")
    if len(rungs) == 1:
        return rungs[0]
    top = rungs[-1]
    if not top.flags.writeable:
        top = top.copy()
    # Every rung shrunk to the size below it, before any float image exists.
    lows = [None] + [shrink(rungs[k], *rungs[k - 1].shape[:2]) if weights[k] else None
                     for k in range(1, len(rungs))]
    base = _float(rungs[0])
    for k in range(1, len(rungs)):
        if weights[k]:  # base −= w·down(rung k), one channel at a time (no float copy)
            for c in range(3):
                base[c] -= np.float32(weights[k]) * lows[k][..., c]
            lows[k] = None
        if k < len(rungs) - 1:
            h, w = rungs[k].shape[:2]
            base = resize_bicubic(base, h, w)
            if weights[k]:
                for c in range(3):
                    base[c] += np.float32(weights[k]) * rungs[k][..., c]
    h, w = top.shape[:2]
    for r0 in range(0, h, band_rows):
        rows = (r0, min(h, r0 + band_rows))
        band = upsample_rows(base, h, w, rows)
        if weights[-1]:
            band += np.float32(weights[-1]) * _float(top[rows[0]:rows[1]])
        top[rows[0]:rows[1]] = np.clip(np.round(band), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if on_rows is not None:
            on_rows(rows[1])
    return top


def _float(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → 3×H×W float32."""
    return pixels.transpose(2, 0, 1).astype(np.float32)
