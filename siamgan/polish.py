"""Seam polish: fine-tune a trained style so its abutting tiles leave no seams.

A style trained through the Combo model can still leave a faint tile grid on large,
smooth photos: pixels within a few px of a tile's border are computed from reflected
borders, and on the nearly flat tiles of a big photo that difference shows. This stage
fine-tunes the generator (the student) through the Combo model on photo crops, most of
them enlarged like the tiles of a large photo, with two terms:

* the seam term (:func:`losses.seam_contrast`): no position of the tile grid may stand
  out in the pixel steps;
* optionally, the level term (:func:`losses.grid_level` of the difference from the
  teacher run on whole crops): nor in its mean colour (a soft frame along the tile
  borders has small steps but still shows);
* an anchor (:func:`losses.anchor_l1`): L1 to a frozen copy of the style (the teacher)
  run *the same tiled way*, so the student keeps every stroke and colour the teacher
  can reach and changes only what the seam term asks for.

There is no discriminator. The anchor's target is reachable by construction (it is the
student's own starting point), unlike distilling the generator run on whole images,
which asks tiles for pixels that depend on surroundings they cannot see and blurs them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from . import losses
from .data import CropConfig, CropSampler, load_collection
from .images import image_grid, to_pixels
from .runs import (
    StatsLog,
    check_finite,
    deferred_interrupt,
    due,
    load_checkpoint,
    plot_losses,
    prepare_run,
    rng_state,
    save_checkpoint,
    save_image,
    set_rng_state,
    write_json,
)
from .stylize import load_style, resolve_device
from .tiling import combo
from .weights_io import export_path, export_style, find_style, save_weights


@dataclass
class PolishConfig:
    """A seam-polish run; written to ``runs/NAME/config.json``.

    Crops are ``crop_tiles`` × the style's tile size on a side; half of them are
    enlarged by a factor drawn log-uniformly from [1, ``max_zoom``] (the flat tiles of a
    large photo), the rest are taken at the photo's own scale. A ``dark_share`` of them
    is darkened by up to 8× (night scenes; :class:`data.CropConfig`). The level term
    is taken per crop with ``level_per_image``, else on the batch mean.
    """

    style: str = "vangogh"
    steps: int = 400
    batch_size: int = 4
    crop_tiles: int = 4
    lr: float = 5e-5
    seam_weight: float = 1.0
    level_weight: float = 0.0
    level_per_image: bool = False
    anchor_weight: float = 1.0
    max_zoom: float = 10.0
    dark_share: float = 0.0
    max_image_side: int = 512
    holdout_every: int = 0
    seed: int = 0
    sample_every: int = 100
    checkpoint_every: int = 100
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be ≥ 1")
        if self.crop_tiles < 2:
            raise ValueError("crop_tiles must be ≥ 2: the seam term needs joins in the crop")
        if self.lr <= 0 or min(self.seam_weight, self.level_weight, self.anchor_weight) < 0:
            raise ValueError("lr must be > 0 and the weights ≥ 0")
        if self.max_zoom < 1:
            raise ValueError("max_zoom must be ≥ 1")
        if not 0 <= self.dark_share <= 1:
            raise ValueError("dark_share must be in [0, 1]")

    @classmethod
    def from_dict(cls, data: dict) -> PolishConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def polish_loss(student: torch.nn.Module, teacher: torch.nn.Module, crops: torch.Tensor,
                tile: int, cfg: PolishConfig) -> tuple[torch.Tensor, dict]:
    """Anchor + seam term of the student through the Combo model on ``crops``."""
    with torch.no_grad():
        target = combo(teacher, crops, tile)
    out = combo(student, crops, tile)
    anchor = losses.anchor_l1(out, target)
    seam = losses.seam_contrast(out, tile)
    loss = cfg.anchor_weight * anchor + cfg.seam_weight * seam
    stats = {"anchor": anchor.item(), "seam": seam.item()}
    if cfg.level_weight:
        # The teacher on whole crops has no tile grid at all: the level term looks at
        # the tiled output's difference from it, so the photos' own content cancels.
        with torch.no_grad():
            untiled = teacher(crops)
        level = losses.grid_level(out - untiled, tile, cfg.level_per_image)
        loss = loss + cfg.level_weight * level
        stats["level"] = level.item()
    return loss, {"loss": loss.item(), **stats}


def polish(cfg: PolishConfig, photos: str | Path, name: str, runs_dir: str | Path = "runs",
           resume: bool = False, export: bool = True, progress: bool = True) -> Path:
    """Polish style ``cfg.style`` on crops of ``photos``; returns the exported weights.

    Writes ``runs_dir/name/`` (config, stats, loss plot, sample sheets, checkpoint).
    Ctrl-C saves a checkpoint and raises KeyboardInterrupt; ``resume`` continues it
    with the checkpoint's config (only ``steps`` and ``device`` come from ``cfg``).
    The name and folders are checked first, as for ``train`` (:func:`prepare_run`).
    """
    inputs = [photos] if resume else [photos, find_style(cfg.style)]
    run = prepare_run(runs_dir, name, resume, inputs, export_path(name) if export else None)
    device = resolve_device(cfg.device)
    step = 0
    if resume:
        state = load_checkpoint(run)
        cfg = PolishConfig.from_dict({**state["config"], "steps": cfg.steps,
                                      "device": cfg.device})
    teacher, style_cfg, source = load_style(cfg.style)
    tile = int(style_cfg["tile_size"])
    size = cfg.crop_tiles * tile
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), cfg.lr, betas=(0.5, 0.999))
    images = load_collection(photos, cfg.max_image_side, size, desc="photos",
                             holdout_every=cfg.holdout_every, progress=progress)
    crop_cfg = CropConfig(size, 1.0, True, cfg.max_zoom, cfg.dark_share)
    sampler = CropSampler(images, crop_cfg, cfg.seed)
    # Fixed sheet crops, some enlarged (up to 4×), where a tile grid shows most.
    fixed = CropSampler(images, CropConfig(size, 1.0, False, 4.0), 12345).sample(4)
    stats_log = StatsLog(run)
    if resume:
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["opt"])
        sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        stats_log.truncate_after(step)
    (run / "samples").mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", {"name": name, "photos": str(photos),
                                     "source": str(source), **asdict(cfg)})
    earlier = style_cfg.get("polish", [])  # a style polished before keeps that record
    earlier = [earlier] if isinstance(earlier, dict) else list(earlier)

    def style_config() -> dict:
        return {**style_cfg, "name": name,
                "description": f"{style_cfg.get('description', cfg.style)}; seam-polished "
                               f"({step} steps)",
                "polish": [*earlier, {"from": str(source), "photos": str(photos), "steps": step,
                                      "images": len(images), "config": asdict(cfg)}]}

    def checkpoint() -> None:
        save_checkpoint(run, {"step": step, "config": asdict(cfg),
                              "student": student.state_dict(), "opt": opt.state_dict(),
                              "sampler": sampler.state(), "rng": rng_state()})
        save_weights(run / f"{name}.safetensors", student.state_dict(), style_config())

    bar = tqdm(total=cfg.steps, initial=step, desc=f"polish {name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    try:
        with deferred_interrupt() as interrupt:
            while step < cfg.steps:
                t0 = time.perf_counter()
                crops = sampler.sample(cfg.batch_size, device)
                loss, stats = polish_loss(student, teacher, crops, tile, cfg)
                check_finite(stats, step + 1, run)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                stats_log.append({"step": step, **{k: round(v, 6) for k, v in stats.items()},
                                  "step_s": round(time.perf_counter() - t0, 4)})
                bar.update(1)
                bar.set_postfix(anchor=f"{stats['anchor']:.4f}", seam=f"{stats['seam']:.4f}",
                                refresh=False)
                if due(step, cfg.sample_every, cfg.steps):
                    save_image(run / "samples" / f"{step:08d}.png",
                               _sample_sheet(teacher, student, fixed.to(device), tile))
                    plot_losses(stats_log.read(), ["anchor", "seam", "level"],
                                run / "losses.png")
                if due(step, cfg.checkpoint_every, cfg.steps) or interrupt["requested"]:
                    checkpoint()
                if interrupt["requested"]:
                    raise KeyboardInterrupt
    finally:
        bar.close()
    if not export:
        return run / f"{name}.safetensors"
    return export_style(name, student.state_dict(), style_config(), run)


@torch.no_grad()
def _sample_sheet(teacher: torch.nn.Module, student: torch.nn.Module, crops: torch.Tensor,
                  tile: int):
    """Rows of: the photo crop, the style tiled before polishing, and after."""
    student.eval()
    before, after = combo(teacher, crops, tile), combo(student, crops, tile)
    student.train()
    rows = zip(to_pixels(crops), to_pixels(before), to_pixels(after))
    return image_grid([img for row in rows for img in row], columns=3)
