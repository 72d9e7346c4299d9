"""Rebuild the images of docs/gallery.md and the README's before/after pair.

    python docs/make_gallery.py --large ../shared/data/hires-photos \
        --yardstick /path/to/yardstick-outputs [--names Garden Storm Wood LadyBird] \
        [--held ../shared/data/vangogh2photo/photo --held-yardstick DIR]

Real large photos are stylized at full size with the shipped ``vangogh`` style at default
settings. Each gets a sheet: input | siamgan | yardstick (``benchmarks/yardstick.py``'s
output of the same photo, when given), seen whole above and as 100 % crops below
(:func:`siamgan.evaluate.side_by_side`). The README gets the first photo before/after.

With ``--held``, ``held-out.jpg`` is one grid of 8 of the photos ``train
--holdout-every 10`` kept out (every third of them, at their own 256 px): input |
siamgan | yardstick (``benchmarks/yardstick.py --holdout-every 10``'s outputs, when
given) in each row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from siamgan import Stylizer
from siamgan.evaluate import side_by_side
from siamgan.images import list_images, load_rgb, resize, split_holdout

OUT = Path(__file__).parent / "images"
NAMES = ["Garden", "Storm", "Wood", "LadyBird"]


def save(name: str, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(OUT / name, quality=88)


def held_out_grid(style: Stylizer, photos: Path, yardstick: Path | None,
                  count: int = 8, gap: int = 4) -> np.ndarray:
    """Rows of input | siamgan | yardstick for ``count`` held-out photos (every third)."""
    held = split_holdout(list_images(photos), 10, holdout=True)[::3][:count]
    rows = []
    for path in held:
        photo = load_rgb(path)
        cells = [photo, style.stylize_array(photo)]
        if yardstick:
            ref = load_rgb(next(yardstick.glob(f"{path.stem}.*")))
            cells.append(resize(ref, photo.shape[1], photo.shape[0]))
        cells = [resize(c, round(c.shape[1] * 256 / c.shape[0]), 256) for c in cells]
        rows.append(np.concatenate([np.pad(c, ((0, gap), (0, gap), (0, 0)),
                                           constant_values=255) for c in cells], axis=1))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)),
                                  constant_values=255) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", required=True, help="folder of large photos")
    ap.add_argument("--yardstick", help="folder of the yardstick's outputs (same stems)")
    ap.add_argument("--style", default="vangogh")
    ap.add_argument("--names", nargs="+", default=NAMES)
    ap.add_argument("--held", type=Path, help="the style's training photos (held-out grid)")
    ap.add_argument("--held-yardstick", type=Path,
                    help="the yardstick's outputs of the held-out photos (same stems)")
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
    if args.held:
        save("held-out.jpg", held_out_grid(style, args.held, args.held_yardstick))


if __name__ == "__main__":
    main()
