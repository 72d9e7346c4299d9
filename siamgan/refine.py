"""Seam refinement: fine-tune a style so its tiles agree with the untiled generator.

G is fully convolutional, so one pass over a whole image leaves no seams, but it
needs memory for the whole image; tiled inference gives each tile only itself and
reflected borders, and pixels near a tile border come out differently. This stage
distils the first into the second. A frozen copy of the style's generator (the
teacher) translates crops that carry ``context`` pixels of real surroundings; the
student, which starts from the same weights, is trained by L1 to give the same
pixels through the Combo model. There is no discriminator: the palette and strokes
stay those of the trained style, and what changes is near the tile borders.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from . import losses
from .data import CropConfig, CropSampler, load_collection
from .images import image_grid, to_pixels
from .models import DiscriminatorConfig, SiameseDiscriminator
from .runs import (
    StatsLog,
    deferred_interrupt,
    load_checkpoint,
    plot_losses,
    rng_state,
    save_checkpoint,
    save_image,
    set_rng_state,
    write_json,
)
from .stylize import load_style, resolve_device
from .tiling import combo
from .train import TrainingDiverged, update_ema
from .weights_io import save_weights, user_styles_dir


@dataclass
class RefineConfig:
    """A seam-refinement run; written to ``runs/NAME/config.json``."""

    style: str = "vangogh"
    steps: int = 2000
    batch_size: int = 8
    lr: float = 5e-5
    context: int = 32
    border: int = 8
    min_crop_scale: float = 0.5
    max_crop_scale: float = 4.0
    max_image_side: int = 512
    holdout_every: int = 0
    ema_decay: float = 0.99
    adversarial: float = 0.0
    lr_d: float = 1e-4
    seed: int = 0
    sample_every: int = 250
    checkpoint_every: int = 250
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.context < 0 or self.context % 4:
            raise ValueError("context must be a multiple of 4 (the generator's stride), ≥ 0")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be ≥ 1")
        if not 0 < self.min_crop_scale <= self.max_crop_scale:
            raise ValueError("need 0 < min_crop_scale ≤ max_crop_scale")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        if self.adversarial < 0:
            raise ValueError("adversarial must be ≥ 0")

    @classmethod
    def from_dict(cls, data: dict) -> RefineConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def border_mask(size: int, tile: int, width: int) -> torch.Tensor:
    """size×size bool mask, True within ``width`` px of a tile border (the crop's edges too)."""
    pos = torch.arange(size) % tile
    near = torch.minimum(pos, tile - 1 - pos) < width
    return near[:, None] | near[None, :]


def tiled_and_untiled(student: torch.nn.Module, teacher: torch.nn.Module,
                      crops: torch.Tensor, tile: int, context: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The student through the Combo model on the central 2S×2S of ``crops``, and the
    teacher's output there when it sees the whole (2S + 2·context)² crop."""
    c = context
    inner = crops[..., c:crops.shape[-2] - c, c:crops.shape[-1] - c]
    with torch.no_grad():
        target = teacher(crops)[..., c:crops.shape[-2] - c, c:crops.shape[-1] - c]
    return combo(student, inner, tile), target


def l1_by_region(out: torch.Tensor, target: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean L1, and its parts near tile borders (``mask``) and away from them."""
    err = (out - target).abs().mean(dim=(0, 1))
    return err.mean(), {"border_l1": err[mask].mean().item(),
                        "interior_l1": err[~mask].mean().item()}


def refine_loss(student: torch.nn.Module, teacher: torch.nn.Module, crops: torch.Tensor,
                tile: int, context: int, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """L1 between the student through the Combo model and the teacher run untiled."""
    return l1_by_region(*tiled_and_untiled(student, teacher, crops, tile, context), mask)


def critic_step(disc: SiameseDiscriminator, opt: torch.optim.Optimizer,
                real: torch.Tensor, fake: torch.Tensor) -> dict:
    """One hinge update of the critic: the untiled teacher is real, tiled output fake."""
    score = disc(torch.cat([real, fake]))[1]
    loss = losses.hinge_d(*score.split(real.shape[0]))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss_d": loss.item()}


def refine(cfg: RefineConfig, photos: str | Path, name: str, runs_dir: str | Path = "runs",
           resume: bool = False, export: bool = True, progress: bool = True) -> Path:
    """Refine style ``cfg.style`` on crops of ``photos``; returns the exported weights.

    Writes ``runs_dir/name/`` (config, stats, loss plot, samples, checkpoint). Ctrl-C
    saves a checkpoint and raises KeyboardInterrupt; ``resume`` continues it.
    """
    run = Path(runs_dir) / name
    device = resolve_device(cfg.device)
    step = 0
    if resume:
        state = load_checkpoint(run)
        cfg = RefineConfig.from_dict({**state["config"], "steps": cfg.steps,
                                      "device": cfg.device})
    teacher, style_cfg, source = load_style(cfg.style)
    tile = int(style_cfg["tile_size"])
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(teacher)
    opt = torch.optim.Adam(student.parameters(), cfg.lr, betas=(0.5, 0.999))
    # Optional: a critic that tells the untiled teacher's pixels from the tiled student's,
    # so the student is pushed to commit to sharp strokes near borders, not their average.
    disc = opt_d = None
    if cfg.adversarial:
        layers = min(DiscriminatorConfig.layers, (2 * tile).bit_length() - 1)
        disc = SiameseDiscriminator(DiscriminatorConfig(layers=layers)).to(device)
        opt_d = torch.optim.Adam(disc.parameters(), cfg.lr_d, betas=(0.5, 0.999))
    images = load_collection(photos, cfg.max_image_side, 2 * tile + 2 * cfg.context,
                             desc="photos", holdout_every=cfg.holdout_every, progress=progress)
    crop = CropConfig(2 * tile + 2 * cfg.context, cfg.min_crop_scale, True, cfg.max_crop_scale)
    sampler = CropSampler(images, crop, cfg.seed)
    fixed = CropSampler(images, CropConfig(crop.size, 2.0, False, 2.0), 12345).sample(4)
    mask = border_mask(2 * tile, tile, cfg.border).to(device)
    stats_log = StatsLog(run)
    if resume:
        student.load_state_dict(state["student"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        if disc is not None:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        stats_log.truncate_after(step)
    (run / "samples").mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", {"name": name, "photos": str(photos),
                                     "source": str(source), **asdict(cfg)})
    out_cfg = {**style_cfg, "name": name,
               "description": f"{style_cfg.get('description', cfg.style)}, seam-refined"}

    def style_config() -> dict:
        return {**out_cfg, "refine": {"from": cfg.style, "photos": str(photos), "steps": step,
                                      "config": asdict(cfg)}}

    def checkpoint() -> None:
        save_checkpoint(run, {"step": step, "config": asdict(cfg),
                              "student": student.state_dict(), "ema": ema.state_dict(),
                              "opt": opt.state_dict(), "sampler": sampler.state(),
                              "rng": rng_state(),
                              **({"discriminator": disc.state_dict(),
                                  "opt_d": opt_d.state_dict()} if disc is not None else {})})
        save_weights(run / f"{name}.safetensors", ema.state_dict(), style_config())

    bar = tqdm(total=cfg.steps, initial=step, desc=f"refine {name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    try:
        with deferred_interrupt() as interrupt:
            while step < cfg.steps:
                t0 = time.perf_counter()
                crops = sampler.sample(cfg.batch_size, device)
                out, target = tiled_and_untiled(student, teacher, crops, tile, cfg.context)
                loss, stats = l1_by_region(out, target, mask)
                if disc is not None:
                    stats.update(critic_step(disc, opt_d, target, out.detach()))
                    disc.requires_grad_(False)
                    g_adv = losses.hinge_g(disc(out)[1])
                    disc.requires_grad_(True)
                    stats["g_adv"] = g_adv.item()
                    loss = loss + cfg.adversarial * g_adv
                if not math.isfinite(loss.item()):
                    raise TrainingDiverged(f"non-finite loss at step {step + 1}; "
                                           f"the last good checkpoint in {run} is kept")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                update_ema(ema, student, min(cfg.ema_decay, (1 + step) / (10 + step)))
                step += 1
                stats_log.append({"step": step, "loss": round(loss.item(), 6),
                                  **{k: round(v, 6) for k, v in stats.items()},
                                  "step_s": round(time.perf_counter() - t0, 4)})
                bar.update(1)
                bar.set_postfix(border=f"{stats['border_l1']:.4f}",
                                interior=f"{stats['interior_l1']:.4f}", refresh=False)
                if step % cfg.sample_every == 0 or step == cfg.steps:
                    save_image(run / "samples" / f"{step:08d}.png",
                               _sample_sheet(teacher, ema, fixed.to(device), tile, cfg.context))
                    plot_losses(stats_log.read(), ["border_l1", "interior_l1"],
                                run / "losses.png")
                if (step % cfg.checkpoint_every == 0 or step == cfg.steps
                        or interrupt["requested"]):
                    checkpoint()
                if interrupt["requested"]:
                    raise KeyboardInterrupt
    finally:
        bar.close()
    if not export:
        return run / f"{name}.safetensors"
    return save_weights(user_styles_dir() / f"{name}.safetensors", ema.state_dict(),
                        style_config())


@torch.no_grad()
def _sample_sheet(teacher: torch.nn.Module, ema: torch.nn.Module, crops: torch.Tensor,
                  tile: int, context: int):
    """Rows of: the teacher tiled (seams), the refined style tiled, the teacher untiled."""
    c = context
    inner = crops[..., c:crops.shape[-2] - c, c:crops.shape[-1] - c]
    untiled = teacher(crops)[..., c:crops.shape[-2] - c, c:crops.shape[-1] - c]
    ema.eval()
    rows = zip(to_pixels(combo(teacher, inner, tile)), to_pixels(combo(ema, inner, tile)),
               to_pixels(untiled))
    return image_grid([img for row in rows for img in row], columns=3)
