"""Stroke flow: the coarse painting's dabs laid along the photo's forms.

Magnified 4–8×, the coarse painting's texture is what a viewer reads as brushwork, and
in flat areas (a sky, a blurred background) the generator lays it as one regular
diagonal dab, whatever the forms (:mod:`siamgan.pyramid`). Painters lay strokes along
the forms. So, before the composition, that texture (the painting minus its 3×3 mean)
is averaged along the direction of the photo's brightness contours, the smoothed
structure tensor's minor axis, which turns each dab into a short stroke along the form
(a line integral convolution, after Cabral and Leedom 1993 and the flow-based filters of
Kang et al. 2009), and brought back to its former contrast. The colours and the larger
forms (the 3×3 mean) are left as they are. Pure NumPy on the coarse rung (about the
paintings' size, 256² pixels for ``vangogh``), so its cost does not grow with the photo.
"""

from __future__ import annotations

import numpy as np

from .pyramid import box_mean

STROKE_HALF_LENGTH = 4
"""Steps (px of the coarse rung) each side of a pixel: strokes of 9 px there, 36–72 px
in the output of a 4 MP photo."""

FLOW_RADIUS = 5
"""Window (2r+1 px of the coarse rung) over which the contours' direction is averaged:
wide enough that a flat area's strokes follow its gentle shading, not its noise."""

MAX_GAIN = 3.0
"""At most this much contrast is given back to the averaged texture."""

STREAK_GAIN = 3.3
"""Brings :func:`streak_noise`'s average of 9 samples of unit-variance noise back to a
standard deviation of about 1 (0.92–1.1 whatever the direction: measured on sine
gratings at four angles)."""

STREAK_MARGIN = STROKE_HALF_LENGTH + FLOW_RADIUS + 2
"""Pixels of context each side that :func:`streak_noise` reads: a band computed with this
margin equals the whole picture's inside it."""


def stroke_directions(guide: np.ndarray, radius: int = FLOW_RADIUS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx), unit vectors along the brightness contours of ``guide`` (H×W), each
    from the structure tensor averaged over (2r+1)² windows."""
    g = guide.astype(np.float32)
    # Central differences (one-sided at the borders); none across a single row or column.
    gy = np.gradient(g, axis=0) if g.shape[0] > 1 else np.zeros_like(g)
    gx = np.gradient(g, axis=1) if g.shape[1] > 1 else np.zeros_like(g)
    jxx = box_mean(gx * gx, radius)
    jyy = box_mean(gy * gy, radius)
    jxy = box_mean(gx * gy, radius)
    across = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # the dominant gradient's angle
    return np.cos(across), -np.sin(across)


def sample(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``image`` (C×H×W) at fractional positions, bilinear, edges repeated."""
    c, h, w = image.shape
    y = np.clip(y, 0, h - 1)
    x = np.clip(x, 0, w - 1)
    y0 = np.minimum(y.astype(np.int64), max(h - 2, 0))
    x0 = np.minimum(x.astype(np.int64), max(w - 2, 0))
    fy = (y - y0).astype(np.float32)
    fx = (x - x0).astype(np.float32)
    # Gathers from the flattened picture: much faster than indexing two axes.
    flat = image.reshape(c, h * w)
    top, below = y0 * w, np.minimum(y0 + 1, h - 1) * w
    right = np.minimum(x0 + 1, w - 1)
    tl, tr = flat.take(top + x0, axis=1), flat.take(top + right, axis=1)
    bl, br = flat.take(below + x0, axis=1), flat.take(below + right, axis=1)
    upper = tl + (tr - tl) * fx
    return upper + (bl + (br - bl) * fx - upper) * fy


def streak_noise(guide: np.ndarray, noise: np.ndarray,
                 half_length: int = STROKE_HALF_LENGTH, radius: int = FLOW_RADIUS
                 ) -> np.ndarray:
    """``noise`` (H×W, unit variance) averaged along ``guide``'s (the photo's brightness,
    H×W) contours over ``2·half_length + 1`` steps, times :data:`STREAK_GAIN`: streaks
    of noise that follow the forms, the texture source of a generator with
    ``GeneratorConfig.streaks``. H×W float32."""
    dy, dx = stroke_directions(guide, radius)
    h, w = guide.shape
    y, x = np.mgrid[:h, :w].astype(np.float32)
    n = noise.astype(np.float32)[None]
    out = np.zeros((1, h, w), np.float32)
    for t in range(-half_length, half_length + 1):
        out += sample(n, y + t * dy, x + t * dx)
    return out[0] * np.float32(STREAK_GAIN / (2 * half_length + 1))


def lay_along_forms(painting: np.ndarray, guide: np.ndarray,
                    half_length: int = STROKE_HALF_LENGTH, radius: int = FLOW_RADIUS
                    ) -> np.ndarray:
    """``painting`` (H×W×3 uint8) with its fine texture averaged along ``guide``'s
    (the photo's brightness at the same size) contours, over ``2·half_length + 1``
    steps, and its contrast restored (by at most :data:`MAX_GAIN`); H×W×3 uint8."""
    p = painting.transpose(2, 0, 1).astype(np.float32)
    base = box_mean(p, 1)
    texture = p - base
    dy, dx = stroke_directions(guide, radius)
    h, w = guide.shape
    y, x = np.mgrid[:h, :w].astype(np.float32)
    strokes = np.zeros_like(texture)
    for t in range(-half_length, half_length + 1):
        strokes += sample(texture, y + t * dy, x + t * dx)
    strokes /= np.float32(2 * half_length + 1)
    spread = float(strokes.std())
    gain = min(MAX_GAIN, float(texture.std()) / spread) if spread > 0 else 1.0
    out = base + np.float32(gain) * strokes
    return np.clip(np.round(out), 0, 255).astype(np.uint8).transpose(1, 2, 0)
