"""The Stylizer: a trained generator applied to images of any size, tile by tile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import resize
from .models import GeneratorConfig, PatchGenerator
from .tiling import tiled_apply
from .weights_io import WeightsError, check_state, find_style, load_weights


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TileConfig:
    """How an image is tiled at inference.

    ``tile_size`` None means the style's own tile size (what it was trained
    at). ``overlap`` is in pixels; 0 (the default) abuts tiles exactly as the
    Combo model did in training. ``scale`` resizes the input before stylizing
    (smaller → larger brush strokes relative to the picture); the result is
    resized back so the output always has the input's size.
    """

    tile_size: int | None = None
    overlap: int = 0
    scale: float = 1.0
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.tile_size is not None and (self.tile_size < 4 or self.tile_size % 4):
            raise ValueError("tile_size must be a positive multiple of 4")
        if self.overlap < 0:
            raise ValueError("overlap must be ≥ 0")
        if not 0.01 <= self.scale <= 8:
            raise ValueError("scale must be between 0.01 and 8")
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")


class Stylizer:
    """Stylize images with one generator.

    >>> s = Stylizer.from_style("vangogh")          # doctest: +SKIP
    >>> painting = s.stylize(Image.open("photo.jpg"))  # doctest: +SKIP
    """

    def __init__(self, generator: torch.nn.Module, tile_size: int,
                 device: str | torch.device = "cpu", config: dict | None = None) -> None:
        self.device = resolve_device(str(device))
        self.generator = generator.to(self.device).eval()
        self.tile_size = tile_size
        self.config = config or {}

    @classmethod
    def from_style(cls, name_or_path: str | Path, device: str = "auto") -> Stylizer:
        """Load a style by name (shipped or user) or from a ``.safetensors`` path."""
        path = find_style(str(name_or_path))
        tensors, config = load_weights(path)
        if config.get("kind", "style") != "style":
            raise WeightsError(f"{path}: holds a {config.get('kind')!r} model, not a style")
        try:
            gen = PatchGenerator(GeneratorConfig(**config["generator"]))
            tile_size = int(config["tile_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path}: bad generator config: missing or invalid {e}") from e
        check_state(path, gen, tensors)
        gen.load_state_dict(tensors)
        return cls(gen, tile_size, device, config)

    @torch.inference_mode()
    def _run_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.generator(tiles.to(self.device)).float().cpu()

    def stylize_array(self, pixels: np.ndarray, tiling: TileConfig | None = None,
                      on_band=None) -> np.ndarray:
        """H×W×3 uint8 → H×W×3 uint8, stylized tile by tile."""
        t = tiling or TileConfig()
        h, w = pixels.shape[:2]
        work = pixels
        if t.scale != 1.0:
            work = resize(pixels, max(1, round(w * t.scale)), max(1, round(h * t.scale)))
        tile = t.tile_size or self.tile_size
        out = tiled_apply(work, self._run_tiles, tile, min(t.overlap, tile - 4),
                          t.batch_size, on_band)
        return resize(out, w, h)

    def stylize(self, image: Image.Image, tiling: TileConfig | None = None) -> Image.Image:
        """Stylize a PIL image; alpha is kept, greyscale becomes RGB."""
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA", "PA") else None
        out = Image.fromarray(self.stylize_array(np.asarray(image.convert("RGB")), tiling))
        if alpha is not None:
            out.putalpha(alpha)
        return out
