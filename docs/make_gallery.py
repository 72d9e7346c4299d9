"""Rebuild the images of docs/gallery.md and the README's before/after pair.

    python docs/make_gallery.py --large ../shared/data/hires-photos \
        --yardstick /path/to/yardstick-outputs [--names Garden Storm Wood LadyBird]

Real large photos are stylized at full size with the shipped ``vangogh`` style at default
settings. Each gets a sheet: input | siamgan | yardstick (``benchmarks/yardstick.py``'s
output of the same photo, when given), seen whole above and as 100 % crops below
(:func:`siamgan.evaluate.side_by_side`). The README gets the first photo before/after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from siamgan import Stylizer
from siamgan.evaluate import side_by_side
from siamgan.images import load_rgb, resize

OUT = Path(__file__).parent / "images"
NAMES = ["Garden", "Storm", "Wood", "LadyBird"]


def save(name: str, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(OUT / name, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", required=True, help="folder of large photos")
    ap.add_argument("--yardstick", help="folder of the yardstick's outputs (same stems)")
    ap.add_argument("--style", default="vangogh")
    ap.add_argument("--names", nargs="+", default=NAMES)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    style = Stylizer.from_style(args.style, "cpu")
    for i, name in enumerate(args.names):
        photo = load_rgb(next(Path(args.large).glob(f"{name}.*")))
        out = style.stylize_array(photo)
        columns = [photo, out]
        if args.yardstick:
            ref = load_rgb(next(Path(args.yardstick).glob(f"{name}.*")))
            columns.append(ref if ref.shape == photo.shape
                           else resize(ref, photo.shape[1], photo.shape[0]))
        save(f"large-{name.lower()}.jpg", side_by_side(columns, view_width=560, crop=360))
        if i == 0:
            h, w = photo.shape[:2]
            half = [resize(im, 960, round(h * 960 / w)) for im in (photo, out)]
            save("readme-large.jpg", np.concatenate(half, axis=1))


if __name__ == "__main__":
    main()
