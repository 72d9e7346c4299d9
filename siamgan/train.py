"""Training the Siamese GAN through the Combo model: config, one step, the loop."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import augment, distributed, losses
from .data import CropConfig, CropSampler, colour_moments_of, load_collection
from .detail import photo_detail
from .images import image_grid, to_pixels
from .models import (
    DiscriminatorConfig,
    GeneratorConfig,
    PatchGenerator,
    PatchNCEHead,
    SiameseDiscriminator,
    encoder_features,
    encoder_widths,
    nce_positions,
)
from .palette import Palette
from .runs import (  # noqa: F401 (TrainingDiverged: re-exported, tests use T.TrainingDiverged)
    StatsLog,
    TrainingDiverged,
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
from .tiling import combo, tiled_apply
from .weights_io import export_path, export_style, save_weights


@dataclass
class TrainConfig:
    """Everything that defines a training run; written to ``runs/NAME/config.json``.

    The seed article's objective is ``recipe="seed"`` (see :meth:`seed_recipe`):
    ‖D(B)‖² + max(0, m − ‖D(AB)‖)² + λ·T for D and ‖D(AB)‖² + λ·T for G.
    The default recipe adds what stabilised training here: spectral norm in D,
    TraVeLGAN's MSE on the transformation vectors, a scalar hinge critic, an
    identity term on paintings, and an exponential moving average of G.
    ``seam_weight`` adds :func:`losses.seam_contrast` on the Combo outputs;
    ``colour_weight`` adds :func:`losses.colour_moments`, which holds the colour mean
    and covariance of each batch of translations to those of all the paintings;
    ``contrast_weight`` adds :func:`losses.crop_contrast`, which holds the spread of the
    translations' per-crop colour contrast to that of the step's painting crops;
    ``chroma_weight`` adds :func:`losses.crop_chroma`, the same for each crop's
    colourfulness; ``gamut_weight`` adds :func:`losses.colour_gamut`, which holds each
    translated pixel's colour within ``gamut_radius`` of the paintings' colours
    (Mahalanobis distance under their mean and covariance).

    The v2 terms (``docs/training.md``): ``nce_weight`` adds CUT's PatchNCE
    (:func:`losses.patch_nce`) between G's own encoder features of each photo crop
    and of its translation, ``nce_patches`` positions per layer at temperature
    ``nce_tau``; ``patch_weight`` scores D's patch critics
    (``discriminator.patch_heads``) with the hinge loss; ``augment`` is D's
    DiffAugment policy (``"translation,cutout"``), applied alike to every image D sees.
    ``shift_weight`` adds :func:`losses.shift_gap` on ``shift_crops`` photo crops: G
    translates two windows of each, a few pixels apart, and must paint them alike,
    so its strokes follow the photo rather than its own 4-px grid. ``noise_init`` starts a
    noise input added to an ``init_from`` generator at that fraction of the spread of its
    colour weights, not at zero; ``noise_frozen`` keeps those weights as they start (their
    gradient is zeroed), so G cannot learn to drop the noise.
    ``identity_crops`` K > 0 takes the identity term on K paintings, not the whole batch;
    ``precision="bfloat16"`` runs G's and D's passes under bf16 autocast (weights,
    optimiser and PatchNCE stay float32).
    """

    tile_size: int = 64
    batch_size: int = 16
    steps: int = 20000
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    margin: float = 1.0
    cosine_weight: float = 10.0
    mse_weight: float = 1.0
    critic_weight: float = 1.0
    identity_weight: float = 1.0
    seam_weight: float = 0.0
    colour_weight: float = 0.0
    contrast_weight: float = 0.0
    chroma_weight: float = 0.0
    gamut_weight: float = 0.0
    gamut_radius: float = 3.0
    nce_weight: float = 0.0
    shift_weight: float = 0.0
    shift_crops: int = 4
    noise_init: float = 0.0
    noise_frozen: bool = False
    nce_patches: int = 256
    nce_tau: float = 0.07
    patch_weight: float = 0.0
    augment: str = ""
    identity_crops: int = 0
    precision: str = "float32"
    ema_decay: float = 0.999
    combo: bool = True
    min_crop_scale: float = 0.5
    zoom_a: float = 1.0
    vivid_a: float = 0.0
    saturation_a: float = 2.0
    max_image_side: int = 512
    holdout_every: int = 0
    seed: int = 0
    sample_every: int = 500
    checkpoint_every: int = 500
    device: str = "auto"
    recipe: str = "default"
    init_from: str | None = None
    d_warmup: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        if isinstance(self.generator, dict):
            self.generator = GeneratorConfig(**self.generator)
        if isinstance(self.discriminator, dict):
            self.discriminator = DiscriminatorConfig(**self.discriminator)
        if self.tile_size < 8 or self.tile_size % 4:
            raise ValueError("tile_size must be a multiple of 4, at least 8")
        if self.batch_size < 2:
            raise ValueError("batch_size must be ≥ 2 (A crops are paired within the batch)")
        if self.steps < 1 or self.sample_every < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, sample_every and checkpoint_every must be ≥ 1")
        if self.critic_weight > 0 and not self.discriminator.critic:
            raise ValueError("critic_weight > 0 needs discriminator.critic = True")
        if self.crop_size < 2 ** self.discriminator.layers:
            raise ValueError(
                f"tile_size {self.tile_size} is too small for a {self.discriminator.layers}-layer "
                f"discriminator: it needs tile_size ≥ {2 ** (self.discriminator.layers - 1)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        if self.seam_weight and not self.combo:
            raise ValueError("seam_weight > 0 needs the Combo model (no seams without it)")
        if self.zoom_a < 1:
            raise ValueError("zoom_a must be ≥ 1")
        if not 0 <= self.vivid_a <= 1:
            raise ValueError("vivid_a must be in [0, 1]")
        if self.saturation_a < 1:
            raise ValueError("saturation_a must be ≥ 1")
        if self.gamut_radius <= 0:
            raise ValueError("gamut_radius must be > 0")
        if self.d_warmup < 0:
            raise ValueError("d_warmup must be ≥ 0")
        if self.patch_weight and not self.discriminator.patch_heads:
            raise ValueError("patch_weight > 0 needs discriminator.patch_heads")
        if self.nce_patches < 2 or self.nce_tau <= 0:
            raise ValueError("nce_patches must be ≥ 2 and nce_tau > 0")
        augment.parse_policy(self.augment)
        if self.identity_crops < 0 or self.identity_crops > self.batch_size:
            raise ValueError("identity_crops must be in [0, batch_size] (0: the whole batch)")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError("precision must be float32 or bfloat16")

    @property
    def crop_size(self) -> int:
        return 2 * self.tile_size

    @classmethod
    def seed_recipe(cls, **overrides) -> TrainConfig:
        """The seed article's objective and nothing else."""
        base = dict(mse_weight=0.0, critic_weight=0.0, identity_weight=0.0, ema_decay=0.0,
                    recipe="seed",
                    discriminator=DiscriminatorConfig(spectral_norm=False, critic=False))
        return cls(**{**base, **overrides})

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Models:
    """The networks and optimisers of a run (``generator``/``discriminator`` may be DDP-wrapped)."""

    generator: nn.Module
    discriminator: nn.Module
    ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    nce: PatchNCEHead | None = None  # PatchNCE's projection, trained with G
    opt_nce: torch.optim.Optimizer | None = None


def unwrap(module: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(module, "module", module)


def build_models(cfg: TrainConfig, device: torch.device) -> Models:
    torch.manual_seed(cfg.seed)
    # channels_last: crops arrive in that layout already (NHWC pixels), and the
    # convolutions run 1.4× faster in it on the CPU (benchmarks/NOTES.md).
    layout = torch.channels_last
    gen = PatchGenerator(cfg.generator)
    if cfg.init_from:
        gen.load_from(initial_generator(cfg))
        if cfg.noise_init and cfg.generator.noise:
            # A noise input added at zero is ignored: its gradient has no steady sign.
            with torch.no_grad():
                rgb = gen.net[0].weight[:, :3]
                gen.net[0].weight[:, 3:].normal_(0, cfg.noise_init * float(rgb.std()))
    gen = gen.to(device, memory_format=layout)
    if cfg.noise_frozen and cfg.generator.noise:
        gen.net[0].weight.register_hook(freeze_noise_weights)
    disc = SiameseDiscriminator(cfg.discriminator).to(device, memory_format=layout)
    ema = copy.deepcopy(gen).eval().requires_grad_(False)
    betas = (cfg.beta1, cfg.beta2)
    nce = opt_nce = None
    if cfg.nce_weight:
        nce = PatchNCEHead(encoder_widths(gen)).to(device)
        opt_nce = torch.optim.Adam(nce.parameters(), cfg.lr_g, betas=betas)
    return Models(gen, disc, ema,
                  torch.optim.Adam(gen.parameters(), cfg.lr_g, betas=betas),
                  torch.optim.Adam(disc.parameters(), cfg.lr_d, betas=betas), nce, opt_nce)


def freeze_noise_weights(grad: torch.Tensor) -> torch.Tensor:
    """The first conv's gradient with its noise input's part (channel 3) zeroed: Adam
    (no weight decay) then never moves those weights."""
    grad = grad.clone()
    grad[:, 3:] = 0
    return grad


def initial_generator(cfg: TrainConfig) -> PatchGenerator:
    """The generator of style ``cfg.init_from``; its architecture must be ``cfg.generator``
    (or the same without the skip, which the run adds: :meth:`PatchGenerator.load_from`)."""
    from .stylize import load_style  # stylize does not import train: no cycle, but keep it lazy

    gen, config, path = load_style(cfg.init_from)
    try:
        PatchGenerator(cfg.generator).load_from(gen)
    except ValueError:
        raise ValueError(f"--init-from {cfg.init_from}: its generator is {gen.config}, "
                         f"this run's is {cfg.generator}") from None
    return gen


def translate(gen: nn.Module, crops: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """G through the Combo model (default) or, for the ablation, on whole crops.

    A generator with streaked noise gets its noise for the whole crop first, so the
    streaks run on across the four tiles, as the tiler lays them over a picture."""
    if cfg.generator.streaks:
        crops = unwrap(gen).inputs(crops)
    return combo(gen, crops, cfg.tile_size) if cfg.combo else gen(crops)


def train_step(m: Models, a: torch.Tensor, b: torch.Tensor, cfg: TrainConfig,
               step: int = 0, colour: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> dict[str, float]:
    """One discriminator update then one generator update; returns the loss terms.

    ``colour`` is the paintings' colour mean and covariance, needed when
    ``cfg.colour_weight`` is set (:func:`data.colour_moments_of`)."""
    n = a.shape[0]
    warmup = step < cfg.d_warmup
    autocast = torch.autocast(a.device.type, torch.bfloat16,
                              enabled=cfg.precision == "bfloat16")
    # G runs once: its translations serve D's update (detached) and then its own.
    # G's weights do not change in between, so this is the same AB as translating
    # again after D's update, for one forward pass less. During the D warm-up (a
    # run that starts from a trained G) G is only scored, with no graph.
    ids = cfg.identity_crops or n
    x = torch.cat([a, b[:ids]]) if cfg.identity_weight else a
    with torch.set_grad_enabled(not warmup), autocast:
        out = translate(m.generator, x, cfg)
    ab = out[:n].detach()
    # DiffAugment: one draw for each photo and its translation, another for B.
    aug_a = augment.draw(n, a.shape[-1], cfg.augment, a.device) if cfg.augment else None
    aug_b = augment.draw(n, b.shape[-1], cfg.augment, b.device) if cfg.augment else None
    seen_a = (lambda x: augment.apply(x, aug_a)) if aug_a else (lambda x: x)
    seen_b = (lambda x: augment.apply(x, aug_b)) if aug_b else (lambda x: x)
    patches = bool(unwrap(m.discriminator).config.patch_heads)
    # Discriminator: B near the origin, AB beyond the margin, T for content.
    with autocast:
        vec, score, *maps = m.discriminator(torch.cat([seen_a(a), seen_a(ab), seen_b(b)]),
                                            **({"patches": True} if patches else {}))
    vec, score = _full(vec), None if score is None else _full(score)
    maps = [[_full(p) for p in maps[0]]] if maps else maps
    va, vab, vb = vec.split(n)
    d_real, d_fake = losses.squared_norm(vb), losses.margin_loss(vab, cfg.margin)
    d_cos = losses.transformation_cosine(va, vab)
    loss_d = d_real + d_fake + cfg.cosine_weight * d_cos
    if cfg.mse_weight:
        loss_d = loss_d + cfg.mse_weight * losses.transformation_mse(va, vab)
    if score is not None:  # even at weight 0: DDP needs every parameter in the graph
        s_a, s_ab, s_b = score.split(n)
        loss_d = loss_d + cfg.critic_weight * losses.hinge_d(s_b, s_ab)
    d_patch = sum(losses.hinge_d(p[2 * n:], p[n : 2 * n]) for p in maps[0]) if maps else None
    if d_patch is not None:  # even at weight 0, as above
        loss_d = loss_d + cfg.patch_weight * d_patch
    m.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    m.opt_d.step()

    # Generator: pull AB to the origin, keep transformation vectors. D is used
    # unwrapped and frozen so no gradient (or DDP reduction) is spent on it.
    disc = unwrap(m.discriminator).requires_grad_(False)
    with torch.set_grad_enabled(not warmup), autocast:
        loss_g, stats = _generator_loss(disc, out, a, b[:ids], cfg, colour, seen_a, m, b)
    stats = {"loss_d": loss_d.item(), "d_real": d_real.item(), "d_fake": d_fake.item(),
             "cos_d": d_cos.item(), "norm_b": vb.detach().norm(dim=1).mean().item(), **stats}
    if d_patch is not None:
        stats["patch_d"] = d_patch.item()
    if not warmup:
        m.opt_g.zero_grad(set_to_none=True)
        if m.opt_nce is not None:
            m.opt_nce.zero_grad(set_to_none=True)
        loss_g.backward()
        m.opt_g.step()
        if m.opt_nce is not None:
            m.opt_nce.step()
        # A fresh run ramps the EMA up so early weights do not linger for thousands of
        # steps; a run from a trained G starts its EMA there and keeps the full decay.
        ramp = (1 + step) / (10 + step)
        decay = cfg.ema_decay if cfg.init_from else min(cfg.ema_decay, ramp)
        update_ema(m.ema, unwrap(m.generator), decay)
    disc.requires_grad_(True)
    stats["loss_g"] = loss_g.item()
    return stats


def _full(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 (autocast) → float32; float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _generator_loss(disc: nn.Module, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    cfg: TrainConfig, colour: tuple[torch.Tensor, torch.Tensor] | None = None,
                    seen=lambda x: x, m: Models | None = None,
                    paintings: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """G's loss on its translations ``out`` (of ``a``, then of ``b`` for the identity term).

    ``seen`` is D's augmentation of the photos (the same draw as in D's step); ``m``
    gives the generator and PatchNCE head when ``cfg.nce_weight`` is set; ``paintings``
    are the step's painting crops, the reference of ``cfg.contrast_weight``."""
    n = a.shape[0]
    out = _full(out)  # losses in float32, also under bf16 autocast
    ab = out[:n]
    patches = bool(disc.config.patch_heads)
    with torch.no_grad():
        va = _full(disc(seen(a))[0])
    vab, s_ab, *maps = disc(seen(ab), **({"patches": True} if patches else {}))
    vab, s_ab = _full(vab), None if s_ab is None else _full(s_ab)
    g_adv, g_cos = losses.squared_norm(vab), losses.transformation_cosine(va, vab)
    loss_g = g_adv + cfg.cosine_weight * g_cos
    stats = {"g_adv": g_adv.item(), "cos_g": g_cos.item(),
             "norm_ab": vab.detach().norm(dim=1).mean().item()}
    if cfg.mse_weight:
        g_mse = losses.transformation_mse(va, vab)
        loss_g = loss_g + cfg.mse_weight * g_mse
        stats["mse_g"] = g_mse.item()
    if cfg.critic_weight:
        g_crit = losses.hinge_g(s_ab)
        loss_g = loss_g + cfg.critic_weight * g_crit
        stats["critic_g"] = g_crit.item()
    if cfg.patch_weight:
        g_patch = sum(losses.hinge_g(p) for p in maps[0])
        loss_g = loss_g + cfg.patch_weight * g_patch
        stats["patch_g"] = g_patch.item()
    if cfg.nce_weight:
        if m is None or m.nce is None:
            raise ValueError("nce_weight > 0 needs the PatchNCE head")
        gen = unwrap(m.generator)
        with torch.no_grad():
            keys = encoder_features(gen, a)
        queries = encoder_features(gen, ab)
        where = nce_positions(keys, cfg.nce_patches)
        # The projection and the contrast in float32: at τ = 0.07 bf16 logits lose too much.
        with torch.autocast(a.device.type, enabled=False):
            g_nce = sum(losses.patch_nce(q, k, cfg.nce_tau) for q, k in zip(
                m.nce([_full(f) for f in queries], where),
                m.nce([_full(f) for f in keys], where))) / len(where)
        loss_g = loss_g + cfg.nce_weight * g_nce
        stats["nce"] = g_nce.item()
    if cfg.shift_weight:
        if m is None:
            raise ValueError("shift_weight > 0 needs the generator")
        g_shift = _shift_term(unwrap(m.generator), a[: cfg.shift_crops])
        loss_g = loss_g + cfg.shift_weight * g_shift
        stats["shift"] = g_shift.item()
    if cfg.identity_weight:
        g_id = losses.identity_l1(out[n:], b)
        loss_g = loss_g + cfg.identity_weight * g_id
        stats["identity"] = g_id.item()
    if cfg.seam_weight:
        g_seam = losses.seam_contrast(ab, cfg.tile_size)
        loss_g = loss_g + cfg.seam_weight * g_seam
        stats["seam"] = g_seam.item()
    if cfg.colour_weight:
        if colour is None:
            raise ValueError("colour_weight > 0 needs the paintings' colour moments")
        g_colour = losses.colour_moments(ab, *colour)
        loss_g = loss_g + cfg.colour_weight * g_colour
        stats["colour"] = g_colour.item()
    if cfg.contrast_weight:
        g_contrast = losses.crop_contrast(ab, b if paintings is None else paintings)
        loss_g = loss_g + cfg.contrast_weight * g_contrast
        stats["contrast"] = g_contrast.item()
    if cfg.chroma_weight:
        g_chroma = losses.crop_chroma(ab, b if paintings is None else paintings)
        loss_g = loss_g + cfg.chroma_weight * g_chroma
        stats["chroma"] = g_chroma.item()
    if cfg.gamut_weight:
        if colour is None:
            raise ValueError("gamut_weight > 0 needs the paintings' colour moments")
        g_gamut = losses.colour_gamut(ab, *colour, cfg.gamut_radius)
        loss_g = loss_g + cfg.gamut_weight * g_gamut
        stats["gamut"] = g_gamut.item()
    return loss_g, stats


def _shift_term(gen: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """:func:`losses.shift_gap` of G on two windows of ``crops``, one drawn shift apart.

    The shift (dy, dx) is drawn from 0–3 × 0–3 without (0, 0): every phase of G's
    4-px grid but its own (a multiple of 4 on both axes is matched by construction)."""
    k = int(torch.randint(1, 16, ()))
    dy, dx = divmod(k, 4)
    side = crops.shape[-1] - 4
    crops = gen.inputs(crops)  # one noise field for both windows, as the tiler gives
    y0 = gen(crops[..., :side, :side])
    y1 = gen(crops[..., dy : dy + side, dx : dx + side])
    return losses.shift_gap(_full(y0), _full(y1), dy, dx, margin=min(8, side // 4))


@torch.no_grad()
def update_ema(ema: nn.Module, gen: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·gen; decay 0 copies the generator."""
    for e, p in zip(ema.parameters(), gen.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, p in zip(ema.buffers(), gen.buffers()):
        e.copy_(p)


def picture_side(images: list[np.ndarray]) -> int:
    """The paintings' size as a picture: the median of √(height × width), in pixels.

    Recorded in a style as its stroke scale (``strokes.picture_side``): ``stylize``
    paints a large photo first at that size (:mod:`siamgan.pyramid`)."""
    return int(round(float(np.median([np.sqrt(im.shape[0] * im.shape[1]) for im in images]))))


def style_config(cfg: TrainConfig, name: str, step: int, a_dir: str, b_dir: str,
                 counts: tuple[int, int], palette: Palette | None = None,
                 side: int | None = None, photo: list[float] | None = None) -> dict:
    """The JSON config exported next to a style's weights.

    ``palette``: the B images' colours, recorded with strength 0 (off until asked for
    with ``stylize --palette``, or given a default by ``siamgan palette``). ``side``:
    the paintings' :func:`picture_side`, the style's stroke scale; ``photo``: the
    training photos' :func:`siamgan.detail.photo_detail` at that scale.
    """
    strokes = {"picture_side": side, "detail": 0.5,
               **({"photo_detail": photo} if photo else {})}
    return {
        "kind": "style", "name": name, "tile_size": cfg.tile_size,
        **({"strokes": strokes} if side else {}),
        "generator": asdict(cfg.generator),
        "description": f"{Path(a_dir).name} → {Path(b_dir).name}, {step} steps",
        "training": {"a": str(a_dir), "b": str(b_dir), "images_a": counts[0],
                     "images_b": counts[1], "steps": step, "config": asdict(cfg)},
        **({"palette": {**palette.to_dict(), "paintings": str(b_dir), "images": counts[1]}}
           if palette is not None else {}),
    }


def _sample_sheet(ema: nn.Module, fixed: torch.Tensor, whole: np.ndarray,
                  cfg: TrainConfig, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    ema.eval()
    with torch.no_grad():
        out = translate(ema, fixed.to(device), cfg).cpu()
        fn = lambda t: ema(t.to(device)).float().cpu()  # noqa: E731
        whole_out = tiled_apply(whole, fn, cfg.tile_size,
                                noise=0 if cfg.generator.noise else None,
                                streaks=cfg.generator.streaks)
    pairs = [img for pair in zip(to_pixels(fixed), to_pixels(out)) for img in pair]
    return image_grid(pairs, columns=4), np.concatenate([whole, whole_out], axis=1)


def train(cfg: TrainConfig, a_dir: str | Path, b_dir: str | Path, name: str,
          runs_dir: str | Path = "runs", resume: bool = False,
          export: bool = True, progress: bool = True, changes: dict | None = None) -> Path:
    """Train a style from folder ``a_dir`` (photos) to ``b_dir`` (paintings).

    Writes ``runs_dir/name/`` and returns the exported ``.safetensors`` path.
    A resumed run keeps its checkpoint's config, except ``steps``, ``device`` and
    the fields in ``changes`` (loss weights, learning rates: see
    :data:`RESUME_CHANGES`); each change is logged in ``config.json``.
    Ctrl-C finishes the current step, saves a checkpoint and raises
    KeyboardInterrupt (a second Ctrl-C stops at once); a NaN/Inf loss raises
    :class:`TrainingDiverged` and keeps the last good checkpoint.

    Under ``torchrun`` every process trains on its own crops (``batch_size``
    each) with gradients averaged by DDP, and rank 0 alone writes the run folder
    and the export (``docs/distributed.md``).

    Before any work (:func:`siamgan.runs.prepare_run`): ``name`` must be a plain name
    and not a shipped style's, an existing run or style of that name needs ``resume``,
    and the runs and styles folders must be writable.
    """
    run = prepare_run(runs_dir, name, resume, [a_dir, b_dir],
                      export_path(name) if export else None)
    with distributed.session(cfg.device) as device:
        return _train(cfg, a_dir, b_dir, name, run, resume, export,
                      progress, device, changes or {})


RESUME_CHANGES = ("margin", "cosine_weight", "mse_weight", "critic_weight", "identity_weight",
                  "seam_weight", "colour_weight", "contrast_weight", "chroma_weight",
                  "gamut_weight", "gamut_radius", "nce_weight", "patch_weight", "shift_weight",
                  "lr_g", "lr_d", "zoom_a", "vivid_a", "saturation_a", "ema_decay",
                  "combo")
"""Config fields a resumed run may change: the objective's terms, the learning rates,
the photo crops' zoom and colourfulness, the EMA's decay and Combo (``--no-combo``, for an ablation
branched from a checkpoint)."""


def _resumed_config(saved: dict, cfg: TrainConfig, changes: dict) -> tuple[TrainConfig, dict]:
    """The checkpoint's config with this call's steps/device and ``changes``; and what changed."""
    if unknown := set(changes) - set(RESUME_CHANGES):
        raise ValueError(f"a resumed run cannot change {', '.join(sorted(unknown))}")
    resumed = TrainConfig.from_dict({**saved, "steps": cfg.steps, "device": cfg.device,
                                     **changes})
    # A checkpoint older than a field had that field's default.
    before = {k: saved.get(k, TrainConfig.__dataclass_fields__[k].default) for k in changes}
    changed = {k: [before[k], v] for k, v in changes.items() if before[k] != v}
    return resumed, changed


def _train(cfg: TrainConfig, a_dir: str | Path, b_dir: str | Path, name: str, run: Path,
           resume: bool, export: bool, progress: bool, device: torch.device,
           changes: dict) -> Path:
    rank, main = distributed.rank(), distributed.is_main()
    progress = progress and main
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    # A resumed run is built from its checkpoint's config (patch heads, NCE head…),
    # not from this call's options, which may only change RESUME_CHANGES.
    state = load_checkpoint(run) if resume else None
    if state is not None:
        cfg, changed = _resumed_config(state["config"], cfg, changes)
    images_a = load_collection(a_dir, cfg.max_image_side, cfg.crop_size, desc="domain A",
                               holdout_every=cfg.holdout_every, progress=progress)
    images_b = load_collection(b_dir, cfg.max_image_side, cfg.crop_size, desc="domain B",
                               progress=progress)
    crop = CropConfig(cfg.crop_size, cfg.min_crop_scale)
    crop_a = CropConfig(cfg.crop_size, cfg.min_crop_scale, max_zoom=cfg.zoom_a,
                        vivid_share=cfg.vivid_a, max_saturation=cfg.saturation_a)
    sampler_a = CropSampler(images_a, crop_a, cfg.seed * 2 + 1)
    sampler_b = CropSampler(images_b, crop, cfg.seed * 2 + 2)
    fixed = CropSampler(images_a, CropConfig(cfg.crop_size, 1.0, False), 12345).sample(8)
    whole = images_a[0]

    m = build_models(cfg, device)
    step = 0
    stats_log = StatsLog(run)
    history: list[dict] = []
    if state is not None:
        for key, mod in (("generator", m.generator), ("discriminator", m.discriminator),
                         ("ema", m.ema), ("opt_g", m.opt_g), ("opt_d", m.opt_d),
                         ("nce", m.nce), ("opt_nce", m.opt_nce)):
            if mod is not None and key in state:
                unwrap(mod).load_state_dict(state[key])
        for opt, lr in ((m.opt_g, cfg.lr_g), (m.opt_d, cfg.lr_d)):
            for group in opt.param_groups:  # the optimiser state brought back the saved rate
                group["lr"] = lr
        step = int(state["step"])
        if (run / "config.json").is_file():
            history = json.loads((run / "config.json").read_text()).get("changes", [])
        if changed:
            history.append({"step": step, **changed})
            if main:
                tqdm.write(f"resuming at step {step} with " + ", ".join(
                    f"{k} {old} → {new}" for k, (old, new) in changed.items()))
        sampler_a.set_state(state["sampler_a"])
        sampler_b.set_state(state["sampler_b"])
        set_rng_state(state["rng"])
        if main:
            stats_log.truncate_after(step)
    if distributed.world_size() > 1:
        # Every rank draws its own crops. A resume reseeds them from (seed, rank,
        # step): fresh crops, the same for the same checkpoint and process count.
        sampler_a = CropSampler(images_a, crop_a,
                                distributed.stream_seed(cfg.seed * 2 + 1, rank, step))
        sampler_b = CropSampler(images_b, crop,
                                distributed.stream_seed(cfg.seed * 2 + 2, rank, step))
        torch.manual_seed(distributed.stream_seed(cfg.seed, rank, step))
        # No SyncBatchNorm: D has no batch norm (spectral norm only, its Siamese
        # vectors are per sample) and G normalises per pixel (or per sample), so
        # no layer mixes the samples of a batch. The EMA stays unwrapped: every
        # rank updates it from the same averaged weights.
        m.generator = distributed.wrap_ddp(m.generator, device)
        m.discriminator = distributed.wrap_ddp(m.discriminator, device)
    if main:
        (run / "samples").mkdir(parents=True, exist_ok=True)
        write_json(run / "config.json", {"name": name, "a": str(a_dir), "b": str(b_dir),
                                         **asdict(cfg), "changes": history})
    counts = (len(images_a), len(images_b))
    palette = Palette.from_images(images_b)
    side = picture_side(images_b)
    photo = photo_detail(images_a, side)
    colour = (tuple(t.to(device) for t in colour_moments_of(images_b))
              if cfg.colour_weight or cfg.gamut_weight else None)

    def checkpoint() -> None:
        if main:
            save_checkpoint(run, {
                "step": step, "config": asdict(cfg),
                "generator": unwrap(m.generator).state_dict(),
                "discriminator": unwrap(m.discriminator).state_dict(),
                "ema": m.ema.state_dict(), "opt_g": m.opt_g.state_dict(),
                "opt_d": m.opt_d.state_dict(), "sampler_a": sampler_a.state(),
                **({"nce": m.nce.state_dict(), "opt_nce": m.opt_nce.state_dict()}
                   if m.nce is not None else {}),
                "sampler_b": sampler_b.state(), "rng": rng_state()})
            save_weights(run / f"{name}.safetensors", m.ema.state_dict(),
                         style_config(cfg, name, step, str(a_dir), str(b_dir), counts, palette,
                                      side, photo))
        distributed.barrier()  # no rank goes on before the checkpoint is complete

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    try:
        with deferred_interrupt() as interrupt:
            while step < cfg.steps:
                t0 = time.perf_counter()
                a = sampler_a.sample(cfg.batch_size, device)
                b = sampler_b.sample(cfg.batch_size, device)
                t1 = time.perf_counter()
                stats = train_step(m, a, b, cfg, step, colour)
                # Logged losses are means over all ranks, so every rank agrees on NaNs.
                stats = dict(zip(stats, distributed.average(list(stats.values()), device)))
                check_finite(stats, step + 1, run)
                step += 1
                t2 = time.perf_counter()
                if main:
                    stats_log.append({"step": step,
                                      **{k: round(v, 5) for k, v in stats.items()},
                                      "data_s": round(t1 - t0, 4), "step_s": round(t2 - t0, 4)})
                bar.update(1)
                bar.set_postfix(d=f"{stats['loss_d']:.3f}", g=f"{stats['loss_g']:.3f}",
                                T=f"{stats['cos_g']:.3f}", refresh=False)
                if main and due(step, cfg.sample_every, cfg.steps):
                    sheet, whole_sheet = _sample_sheet(m.ema, fixed, whole, cfg, device)
                    save_image(run / "samples" / f"{step:08d}.png", sheet)
                    save_image(run / "samples" / f"{step:08d}_whole.png", whole_sheet)
                    plot_losses(stats_log.read(), ["loss_d", "loss_g", "cos_g", "norm_ab"],
                                run / "losses.png")
                # One Ctrl-C seen by any rank stops them all after the same step.
                interrupt["requested"] = distributed.any_rank(interrupt["requested"], device)
                if due(step, cfg.checkpoint_every, cfg.steps) or interrupt["requested"]:
                    checkpoint()
                if interrupt["requested"]:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        raise
    bar.close()
    weights = run / f"{name}.safetensors"
    if export:
        weights = export_path(name)
        if main:
            export_style(name, m.ema.state_dict(),
                         style_config(cfg, name, step, str(a_dir), str(b_dir), counts, palette,
                                      side, photo), run)
        distributed.barrier()
    return weights
