"""Small helpers shared by the tests (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def folder(path: Path, n: int, seed: int, size: tuple[int, int] = (40, 50)) -> Path:
    """``path`` filled with ``n`` random-noise PNGs of ``size`` (h, w), seeded."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path
