"""Rebuild the images of docs/gallery.md and the README's before/after pair.

    python docs/make_gallery.py --photos ../shared/data/vangogh2photo/photo \
        --before /path/to/stage3.safetensors [--no-combo /path/to/v_nocombo.safetensors]

Held-out photos (every 10th, as in training) are resized to 2560×1600, the
largest photos the offline data set can give, and stylized at that full size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from siamgan import Stylizer, TileConfig
from siamgan.images import list_images, load_rgb, resize, split_holdout

OUT = Path(__file__).parent / "images"


def save(name: str, pixels: np.ndarray, width: int | None = None) -> None:
    img = Image.fromarray(pixels)
    if width is not None and img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.save(OUT / name, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True)
    ap.add_argument("--no-combo", help="weights of the no-Combo ablation, for the crops")
    ap.add_argument("--before", help="weights of the style before the seam polish, for the crops")
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    style = Stylizer.from_style("vangogh", "cpu")
    ablation = Stylizer.from_style(args.no_combo, "cpu") if args.no_combo else None
    before = Stylizer.from_style(args.before, "cpu") if args.before else None
    rocket = load_rgb(Path(__file__).parent.parent / "examples" / "rocket.jpg")
    save("readme-rocket.jpg", np.concatenate([rocket, style.stylize_array(rocket)], axis=1))
    photos = split_holdout(list_images(args.photos), 10, holdout=True)[: args.count]
    for i, path in enumerate(photos, 1):
        big = resize(load_rgb(path), 2560, 1600)
        out = style.stylize_array(big)
        save(f"gallery-{i}-before.jpg", big, 1280)
        save(f"gallery-{i}-after.jpg", out, 1280)
        crop = np.s_[600:900, 1100:1500]  # full-resolution crop, 4 × 6 tiles
        # input, shipped (default settings), without its palette match, [before the
        # polish], [no-Combo ablation], --seamless
        row = [big[crop], out[crop], style.stylize_array(big, TileConfig(palette=0.0))[crop]]
        row += [m.stylize_array(big)[crop] for m in (before, ablation) if m is not None]
        row.append(style.stylize_array(big, TileConfig(seamless=True))[crop])
        save(f"gallery-{i}-crops.jpg", np.concatenate(row, axis=1))


if __name__ == "__main__":
    main()
