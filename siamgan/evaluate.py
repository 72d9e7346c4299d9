"""`siamgan eval`: style distance, content kept and seams of a style on held-out photos."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .images import list_images, load_rgb, resize, split_holdout
from .metrics import (
    colour_stats,
    content_ssim,
    grid_level,
    reinhard_colour_transfer,
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
    }
    result["seams"] = seam_scores(stylizer, photos[: cfg.seam_photos], cfg, tiling)
    return result


def seam_scores(stylizer: Stylizer, photos: list[np.ndarray], cfg: EvalConfig,
                tiling: TileConfig) -> dict:
    """Seam score and grid level of large stylized photos, the resized inputs as a control."""
    tile, overlap, _ = stylizer.layout(tiling)
    exact = (tile - overlap) / tiling.scale  # the tiles' pitch
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
