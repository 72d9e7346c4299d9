"""Training the DCGAN baseline: config, data, one step, the epoch loop.

``runs/NAME/`` gets ``config.json``, ``reals.png``, ``samples/epoch_NNNN.png``
(fixed noise; ``step_NNNNNNNN.png`` on Ctrl-C), ``stats.jsonl`` (one line per
step), ``losses.png``, ``checkpoint.pt`` (every ``checkpoint_every`` epochs and
on Ctrl-C) and ``NAME.safetensors`` + JSON, the generator as of that checkpoint.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import distributed
from ..data import DataError, load_collection
from ..images import image_grid, to_model_range
from ..runs import (
    StatsLog,
    check_finite,
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
from ..train import unwrap
from ..weights_io import save_weights
from . import losses
from .models import DCGANConfig, Discriminator, Generator
from .sample import generate, grid_columns


class TrainingWarning(UserWarning):
    """Samples lost their diversity, or D beats G outright: the run may be failing."""


@dataclass
class DCGANTrainConfig:
    """A DCGAN training run; written to ``runs/NAME/config.json``.

    Defaults are the classic recipe (Adam 2e-4, β1 0.5, batch 128, 1:1 updates)
    plus one-sided label smoothing 0.1. The seed article's best run used
    ``lr_d=5e-5`` (a slower D: less collapse late in training); its 5:1 and 1:5
    update ratios were worse. One step consumes ``d_steps`` real batches (one per
    D update) and makes ``g_steps`` G updates; an epoch is one pass over the data.

    Learning rates are multiplied by ``lr_decay_factor`` every ``lr_decay_every``
    epochs (0: never) and, with ``smooth``, decay linearly per step down to
    ``smooth_end`` × their value at the last step (seed 002). ``instance_noise``
    is the std of Gaussian noise added to D's inputs, annealed linearly to 0.
    """

    epochs: int = 50
    batch_size: int = 128
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1
    g_steps: int = 1
    lr_decay_every: int = 0
    lr_decay_factor: float = 0.5
    smooth: bool = False
    smooth_end: float = 0.1
    label_smoothing: float = 0.1
    label_noise: float = 0.0
    instance_noise: float = 0.0
    gp_lambda: float = 10.0
    flip: bool = True
    limit: int | None = None
    max_steps: int = 0  # stop (as if interrupted) after this step; schedules still follow epochs
    seed: int = 0
    device: str = "auto"
    sample_every: int = 1
    checkpoint_every: int = 1
    n_samples: int = 64
    collapse_ratio: float = 0.25
    diverge_margin: float = 0.05
    warn_patience: int = 200
    model: DCGANConfig = field(default_factory=DCGANConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = DCGANConfig(**self.model)
        counts = (self.epochs, self.d_steps, self.g_steps, self.sample_every,
                  self.checkpoint_every, self.n_samples)
        if min(counts) < 1:
            raise ValueError("epochs, d_steps, g_steps, sample_every, checkpoint_every and "
                             "n_samples must be ≥ 1")
        if self.batch_size < 2:
            raise ValueError("batch_size must be ≥ 2 (batch norm needs a batch)")
        if min(self.lr_g, self.lr_d) <= 0 or not 0 < self.lr_decay_factor <= 1:
            raise ValueError("learning rates must be > 0 and lr_decay_factor in (0, 1]")
        if self.lr_decay_every < 0 or not 0 <= self.smooth_end <= 1:
            raise ValueError("lr_decay_every must be ≥ 0 and smooth_end in [0, 1]")
        if not 0 <= self.label_smoothing < 0.5 or not 0 <= self.label_noise < 0.5:
            raise ValueError("label_smoothing and label_noise must be in [0, 0.5)")
        if self.instance_noise < 0 or self.gp_lambda < 0:
            raise ValueError("instance_noise and gp_lambda must be ≥ 0")

    @classmethod
    def from_dict(cls, data: dict) -> DCGANTrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def center_square(pixels: np.ndarray) -> np.ndarray:
    """The central square of an H×W×C image."""
    h, w = pixels.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return pixels[y:y + s, x:x + s]


def load_faces(source: str | Path, image_size: int, limit: int | None = None,
               progress: bool = True) -> np.ndarray:
    """A folder or .tar/.tar.gz/.zip of images → N×S×S×3 uint8, decoded once.

    Each image's short side is resized to ``image_size`` and its centre cropped.
    """
    images = load_collection(source, max_short=image_size, min_short=image_size, limit=limit,
                             desc="faces", progress=progress)
    return np.stack([center_square(img) for img in images])


@dataclass
class Models:
    """The two networks of a run and their optimisers (the networks may be DDP-wrapped)."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def build_models(cfg: DCGANTrainConfig, device: torch.device) -> Models:
    torch.manual_seed(cfg.seed)
    gen, disc = Generator(cfg.model).to(device), Discriminator(cfg.model).to(device)
    betas = (cfg.beta1, cfg.beta2)
    return Models(gen, disc, torch.optim.Adam(gen.parameters(), cfg.lr_g, betas=betas),
                  torch.optim.Adam(disc.parameters(), cfg.lr_d, betas=betas))


def lr_scale(cfg: DCGANTrainConfig, step: int, steps_per_epoch: int) -> float:
    """Factor on both learning rates at ``step`` (staircase and/or linear decay)."""
    scale = 1.0
    if cfg.lr_decay_every:
        scale *= cfg.lr_decay_factor ** (step // (cfg.lr_decay_every * steps_per_epoch))
    if cfg.smooth:
        scale *= 1.0 - (1.0 - cfg.smooth_end) * step / (cfg.epochs * steps_per_epoch)
    return scale


def _noisy(x: torch.Tensor, std: float) -> torch.Tensor:
    return x + std * torch.randn_like(x) if std > 0 else x


def train_step(m: Models, real: torch.Tensor, cfg: DCGANTrainConfig,
               noise_std: float = 0.0) -> dict[str, torch.Tensor]:
    """``d_steps`` D updates (one per chunk of ``real``), then ``g_steps`` G updates.

    ``real`` is ``(d_steps·B)×3×S×S`` in [-1, 1]. Returns 0-d tensors (no GPU
    sync here): the losses, D(x) and D(G(z)) (probabilities under BCE, critic
    scores under WGAN-GP), the gradient penalty and ``diversity``, the per-pixel
    spread of the last fake batch over that of the real one (≈1 healthy, →0 collapse).
    """
    wgan = cfg.model.loss == "wgan-gp"
    nz, device = cfg.model.nz, real.device
    stats: dict[str, torch.Tensor] = {}
    for x in real.chunk(cfg.d_steps):
        n = x.shape[0]
        with torch.no_grad():
            fake = m.generator(torch.randn(n, nz, device=device))
        x_in, fake_in = _noisy(x, noise_std), _noisy(fake, noise_std)
        d_real, d_fake = m.discriminator(x_in), m.discriminator(fake_in)
        if wgan:
            gp = losses.gradient_penalty(m.discriminator, x_in, fake_in)
            loss_d = losses.wgan_d_loss(d_real, d_fake) + cfg.gp_lambda * gp
            stats["gp"] = gp.detach()
        else:
            rt, ft = losses.real_fake_targets(n, cfg.label_smoothing, cfg.label_noise,
                                              device=device)
            loss_d = losses.bce_d_loss(d_real, d_fake, rt, ft)
        m.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        m.opt_d.step()
    squash = (lambda t: t) if wgan else torch.sigmoid  # noqa: E731
    stats.update(loss_d=loss_d.detach(), d_x=squash(d_real.detach()).mean(),
                 d_gz=squash(d_fake.detach()).mean())

    # G's step needs no gradient for D's weights: D runs unwrapped and frozen, so
    # DDP waits for no reduction of D's gradients in this backward pass.
    disc = unwrap(m.discriminator).requires_grad_(False)
    for _ in range(cfg.g_steps):
        fake = m.generator(torch.randn(n, nz, device=device))
        score = disc(_noisy(fake, noise_std))
        loss_g = losses.wgan_g_loss(score) if wgan else losses.bce_g_loss(score)
        m.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        m.opt_g.step()
    disc.requires_grad_(True)
    spread = fake.detach().flatten(1).std(0).mean() / x.flatten(1).std(0).mean().clamp_min(1e-6)
    stats.update(loss_g=loss_g.detach(), diversity=spread)
    return stats


def binary_entropy(p: float) -> float:
    """H(p) in nats: the least BCE a target of p allows (D's loss floor)."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log(p) + (1 - p) * math.log(1 - p))


class HealthMonitor:
    """Warns (once per episode) about mode collapse and a discriminator that has won.

    Collapse: ``diversity`` below ``collapse_ratio`` for ``warn_patience`` steps,
    checked after ``start`` steps (a fresh G draws near-constant images).
    Divergence (BCE only): D's loss within ``diverge_margin`` of the least it can
    reach for ``warn_patience`` steps: D rejects every fake and G gets no signal.
    """

    def __init__(self, cfg: DCGANTrainConfig, start: int) -> None:
        self.cfg, self.start = cfg, start
        self.floor = binary_entropy(1.0 - cfg.label_smoothing)
        self.streaks = {"collapse": 0, "diverge": 0}

    def update(self, step: int, stats: dict[str, float]) -> None:
        cfg = self.cfg
        collapsed = step > self.start and stats["diversity"] < cfg.collapse_ratio
        won = cfg.model.loss == "bce" and stats["loss_d"] < self.floor + cfg.diverge_margin
        for key, bad in (("collapse", collapsed), ("diverge", won)):
            self.streaks[key] = self.streaks[key] + 1 if bad else 0
        if self.streaks["collapse"] == cfg.warn_patience:
            warnings.warn(f"step {step}: possible mode collapse: fake samples vary "
                          f"{stats['diversity']:.2f}× as much as real ones for "
                          f"{cfg.warn_patience} steps (try a lower --lr-d, label smoothing "
                          "or instance noise)", TrainingWarning, stacklevel=2)
        if self.streaks["diverge"] == cfg.warn_patience:
            warnings.warn(f"step {step}: D's loss has sat at {stats['loss_d']:.3f} (near its "
                          f"floor {self.floor:.3f}) for {cfg.warn_patience} steps: D rejects "
                          "every fake and G learns nothing (try a lower --lr-d, more "
                          "--g-steps, or --instance-noise)", TrainingWarning, stacklevel=2)


def export_config(cfg: DCGANTrainConfig, name: str, data: str, n_images: int,
                  epoch: int, step: int) -> dict:
    """The JSON config exported next to the generator's weights."""
    size = cfg.model.image_size
    return {"kind": "dcgan", "name": name, "model": asdict(cfg.model),
            "description": f"DCGAN {size}×{size} ({cfg.model.arch}, {cfg.model.loss}) on "
                           f"{Path(data).name}, {epoch} epochs",
            "training": {"data": str(data), "images": n_images, "epochs": epoch,
                         "steps": step, "config": asdict(cfg)}}


def _setup_cuda(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


class _StopEarly(Exception):
    """Raised inside the loop when ``max_steps`` is reached."""


def train_dcgan(cfg: DCGANTrainConfig, data: str | Path, name: str,
                runs_dir: str | Path = "runs", resume: bool = False,
                progress: bool = True) -> Path:
    """Train on the faces in ``data`` (folder or archive); returns the exported weights.

    With ``resume`` the run continues from ``runs_dir/name/checkpoint.pt`` up to
    ``cfg.epochs`` (its other settings come from the checkpoint). Ctrl-C saves a
    checkpoint and re-raises; a NaN/Inf loss raises :class:`TrainingDiverged`.
    Under ``torchrun`` each process takes its share of every epoch's shuffle
    (``batch_size`` per process) and rank 0 alone writes (``docs/distributed.md``).
    """
    run = prepare_run(runs_dir, name, resume, [data])
    state = None
    if resume:
        state = load_checkpoint(run)
        cfg = DCGANTrainConfig.from_dict({**state["config"], "epochs": cfg.epochs,
                                          "max_steps": cfg.max_steps,
                                          "device": cfg.device})
    with distributed.session(cfg.device) as device:
        return _train_dcgan(cfg, data, name, run, state, progress, device)


def _train_dcgan(cfg: DCGANTrainConfig, data: str | Path, name: str, run: Path,
                 state: dict | None, progress: bool, device: torch.device) -> Path:
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    progress = progress and main
    _setup_cuda(device)
    faces = load_faces(data, cfg.model.image_size, cfg.limit, progress)
    per_step = cfg.batch_size * cfg.d_steps  # real images one step takes, on each rank
    steps_per_epoch = len(faces) // (per_step * world)
    if steps_per_epoch < 1:
        raise DataError(f"{data}: {len(faces)} images, but one step needs "
                        f"{per_step * world} (batch × d_steps × processes)")
    pixels = torch.from_numpy(faces).to(device)  # uint8 on the device: batches never wait

    m = build_models(cfg, device)
    shuffler = np.random.default_rng(cfg.seed)  # the same on every rank: one shuffle per epoch
    fixed_z = torch.randn(cfg.n_samples, cfg.model.nz,
                          generator=torch.Generator().manual_seed(cfg.seed + 1))
    epoch = step = batch_in_epoch = 0
    stats_log = StatsLog(run)
    if state is not None:
        for key, part in (("generator", m.generator), ("discriminator", m.discriminator),
                          ("opt_g", m.opt_g), ("opt_d", m.opt_d)):
            part.load_state_dict(state[key])
        epoch, step = int(state["epoch"]), int(state["step"])
        batch_in_epoch = int(state["batch_in_epoch"])
        shuffler.bit_generator.state = state["shuffler"]
        set_rng_state(state["rng"])
        if main:
            stats_log.truncate_after(step)
    if world > 1:
        # Noise, flips and label noise differ per rank; a resume reseeds them from
        # (seed, rank, step). The epoch's shuffle and position are restored exactly.
        torch.manual_seed(distributed.stream_seed(cfg.seed, rank, step))
        # Batch norm stays per rank, no SyncBatchNorm: D sees real and fake batches
        # in separate passes by design, each rank normalises over its own batch
        # exactly as one process does at that batch size, and SyncBatchNorm
        # needs a GPU. Buffers are copied from rank 0 once, not before every
        # pass: D runs two or three times before one backward pass, and that
        # in-place copy of the running statistics breaks its backward pass on CUDA
        # (pytorch/pytorch#22095, #175024). Running statistics are then each
        # rank's own average over its batches; rank 0's are saved.
        m.generator = distributed.wrap_ddp(m.generator, device, sync_buffers=False)
        m.discriminator = distributed.wrap_ddp(m.discriminator, device, sync_buffers=False)
    columns = grid_columns(cfg.n_samples)
    if main:
        (run / "samples").mkdir(parents=True, exist_ok=True)
        write_json(run / "config.json", {"name": name, "data": str(data), "images": len(faces),
                                         "steps_per_epoch": steps_per_epoch, "processes": world,
                                         **asdict(cfg)})
        save_image(run / "reals.png", image_grid(list(faces[:cfg.n_samples]), columns))
    total = cfg.epochs * steps_per_epoch
    monitor = HealthMonitor(cfg, start=min(steps_per_epoch, 500))
    weights = run / f"{name}.safetensors"
    # Where a resume restarts: this epoch's shuffle, and the RNG as the current step began.
    epoch_start, step_rng = shuffler.bit_generator.state, rng_state()

    def checkpoint() -> None:
        """Rank 0 saves; the others have nothing to add (their RNGs are reseeded)."""
        if not main:
            return
        save_checkpoint(run, {
            "epoch": epoch, "step": step, "batch_in_epoch": batch_in_epoch,
            "config": asdict(cfg), "generator": unwrap(m.generator).state_dict(),
            "discriminator": unwrap(m.discriminator).state_dict(),
            "opt_g": m.opt_g.state_dict(), "opt_d": m.opt_d.state_dict(),
            "shuffler": epoch_start, "rng": step_rng})
        save_weights(weights, unwrap(m.generator).state_dict(),
                     export_config(cfg, name, str(data), len(faces), epoch, step))

    def snapshot(sheet: str) -> None:
        if not main:
            return
        grid = image_grid(list(generate(unwrap(m.generator), fixed_z)), columns)
        save_image(run / "samples" / sheet, grid)
        plot_losses(stats_log.read(), ["loss_d", "loss_g", "d_x", "d_gz"], run / "losses.png")

    bar = None
    try:
        while epoch < cfg.epochs:
            epoch_start = shuffler.bit_generator.state
            order = torch.from_numpy(shuffler.permutation(len(faces))).to(device)
            bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, unit="step",
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                       dynamic_ncols=True)
            while batch_in_epoch < steps_per_epoch:
                step_rng = rng_state()
                start = (batch_in_epoch * world + rank) * per_step  # this rank's share
                idx = order[start:start + per_step]
                real = to_model_range(pixels[idx])
                if cfg.flip:  # mirror half the faces: more variety for free
                    mirror = torch.rand(len(real), 1, 1, 1, device=device) < 0.5
                    real = torch.where(mirror, real.flip(-1), real)
                scale = lr_scale(cfg, step, steps_per_epoch)
                for opt, lr in ((m.opt_g, cfg.lr_g), (m.opt_d, cfg.lr_d)):
                    for group in opt.param_groups:
                        group["lr"] = lr * scale
                noise_std = cfg.instance_noise * (1.0 - step / total)
                tensors = train_step(m, real, cfg, noise_std)
                values = torch.stack(list(tensors.values())).tolist()
                # Means over all ranks, so every rank agrees on NaNs.
                stats = dict(zip(tensors, distributed.average(values, device)))
                check_finite(stats, step + 1, run)
                step += 1
                batch_in_epoch += 1
                if main:
                    stats_log.append({"step": step, "epoch": epoch + 1,
                                      "lr_scale": round(scale, 6),
                                      **{k: round(v, 5) for k, v in stats.items()}})
                    monitor.update(step, stats)
                if cfg.max_steps and step >= cfg.max_steps:
                    raise _StopEarly
                bar.update(1)
                bar.set_postfix(d=f"{stats['loss_d']:.3f}", g=f"{stats['loss_g']:.3f}",
                                dx=f"{stats['d_x']:.2f}", dgz=f"{stats['d_gz']:.2f}",
                                refresh=False)
            bar.close()
            epoch, batch_in_epoch = epoch + 1, 0
            epoch_start, step_rng = shuffler.bit_generator.state, rng_state()
            if due(epoch, cfg.sample_every, cfg.epochs):
                snapshot(f"epoch_{epoch:04d}.png")
            if due(epoch, cfg.checkpoint_every, cfg.epochs):
                checkpoint()
                distributed.barrier()  # no rank goes on before the checkpoint is complete
    except _StopEarly:
        bar.close()
        # The step finished: resume with the next step's RNG, in this epoch's order.
        step_rng = rng_state()
        checkpoint()
        snapshot(f"step_{step:08d}.png")
        distributed.barrier()
        return weights
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        checkpoint()
        if step:
            snapshot(f"step_{step:08d}.png")  # sorts after every epoch_*.png
        raise
    if main and not weights.is_file():  # resumed a run that had already finished
        checkpoint()
    distributed.barrier()
    return weights
