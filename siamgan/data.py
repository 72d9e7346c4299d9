"""Reading image collections and drawing random training crops.

A domain's images are decoded once, capped in size and kept in memory as
uint8, so a training step never waits for JPEG decoding. Crops are drawn by a
seeded NumPy generator whose state is saved in checkpoints, which makes
``--resume`` continue the exact same stream of crops.
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .images import (
    IMAGE_SUFFIXES,
    DataError,
    list_images,
    load_rgb,
    resize_short_side,
    split_holdout,
    to_model_range,
)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_archive_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, encoded bytes) of every image inside a .tar/.tar.gz/.zip, read in place."""
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    yield name, zf.read(name)
        return
    with tarfile.open(path) as tf:
        for member in tf:
            if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                f = tf.extractfile(member)
                if f is not None:
                    yield member.name, f.read()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def load_collection(
    source: str | Path,
    max_short: int | None = None,
    min_short: int = 1,
    limit: int | None = None,
    desc: str = "loading",
    holdout_every: int = 0,
    progress: bool = True,
) -> list[np.ndarray]:
    """Decode every readable image of a folder (recursive) or archive.

    With ``holdout_every`` K, every K-th file (sorted) is left out, kept for
    evaluation. Unreadable files are skipped and counted in one warning; fewer than two
    readable images is a :class:`DataError`, raised before any training starts.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    images: list[np.ndarray] = []
    bad: list[str] = []

    def keep(img: np.ndarray) -> None:
        if max_short is not None:
            img = resize_short_side(img, max_short, min_short)
        images.append(np.ascontiguousarray(img))

    if _is_archive(source):
        entries = iter_archive_images(source)
        for name, data in tqdm(entries, desc=desc, unit="img", leave=False, disable=not progress):
            if limit is not None and len(images) >= limit:
                break
            try:
                keep(_decode(data))
            except (OSError, ValueError, Image.DecompressionBombError):
                bad.append(name)
    else:
        paths = split_holdout(list_images(source), holdout_every, holdout=False)
        for path in tqdm(paths, desc=desc, unit="img", leave=False, disable=not progress):
            if limit is not None and len(images) >= limit:
                break
            try:
                keep(load_rgb(path))
            except (OSError, ValueError, Image.DecompressionBombError):
                bad.append(str(path))
    if bad:
        shown = ", ".join(bad[:3]) + (" …" if len(bad) > 3 else "")
        warnings.warn(f"{source}: skipped {len(bad)} unreadable file(s): {shown}", stacklevel=2)
    if len(images) < 2:
        raise DataError(
            f"{source}: found {len(images)} readable image(s); training needs at least 2"
        )
    return images


def colour_moments_of(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour mean (3,) and covariance (3×3) of every pixel of ``images``, in model range.

    The target of the colour term (:func:`losses.colour_moments`); running sums in
    float64, so no image's float copy outlives its turn.
    """
    n, total, outer = 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    for img in images:
        px = to_model_range(img).double().reshape(3, -1).T
        n, total, outer = n + len(px), total + px.sum(0), outer + px.T @ px
    if n == 0:
        raise ValueError("no images given")
    mean = total / n
    return mean.float(), (outer / n - torch.outer(mean, mean)).float()


@dataclass
class CropConfig:
    """How training crops are drawn: side ``size`` px, zoomed out by up to ``1/min_scale``.

    With ``max_zoom > 1`` half the crops are instead enlarged, by a factor drawn
    log-uniformly from [1, ``max_zoom``]: the nearly flat tiles of a large photo. A
    ``dark_share`` of the crops is darkened, every pixel value scaled by a factor drawn
    log-uniformly from [``min_exposure``, 1]: night scenes, rarer in photo collections
    than in photo libraries. A ``vivid_share`` is made more colourful, each pixel's
    distance from its grey (BT.601 luma) scaled by a factor drawn log-uniformly from
    [1, ``max_saturation``]: flowers, macro shots and sunsets, rarer in landscape
    collections than in photo libraries.
    """

    size: int = 128
    min_scale: float = 0.5
    flip: bool = True
    max_zoom: float = 1.0
    dark_share: float = 0.0
    min_exposure: float = 0.125
    vivid_share: float = 0.0
    max_saturation: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dark_share <= 1.0:
            raise ValueError(f"dark_share must be in [0, 1], got {self.dark_share}")
        if not 0.0 <= self.vivid_share <= 1.0:
            raise ValueError(f"vivid_share must be in [0, 1], got {self.vivid_share}")
        if self.max_saturation < 1.0:
            raise ValueError(f"max_saturation must be ≥ 1, got {self.max_saturation}")
        if not 0.0 < self.min_exposure <= 1.0:
            raise ValueError(f"min_exposure must be in (0, 1], got {self.min_exposure}")


def saturate(pixels: np.ndarray, factor: float) -> np.ndarray:
    """H×W×3 uint8 with each pixel's distance from its grey (BT.601 luma) × ``factor``."""
    x = pixels.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    out = grey[..., None] + np.float32(factor) * (x - grey[..., None])
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class CropSampler:
    """Random square crops from in-memory images, as [-1, 1] tensors B×3×size×size."""

    def __init__(self, images: list[np.ndarray], config: CropConfig, seed: int) -> None:
        self.images = images
        self.config = config
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """A batch of crops; the uint8→float conversion runs on ``device``."""
        crops = np.stack([self._crop(self.images[i]) for i in self._indices(batch)])
        return to_model_range(torch.from_numpy(crops).to(device))

    def _indices(self, batch: int) -> np.ndarray:
        return self.rng.integers(0, len(self.images), size=batch)

    def _crop(self, img: np.ndarray) -> np.ndarray:
        # Pillow, not torch, for the per-crop work: tiny torch ops pay thread
        # start-up costs that dominated a training step when several ran at once.
        cfg, rng = self.config, self.rng
        h, w = img.shape[:2]
        # A region of side size/scale shrunk to `size`: strokes seen at several scales.
        scale = rng.uniform(cfg.min_scale, 1.0)
        if cfg.max_zoom > 1 and rng.random() < 0.5:  # no extra draw otherwise: same crops
            scale = float(np.exp(rng.uniform(0.0, np.log(cfg.max_zoom))))
        side = min(h, w, max(1, round(cfg.size / scale)))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = img[y : y + side, x : x + side]
        if side != cfg.size:
            patch = np.asarray(Image.fromarray(patch).resize((cfg.size, cfg.size),
                                                             Image.Resampling.BILINEAR))
        if cfg.flip and rng.random() < 0.5:
            patch = patch[:, ::-1]
        if cfg.dark_share and rng.random() < cfg.dark_share:  # no draw when off: same crops
            exposure = np.exp(rng.uniform(np.log(cfg.min_exposure), 0.0))
            patch = (patch * exposure).round().astype(np.uint8)
        if cfg.vivid_share and rng.random() < cfg.vivid_share:  # no draw when off
            patch = saturate(patch, float(np.exp(rng.uniform(0.0,
                                                             np.log(cfg.max_saturation)))))
        return patch

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
