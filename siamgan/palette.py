"""Palette match: a stylized image's colours moved part of the way to the paintings'.

Reinhard et al. (2001) colour transfer in CIE-Lab, applied to the generator's output:
each Lab channel is re-centred and re-scaled from the image's own mean and standard
deviation towards those of the style's paintings. ``strength`` s in [0, 1] interpolates
in Lab: the offset moves s of the way and the scale is (paintings' std / image's std)^s,
so s = 0 leaves the image alone and s = 1 is the full transfer. The transform is one
affine map per channel for the whole image, so it adds no seam and works on any size:
the statistics come from a regular grid of at most ``max_samples`` pixels and the map is
applied a block of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import list_images, load_rgb
from .paths import check_outside
from .weights_io import find_style, load_weights, save_weights

# sRGB (D65) ↔ CIE XYZ, and the D65 white point: the constants skimage.color uses.
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]], np.float32)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB.astype(np.float64)).astype(np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)
# The sRGB transfer curve as look-up tables: exact for uint8 input; for output, 2^16
# steps of linear light keep the result within rounding of the exact curve.
_LEVELS = np.arange(256, dtype=np.float64) / 255
_TO_LINEAR = np.where(_LEVELS > 0.04045, ((_LEVELS + 0.055) / 1.055) ** 2.4,
                      _LEVELS / 12.92).astype(np.float32)
_LINEAR = np.arange(65536, dtype=np.float64) / 65535
_TO_SRGB = (255 * np.where(_LINEAR > 0.0031308, 1.055 * _LINEAR ** (1 / 2.4) - 0.055,
                           12.92 * _LINEAR)).round().astype(np.uint8)


@dataclass
class Palette:
    """The paintings' CIE-Lab mean and std (per channel), and the default strength."""

    lab_mean: tuple[float, float, float]
    lab_std: tuple[float, float, float]
    strength: float = 0.0

    def __post_init__(self) -> None:
        if len(self.lab_mean) != 3 or len(self.lab_std) != 3:
            raise ValueError("lab_mean and lab_std need 3 values each")
        if min(self.lab_std) <= 0:
            raise ValueError("lab_std must be > 0")
        check_strength(self.strength)

    @classmethod
    def from_images(cls, images: list[np.ndarray], strength: float = 0.0,
                    per_image: int = 1 << 16) -> Palette:
        """The palette of a collection: the pixels of every image pooled (a regular grid
        of at most ``per_image`` of them from each)."""
        n, total, squares = 0, np.zeros(3), np.zeros(3)
        for img in images:
            lab = rgb_to_lab(_grid(img, per_image)).astype(np.float64).reshape(-1, 3)
            n, total, squares = n + len(lab), total + lab.sum(0), squares + (lab**2).sum(0)
        if n == 0:
            raise ValueError("no images given")
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 1e-12))
        return cls(tuple(map(float, mean)), tuple(map(float, std)), strength)

    @classmethod
    def from_dict(cls, data: dict) -> Palette:
        """From a style config's ``palette`` entry (other keys there are notes)."""
        return cls(tuple(data["lab_mean"]), tuple(data["lab_std"]),
                   float(data.get("strength", 0.0)))

    def to_dict(self) -> dict:
        return {"lab_mean": list(self.lab_mean), "lab_std": list(self.lab_std),
                "strength": self.strength}


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"palette strength must be in [0, 1], got {strength}")
    return strength


def rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 sRGB → H×W×3 float32 CIE-Lab (D65), as ``skimage.color.rgb2lab``."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {pixels.shape}")
    t = (_TO_LINEAR[pixels] @ _XYZ_FROM_RGB.T) / _WHITE
    f = np.where(t > 0.008856, np.cbrt(np.maximum(t, 0.008856)), 7.787 * t + 16 / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1
                    ).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """H×W×3 float32 CIE-Lab → H×W×3 uint8 sRGB; out-of-gamut colours are clipped."""
    lab = np.asarray(lab, dtype=np.float32)
    ell, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (ell + 16) / 116
    f = np.stack([fy + a / 500, fy, np.maximum(fy - b / 200, 0)], axis=-1)
    t = np.where(f > 0.2068966, f * f * f, (f - 16 / 116) / 7.787)
    linear = np.clip((t * _WHITE) @ _RGB_FROM_XYZ.T, 0, 1)
    return _TO_SRGB[np.round(linear * 65535).astype(np.int64)]


def _grid(pixels: np.ndarray, max_samples: int) -> np.ndarray:
    """Every k-th pixel along both axes, k the smallest that keeps ≤ ``max_samples``."""
    h, w = pixels.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_samples))))
    return pixels[::step, ::step]


def lab_stats(pixels: np.ndarray, max_samples: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Lab mean and std of an image, from a regular grid of at most ``max_samples`` pixels."""
    lab = rgb_to_lab(_grid(pixels, max_samples)).astype(np.float64).reshape(-1, 3)
    return lab.mean(0), lab.std(0)


def match_palette(pixels: np.ndarray, palette: Palette, strength: float | None = None,
                  rows: int = 64, in_place: bool = False) -> np.ndarray:
    """H×W×3 uint8 → H×W×3 uint8, colours moved ``strength`` of the way to ``palette``.

    ``strength`` None means the palette's own default. Out-of-gamut colours are clipped.
    ``in_place`` writes the result into ``pixels`` (no second full-size array).
    """
    s = check_strength(palette.strength if strength is None else strength)
    if s == 0:
        return pixels
    mean, std = lab_stats(pixels)
    gain = (np.asarray(palette.lab_std) / np.maximum(std, 1e-6)) ** s
    target = mean + s * (np.asarray(palette.lab_mean) - mean)
    # lab' = lab · gain + offset, one affine map per channel
    gain_t = gain.astype(np.float32)
    offset = (target - mean * gain).astype(np.float32)
    out = pixels if in_place else np.empty_like(pixels)
    for top in range(0, pixels.shape[0], rows):  # bounded float memory on large images
        out[top : top + rows] = lab_to_rgb(rgb_to_lab(pixels[top : top + rows]) * gain_t + offset)
    return out


def record_palette(style: str | Path, paintings: str | Path, strength: float,
                   output: str | Path) -> Path:
    """Write ``output``: the style's weights, with the paintings' palette in its config."""
    source = find_style(str(style))
    check_outside(Path(output).with_suffix(".safetensors"), [source, paintings], "-o")
    tensors, config = load_weights(source)
    paths = list_images(paintings)
    if not paths:
        raise ValueError(f"{paintings}: no images found")
    palette = Palette.from_images([load_rgb(p) for p in paths], check_strength(strength))
    return save_weights(output, tensors, {**config, "name": Path(output).stem, "palette": {
        **palette.to_dict(), "paintings": str(paintings), "images": len(paths)}})
