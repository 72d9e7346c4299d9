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

A coarse painting magnified 4–8× has the generator's grid in its edges: a slanted
edge is a chain of small steps, and the magnification makes them a staircase. Where
the photo itself is at hand (``guides``), such a step enlarges its base by a guided
upsampling instead (:func:`guided_coefficients`, after He and Sun's fast guided
filter): in small windows the painting is fitted as a linear function of the photo's
brightness, and the enlarged painting is that function of the *enlarged photo*, so
its edges are the photo's, sharp and smooth. What the fit leaves out (the painting's
own dabs) is kept where the photo is flat and dropped along its edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC

GUIDE_RADIUS = 2
"""Windows of the guided upsampling: (2r+1)² pixels of the rung being enlarged, enough
to span the half-grid steps (2 px) a shift-averaged painting keeps along an edge."""

GUIDE_EPS = 10.0**2
"""The fit's regulariser, a brightness variance (levels²): windows with less variation
than this (a standard deviation of 10 levels of 255) are fitted mostly as a constant."""

EDGE_LEVEL = 30.0**2
"""Brightness variance (levels²) of a window at which half of what the fit leaves out
(the painting's own dabs and steps) is kept: all of it where the photo is flat, little
along its strong edges."""

SNAP_RADIUS = 4
"""Windows of :func:`snap_to_photo` ((2r+1)² px): the rung just below full size is
enlarged only 2×, so its grid's 4-px steps are 8 px in the output; wider windows span them."""

SNAP_EDGE = 0.0
"""As :data:`EDGE_LEVEL`, for :func:`snap_to_photo`: 0 keeps none of what the fit leaves
out. On that rung it is the generator's grid itself, steps along edges and, in flat
areas, a fine mesh 8 px across in the output; the strokes come from the coarse rung."""

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


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


def luma(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → H×W uint8 brightness (ITU-R 601), a band of rows at a time."""
    out = np.empty(pixels.shape[:2], np.uint8)
    for r in range(0, out.shape[0], 256):
        out[r:r + 256] = np.clip(np.round(pixels[r:r + 256] @ LUMA), 0, 255)
    return out


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean of ``x`` (…×H×W float32) over (2r+1)² windows, edges repeated: two passes
    of shifted sums (no running sums, so float32 keeps its precision at any size)."""
    if radius == 0:
        return x.copy()
    k = 2 * radius + 1
    pad = [(0, 0)] * (x.ndim - 2)
    p = np.pad(x, pad + [(radius, radius), (0, 0)], mode="edge")
    rows = sum(p[..., i:i + x.shape[-2], :] for i in range(1, k)) + p[..., :x.shape[-2], :]
    p = np.pad(rows, pad + [(0, 0), (radius, radius)], mode="edge")
    out = sum(p[..., i:i + x.shape[-1]] for i in range(1, k)) + p[..., :x.shape[-1]]
    return out / np.float32(k * k)


def _fit(base: np.ndarray, guide: np.ndarray, radius: int, eps: float, edge: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`guided_coefficients` on whole arrays (a band of rows and its margin)."""
    g = guide.astype(np.float32)
    mean_g = box_mean(g, radius)
    var_g = box_mean(g * g, radius) - mean_g * mean_g
    keep = np.float32(edge) / (box_mean(var_g, radius) + np.float32(edge)) if edge > 0 else 0
    a = np.empty_like(base)
    b = np.empty_like(base)
    for c in range(base.shape[0]):
        x = base[c]
        mean_x = box_mean(x, radius)
        ac = (box_mean(x * g, radius) - mean_x * mean_g) / (var_g + np.float32(eps))
        bc = mean_x - ac * mean_g
        a[c] = box_mean(ac, radius)
        b[c] = box_mean(bc, radius)
        b[c] += keep * (x - (a[c] * g + b[c]))
    return a, b


def _bands(height: int, band_rows: int, margin: int):
    """(first, stop) of each band of rows, and (lo, hi) of the band with its margin."""
    for r0 in range(0, height, band_rows):
        r1 = min(height, r0 + band_rows)
        yield r0, r1, max(0, r0 - margin), min(height, r1 + margin)


def guided_coefficients(base: np.ndarray, guide: np.ndarray, radius: int = GUIDE_RADIUS,
                        eps: float = GUIDE_EPS, edge: float = EDGE_LEVEL,
                        band_rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``, 3×h×w float32 each, such that ``a·G + b`` enlarged with ``G`` the
    enlarged photo (:func:`enlarge_rows`) is ``base`` (3×h×w float32) enlarged with
    the photo's edges.

    In each window ``base ≈ a·guide + b`` (least squares, regularised by ``eps``; the
    coefficients then averaged over the windows that hold a pixel). The rest, ``base −
    (a·guide + b)``, is added to ``b`` times ``edge / (v + edge)``, where ``v`` is the
    guide's local variance: kept in flat areas, so the painting's dabs stay, and
    dropped along the photo's edges, where it is the grid's steps. With ``guide``
    constant, ``a`` is 0 and ``b`` is ``base``: a plain enlargement. Computed
    ``band_rows`` rows at a time (each with the ``2·radius`` rows its windows reach),
    equal to the whole.
    """
    a = np.empty_like(base)
    b = np.empty_like(base)
    for r0, r1, lo, hi in _bands(guide.shape[0], band_rows, 2 * radius):
        fa, fb = _fit(base[:, lo:hi], guide[lo:hi], radius, eps, edge)
        a[:, r0:r1] = fa[:, r0 - lo:r1 - lo]
        b[:, r0:r1] = fb[:, r0 - lo:r1 - lo]
    return a, b


def snap_to_photo(painting: np.ndarray, guide: np.ndarray, radius: int = SNAP_RADIUS,
                  edge: float = SNAP_EDGE, band_rows: int = 256) -> np.ndarray:
    """A painting (H×W×3 uint8) with its edges moved onto the photo's (``guide``, its
    brightness at the same size): ``a·guide + b`` of :func:`guided_coefficients`, the
    painting's colours and local contrast on the photo's forms (with ``edge`` > 0, its
    own texture kept where the photo is flat). A band of rows at a time, so a large
    rung is never held as float; H×W×3 uint8."""
    out = np.empty_like(painting)
    for r0, r1, lo, hi in _bands(guide.shape[0], band_rows, 2 * radius):
        a, b = _fit(_float(painting[lo:hi]), guide[lo:hi], radius, GUIDE_EPS, edge)
        fit = a[:, r0 - lo:r1 - lo] * guide[r0:r1].astype(np.float32) + b[:, r0 - lo:r1 - lo]
        out[r0:r1] = np.clip(np.round(fit), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return out


def enlarge_rows(base: np.ndarray, out_h: int, out_w: int, rows: tuple[int, int],
                 guided: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> np.ndarray:
    """Rows ``rows`` of ``base`` enlarged to ``out_h × out_w``: bicubic, or with
    ``guided = (a, b, G)`` (:func:`guided_coefficients`, ``G`` the photo's brightness
    at the output size) ``a``, ``b`` enlarged bicubically and ``a·G + b``."""
    if guided is None:
        return upsample_rows(base, out_h, out_w, rows)
    a, b, big = guided
    band = upsample_rows(a, out_h, out_w, rows)
    band *= big[rows[0]:rows[1]].astype(np.float32)
    band += upsample_rows(b, out_h, out_w, rows)
    return band


def compose(rungs: list[np.ndarray], weights: Sequence[float],
            band_rows: int = 256, on_rows: Callable[[int], None] | None = None,
            guides: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Laplacian composition of paintings of one picture at growing sizes.

    ``rungs[0]`` is the coarsest; the last has the output's size. Collapsed from the
    coarsest up: ``C_0 = rungs[0]`` and ``C_k = up(C_{k−1} − w_k·down(rungs[k])) +
    w_k·rungs[k]``, where ``down`` shrinks a rung to the size of the one below and
    ``up`` enlarges to its own; so each finer rung adds its own band of detail, scaled
    by ``weights[k]`` (``weights[0]`` is unused: the base is whole). The last, full-size
    step runs ``band_rows`` output rows at a time, written over the last rung's own
    rows (it must be writable; it is returned), so the full size is never held as float.
    ``on_rows(done)`` follows each band.

    ``guides``: the photo's brightness (H×W uint8, :func:`luma`) at each rung's size, or
    None. Where both ``guides[k−1]`` and ``guides[k]`` are given, ``up`` is the guided
    enlargement (:func:`guided_coefficients`) instead of a bicubic one.
    """
    if len(rungs) != len(weights) or not rungs:
        raise ValueError("one weight per rung, at least one rung")
    guides = list(guides) if guides is not None else [None] * len(rungs)
    if len(guides) != len(rungs):
        raise ValueError("one guide (or None) per rung")
    if len(rungs) == 1:
        return rungs[0]
    top = rungs[-1]
    if not top.flags.writeable:
        top = top.copy()
    # Every rung shrunk to the size below it, before any float image exists.
    lows = [None] + [shrink(rungs[k], *rungs[k - 1].shape[:2]) if weights[k] else None
                     for k in range(1, len(rungs))]
    base = _float(rungs[0])
    guided = None
    for k in range(1, len(rungs)):
        if weights[k]:  # base −= w·down(rung k), one channel at a time (no float copy)
            for c in range(3):
                base[c] -= np.float32(weights[k]) * lows[k][..., c]
            lows[k] = None
        guided = None
        if guides[k - 1] is not None and guides[k] is not None:
            guided = (*guided_coefficients(base, guides[k - 1]), guides[k])
        if k < len(rungs) - 1:
            h, w = rungs[k].shape[:2]
            base = np.concatenate([enlarge_rows(base, h, w, (r, min(h, r + band_rows)), guided)
                                   for r in range(0, h, band_rows)], axis=1)
            if weights[k]:
                for c in range(3):
                    base[c] += np.float32(weights[k]) * rungs[k][..., c]
    h, w = top.shape[:2]
    for r0 in range(0, h, band_rows):
        rows = (r0, min(h, r0 + band_rows))
        band = enlarge_rows(base, h, w, rows, guided)
        if weights[-1]:
            band += np.float32(weights[-1]) * _float(top[rows[0]:rows[1]])
        top[rows[0]:rows[1]] = np.clip(np.round(band), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if on_rows is not None:
            on_rows(rows[1])
    return top


def _float(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → 3×H×W float32."""
    return pixels.transpose(2, 0, 1).astype(np.float32)
