"""Pixel conversions and image loading shared by every command.

One place converts between uint8 pixels and the [-1, 1] float range the
networks use, so no module does its own scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # torch is imported only by the functions that take tensors
    import torch

class DataError(ValueError):
    """A training folder cannot be used (missing, empty, unreadable)."""


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def model_range_array(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (H×W×C or N×H×W×C) → float32 array (…×C×H×W) in [-1, 1]: the NumPy
    twin of :func:`to_model_range`, same operations in the same order."""
    return np.moveaxis(pixels, -1, -3).astype(np.float32) / np.float32(127.5) - np.float32(1)


def pixels_from_array(values: np.ndarray) -> np.ndarray:
    """Float array (…×C×H×W) in [-1, 1] → uint8 (…×H×W×C), rounded and clipped: the NumPy
    twin of :func:`to_pixels` (NumPy and torch both round half to even)."""
    t = np.clip(np.round((values.astype(np.float32) + np.float32(1)) * np.float32(127.5)), 0, 255)
    return np.ascontiguousarray(np.moveaxis(t.astype(np.uint8), -3, -1))


def to_model_range(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels (H×W×C or N×H×W×C) → float32 tensor (…×C×H×W) in [-1, 1]."""
    import torch

    if isinstance(pixels, np.ndarray) and not pixels.flags.writeable:
        pixels = pixels.copy()  # torch refuses to wrap read-only memory safely
    t = torch.as_tensor(pixels)
    t = t.movedim(-1, -3).to(torch.float32)
    return t.div_(127.5).sub_(1.0)


def quantize(tensor: torch.Tensor) -> torch.Tensor:
    """Float tensor (…×C×H×W) in [-1, 1] → uint8 tensor (…×H×W×C) on the same device."""
    import torch

    t = tensor.detach().to(torch.float32).add(1.0).mul_(127.5).round_().clamp_(0, 255)
    return t.to(torch.uint8).movedim(-3, -1)


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (…×C×H×W) in [-1, 1] → uint8 array (…×H×W×C), rounded and clipped."""
    return quantize(tensor.detach().to("cpu")).contiguous().numpy()


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive, sorted), or ``[root]`` for a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def split_holdout(paths: list, every: int, holdout: bool) -> list:
    """Every ``every``-th item (the last of each group) is held out of training.

    ``every`` 0 keeps everything for training and holds nothing out.
    """
    if every <= 0:
        return [] if holdout else list(paths)
    return [p for i, p in enumerate(paths) if (i % every == every - 1) == holdout]


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an H×W×3 uint8 array, EXIF orientation applied."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


def resize_short_side(pixels: np.ndarray, max_short: int, min_short: int) -> np.ndarray:
    """Downscale so the short side is at most ``max_short``; upscale below ``min_short``."""
    h, w = pixels.shape[:2]
    short = min(h, w)
    target = short
    if short > max_short:
        target = max_short
    elif short < min_short:
        target = min_short
    if target == short:
        return pixels
    f = target / short
    if h < w:
        size = (max(1, round(w * f)), target)
    else:
        size = (target, max(1, round(h * f)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resize of an H×W×C uint8 array (any channel count PIL accepts)."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    im = Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode)
    out = np.asarray(im.resize((width, height), Image.Resampling.LANCZOS))
    return out[..., None] if mode == "L" else out


def image_grid(images: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Tile equally sized H×W×3 uint8 images into one sheet with a white gutter."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + h, x : x + w] = img
    return sheet
