"""`siamgan eval`: style distance, content kept and seams of a style on held-out photos."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .images import list_images, load_rgb, resize, split_holdout
from .metrics import (
    colour_stats,
    content_ssim,
    grid_level,
    reinhard_colour_transfer,
    scene_palette,
    seam_score,
    swd_pyramid,
)
from .stylize import Stylizer, TileConfig

LEVELS = ("level0", "level1", "level2", "mean")


@dataclass
class EvalConfig:
    """Which photos are scored and how.

    ``holdout_every`` must match the value the style was trained with, so
    only photos it never saw are scored (0 scores every photo). Seams are
    measured on ``seam_photos`` of them resized to ``seam_width×seam_height``
    (the data set holds 256 px photos only) and stylized at that full size.
    """

    holdout_every: int = 10
    seam_photos: int = 3
    seam_width: int = 2560
    seam_height: int = 1600
    descriptors_per_image: int = 128
    seed: int = 0


def _load(paths: list[Path], desc: str) -> list[np.ndarray]:
    return [load_rgb(p) for p in tqdm(paths, desc=desc, unit="img", leave=False)]


def evaluate(stylizer: Stylizer, photos_dir: str | Path, paintings_dir: str | Path,
             cfg: EvalConfig | None = None, tiling: TileConfig | None = None) -> dict:
    """Score a style; returns a JSON-ready dict (see :func:`format_table`)."""
    cfg = cfg or EvalConfig()
    tiling = tiling or TileConfig()
    photo_paths = list_images(photos_dir)
    if cfg.holdout_every:
        photo_paths = split_holdout(photo_paths, cfg.holdout_every, holdout=True)
    if len(photo_paths) < 2:
        raise ValueError(f"{photos_dir}: need at least 2 held-out photos, found {len(photo_paths)}")
    photos = _load(photo_paths, "photos")
    paintings = _load(list_images(paintings_dir), "paintings")
    if len(paintings) < 4:
        raise ValueError(f"{paintings_dir}: need at least 4 paintings, found {len(paintings)}")
    stylized = [stylizer.stylize_array(p, tiling)
                for p in tqdm(photos, desc="stylize", unit="img", leave=False)]
    mean, std = colour_stats(paintings)
    baseline = [reinhard_colour_transfer(p, mean, std) for p in photos]

    def swd(x: list[np.ndarray], y: list[np.ndarray]) -> dict:
        return swd_pyramid(x, y, cfg.descriptors_per_image, cfg.seed)

    half = len(paintings) // 2
    tile, overlap, blend = stylizer.layout(tiling)
    result: dict = {
        "photos": len(photos), "paintings": len(paintings), "config": asdict(cfg),
        "tiling": asdict(tiling), "tile_size": tile, "overlap": overlap, "blend": blend,
        "palette": stylizer.palette_strength(tiling),
        "swd": {"photos": swd(photos, paintings), "stylized": swd(stylized, paintings),
                "colour_transfer": swd(baseline, paintings),
                "paintings_floor": swd(paintings[:half], paintings[half:])},
        "ssim": {"stylized": float(np.mean([content_ssim(p, s) for p, s in zip(photos, stylized)])),
                 "colour_transfer": float(np.mean([content_ssim(p, b)
                                                   for p, b in zip(photos, baseline)]))},
        "scene": {"stylized": scene_palette(photos, stylized),
                  "colour_transfer": scene_palette(photos, baseline)},
    }
    result["seams"] = seam_scores(stylizer, photos[: cfg.seam_photos], cfg, tiling)
    return result


def tile_pitch(stylizer: Stylizer, height: int, width: int, tiling: TileConfig) -> float:
    """The pitch, in output pixels, of the finest rung's tiles for an image of this size."""
    (rh, rw), (tile, overlap, _) = stylizer.rungs(height, width, tiling)[-1]
    return (tile - overlap) * width / rw


def seam_scores(stylizer: Stylizer, photos: list[np.ndarray], cfg: EvalConfig,
                tiling: TileConfig) -> dict:
    """Seam score and grid level of large stylized photos, the resized inputs as a control."""
    exact = tile_pitch(stylizer, cfg.seam_height, cfg.seam_width, tiling)
    period = round(exact)
    inputs, outputs, level_in, level_out = [], [], [], []
    if photos and (period != exact or period % 8 or period < 16):
        # seam_score folds whole periods of a multiple of 8 px: a tile that lands on
        # another pitch (tile 8, --scale 0.75, …) cannot be scored this way.
        return {"size": f"{cfg.seam_width}x{cfg.seam_height}", "period": exact,
                "input": [], "stylized": [], "max": None,
                "skipped": f"tile period {exact:g} px is not a multiple of 8 px ≥ 16"}
    for p in tqdm(photos, desc="seams", unit="img", leave=False):
        big = resize(p, cfg.seam_width, cfg.seam_height)
        out = stylizer.stylize_array(big, tiling)
        inputs.append(seam_score(big, period)["score"])
        outputs.append(seam_score(out, period)["score"])
        level_in.append(grid_level(big, period)["level"])
        level_out.append(grid_level(out, period)["level"])
    return {"size": f"{cfg.seam_width}x{cfg.seam_height}", "period": period,
            "input": inputs, "stylized": outputs,
            "max": max(outputs) if outputs else None,
            "level": {"input": level_in, "stylized": level_out}}


def format_table(result: dict) -> str:
    """A plain-text table of an :func:`evaluate` result."""
    lines = [f"{result['photos']} held-out photos, {result['paintings']} paintings, "
             f"tile {result['tile_size']}"
             + (f", overlap {result['overlap']} ({result['blend']})" if result.get("overlap")
                else "")
             + (f", palette {result['palette']:g}" if result.get("palette") else ""),
             "",
             f"{'SWD ×1e3 vs paintings':<24}{'image':>9}{'½ band':>9}{'¼ band':>9}{'mean':>9}"]
    names = {"photos": "raw photos", "stylized": "stylized",
             "colour_transfer": "colour transfer", "paintings_floor": "paintings (floor)"}
    for key, label in names.items():
        row = result["swd"][key]
        lines.append(f"{label:<24}" + "".join(f"{row[k]:>9.1f}" for k in LEVELS))
    ssim = result["ssim"]
    lines += ["", f"content SSIM (4× down): stylized {ssim['stylized']:.3f}, "
                  f"colour transfer {ssim['colour_transfer']:.3f}"]
    lines += _scene_lines(result.get("scene", {}),
                          {"stylized": "stylized", "colour_transfer": "colour transfer"})
    seams = result["seams"]
    if seams.get("skipped"):
        lines.append(f"seam score skipped: {seams['skipped']}")
    if seams["stylized"]:
        lines.append(f"seam score at {seams['size']} (period {seams['period']}): stylized "
                     + ", ".join(f"{s:.2f}" for s in seams["stylized"])
                     + "; inputs " + ", ".join(f"{s:.2f}" for s in seams["input"]))
        level = seams["level"]
        lines.append("grid level (luma levels): stylized "
                     + ", ".join(f"{v:.1f}" for v in level["stylized"])
                     + "; inputs " + ", ".join(f"{v:.1f}" for v in level["input"]))
    return "\n".join(lines)


WHOLE = 256
"""Side of the square a large picture is seen whole at: the paintings' size."""


def evaluate_large(stylizer: Stylizer, large_dir: str | Path, paintings_dir: str | Path,
                   tiling: TileConfig | None = None, yardstick_dir: str | Path | None = None,
                   sheets_dir: str | Path | None = None, save_dir: str | Path | None = None,
                   cfg: EvalConfig | None = None) -> dict:
    """Score a style on large photos, each stylized at its full size.

    Seen whole (every picture, its input and, if given, the yardstick's output of
    the same name from ``yardstick_dir``, resized to 256×256, the paintings' size):
    SWD at three levels against the paintings and content SSIM against the input.
    At full size: the seam score and grid level at the finest rung's tile pitch,
    and the wall time. ``sheets_dir`` gets one side-by-side sheet per photo
    (:func:`side_by_side`); ``save_dir`` the full-size outputs (PNG).
    """
    import time

    cfg = cfg or EvalConfig()
    tiling = tiling or TileConfig()
    paths = list_images(large_dir)
    if not paths:
        raise ValueError(f"{large_dir}: no images")
    paintings = _load(list_images(paintings_dir), "paintings")
    if len(paintings) < 4:
        raise ValueError(f"{paintings_dir}: need at least 4 paintings, found {len(paintings)}")
    wholes: dict[str, list[np.ndarray]] = {"photos": [], "stylized": [], "yardstick": []}
    ssim: dict[str, list[float]] = {"stylized": [], "yardstick": []}
    per_image = []
    for path in tqdm(paths, desc="large photos", unit="img", leave=False):
        photo = load_rgb(path)
        h, w = photo.shape[:2]
        t0 = time.perf_counter()
        out = stylizer.stylize_array(photo, tiling)
        seconds = time.perf_counter() - t0
        pitch = tile_pitch(stylizer, h, w, tiling)
        row = {"name": path.name, "size": [w, h], "seconds": round(seconds, 2),
               "rungs": [list(size) for size, _ in stylizer.rungs(h, w, tiling)]}
        if pitch == round(pitch) and pitch % 8 == 0 and pitch >= 16:
            row |= {"pitch": int(pitch), "seam": seam_score(out, int(pitch))["score"],
                    "seam_input": seam_score(photo, int(pitch))["score"],
                    "level": grid_level(out, int(pitch))["level"]}
        whole_in = resize(photo, WHOLE, WHOLE)
        whole_out = resize(out, WHOLE, WHOLE)
        wholes["photos"].append(whole_in)
        wholes["stylized"].append(whole_out)
        ssim["stylized"].append(content_ssim(whole_in, whole_out))
        columns = [("input", photo), ("siamgan", out)]
        if yardstick_dir is not None:
            found = _same_stem(Path(yardstick_dir), path.stem)
            if found is not None:
                ref = load_rgb(found)
                if ref.shape != photo.shape:
                    ref = resize(ref, w, h)
                wholes["yardstick"].append(resize(ref, WHOLE, WHOLE))
                ssim["yardstick"].append(content_ssim(whole_in, wholes["yardstick"][-1]))
                row["yardstick_ssim"] = ssim["yardstick"][-1]
                columns.append(("yardstick", ref))
        row["ssim"] = ssim["stylized"][-1]
        if sheets_dir is not None:
            Path(sheets_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(side_by_side([c for _, c in columns])).save(
                Path(sheets_dir) / f"{path.stem}.jpg", quality=90)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(out).save(Path(save_dir) / f"{path.stem}.png")
        per_image.append(row)

    def swd(x: list[np.ndarray]) -> dict | None:
        if len(x) < 2:
            return None
        return swd_pyramid(x, paintings, cfg.descriptors_per_image, cfg.seed)

    seams = [r["seam"] for r in per_image if "seam" in r]
    return {
        "photos": len(paths), "paintings": len(paintings), "tiling": asdict(tiling),
        "whole": WHOLE,
        "swd": {k: swd(v) for k, v in wholes.items()},
        "ssim": {k: float(np.mean(v)) if v else None for k, v in ssim.items()},
        "scene": {k: scene_palette(wholes["photos"], v) for k, v in wholes.items()
                  if k != "photos" and len(v) == len(paths) > 1},
        "seam_max": max(seams) if seams else None,
        "seconds": round(sum(r["seconds"] for r in per_image), 1),
        "images": per_image,
    }


def _same_stem(folder: Path, stem: str) -> Path | None:
    for p in list_images(folder):
        if p.stem == stem:
            return p
    return None


def side_by_side(images: list[np.ndarray], view_width: int = 640, crop: int = 320) -> np.ndarray:
    """One row of whole pictures (``view_width`` wide) over one row of 100 % crops.

    Crops are ``crop`` px squares, the same place in every image: the centre of the
    input's most detailed ``crop``-sized block (largest luma gradient energy), where
    blur and a uniform hatch are easiest to tell apart.
    """
    h, w = images[0].shape[:2]
    view_h = max(1, round(h * view_width / w))
    views = [resize(im, view_width, view_h) for im in images]
    cy, cx = _busiest_block(images[0], min(crop, h, w))
    side = min(crop, h, w)
    crops = [im[cy : cy + side, cx : cx + side] for im in images]
    gap = 6
    cell = max(view_width, side)
    sheet = np.full((view_h + gap + side, len(images) * (cell + gap) - gap, 3), 255, np.uint8)
    for i, (v, c) in enumerate(zip(views, crops)):
        x = i * (cell + gap)
        sheet[:view_h, x : x + view_width] = v
        sheet[view_h + gap :, x : x + side] = c
    return sheet


def _busiest_block(img: np.ndarray, side: int) -> tuple[int, int]:
    luma = img.astype(np.float32).mean(axis=2)
    energy = np.abs(np.diff(luma, axis=0))[:, :-1] + np.abs(np.diff(luma, axis=1))[:-1]
    h, w = energy.shape
    best, where = -1.0, (0, 0)
    for y in range(0, max(1, h - side + 1), max(1, side // 2)):
        for x in range(0, max(1, w - side + 1), max(1, side // 2)):
            e = float(energy[y : y + side, x : x + side].mean())
            if e > best:
                best, where = e, (y, x)
    return where


def _scene_lines(scene: dict, labels: dict[str, str]) -> list[str]:
    """:func:`~siamgan.metrics.scene_palette` as lines of text (none if not measured)."""
    rows = [(label, scene[key]) for key, label in labels.items() if key in scene]
    if not rows:
        return []
    lines = ["", f"palette with the scene: brightness follows the photo (correlation), "
                 f"mean colours' spread (photos {rows[0][1]['photo_spread']:.1f})"]
    return lines + [f"  {label:<22}{s['brightness']:>7.3f}{s['spread']:>9.1f}"
                    for label, s in rows]


def format_large(result: dict) -> str:
    """A plain-text table of an :func:`evaluate_large` result."""
    lines = [f"{result['photos']} large photos seen whole at {result['whole']}², "
             f"{result['paintings']} paintings",
             "", f"{'whole-picture SWD ×1e3':<24}{'image':>9}{'½ band':>9}{'¼ band':>9}"
             f"{'mean':>9}{'SSIM':>8}"]
    for key, label in (("photos", "raw photos"), ("stylized", "siamgan"),
                       ("yardstick", "yardstick")):
        row = result["swd"].get(key)
        if row is None:
            continue
        ssim = result["ssim"].get(key)
        lines.append(f"{label:<24}" + "".join(f"{row[k]:>9.1f}" for k in LEVELS)
                     + (f"{ssim:>8.3f}" if ssim is not None else ""))
    lines += _scene_lines(result.get("scene", {}),
                          {"stylized": "siamgan", "yardstick": "yardstick"})
    lines.append("")
    for r in result["images"]:
        seam = (f"seam {r['seam']:.2f} (input {r['seam_input']:.2f}, pitch {r['pitch']}), "
                f"level {r['level']:.1f}" if "seam" in r else "seam not scored")
        lines.append(f"{r['name']:<20}{r['size'][0]}×{r['size'][1]}  {r['seconds']:>6.1f} s  "
                     f"SSIM {r['ssim']:.3f}  {seam}")
    if result["seam_max"] is not None:
        lines.append(f"largest seam score {result['seam_max']:.2f}; total {result['seconds']} s")
    return "\n".join(lines)
