"""`siamgan dcgan …`: train, sample and evaluate the DCGAN anime-face baseline."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from ..cli_common import DEVICE_HELP, fail, require_full, run_training
from ..images import DataError, image_grid
from ..paths import PathError, check_outside
from ..runs import save_image, write_json
from ..weights_io import WeightsError

dcgan_app = typer.Typer(help="DCGAN baseline: train, sample and evaluate a face generator.",
                        no_args_is_help=True, add_completion=False,
                        context_settings={"help_option_names": ["-h", "--help"]})



@dcgan_app.callback()
def _full_install_only() -> None:
    """DCGAN baseline: train, sample and evaluate a face generator."""
    require_full("siamgan dcgan")


WEIGHTS_HELP = "Generator .safetensors file (default: the shipped dcgan-anime64)."


def _generator(weights: Path | None, device: str):
    from . import sample as S

    try:
        return S.load_generator(weights, device)
    except WeightsError as e:
        fail(str(e), 2)


@dcgan_app.command(name="train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Folder, or .tar/.tar.gz/.zip, of images."),
    name: str = typer.Option(..., "--name", help="Run name; the run goes to RUNS/NAME."),
    image_size: int = typer.Option(64, "--image-size", help="64 or 96 px."),
    epochs: int = typer.Option(50, "--epochs", min=1, help="Passes over the data."),
    batch: int = typer.Option(128, "--batch", min=2, help="Images per batch."),
    lr_g: float = typer.Option(2e-4, "--lr-g", help="Generator learning rate (Adam)."),
    lr_d: float = typer.Option(2e-4, "--lr-d",
                               help="Discriminator learning rate; the seed's best run used 5e-5."),
    beta1: float = typer.Option(0.5, "--beta1", help="Adam β1."),
    d_steps: int = typer.Option(1, "--d-steps", min=1, help="D updates per step (G:D ratio)."),
    g_steps: int = typer.Option(1, "--g-steps", min=1, help="G updates per step (G:D ratio)."),
    lr_decay_every: int = typer.Option(0, "--lr-decay-every", min=0,
                                       help="Multiply both learning rates by the decay factor "
                                            "every N epochs; 0 = never."),
    lr_decay_factor: float = typer.Option(0.5, "--lr-decay-factor",
                                          help="Factor for --lr-decay-every."),
    smooth: bool = typer.Option(False, "--smooth",
                                help="Also decay learning rates linearly per step to "
                                     "--smooth-end × their value (seed 002)."),
    smooth_end: float = typer.Option(0.1, "--smooth-end", help="Final fraction for --smooth."),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing",
                                          help="One-sided: real targets are 1 − this."),
    label_noise: float = typer.Option(0.0, "--label-noise",
                                      help="Probability of swapping each real/fake label."),
    instance_noise: float = typer.Option(0.0, "--instance-noise",
                                         help="Std of Gaussian noise on D's inputs, annealed "
                                              "to 0 over the run."),
    arch: str = typer.Option("dcgan", "--arch", help="dcgan (convolutional) or mlp (seed 004)."),
    loss: str = typer.Option("bce", "--loss", help="bce or wgan-gp."),
    gp_lambda: float = typer.Option(10.0, "--gp-lambda", help="Gradient-penalty weight λ."),
    d_norm: str = typer.Option("auto", "--d-norm",
                               help="D norm: batch, layer, none; auto = batch under bce, "
                                    "layer under wgan-gp."),
    g_dropout: float = typer.Option(0.0, "--g-dropout", help="Dropout in G's hidden layers."),
    nz: int = typer.Option(100, "--nz", min=1, help="Noise size."),
    ngf: int = typer.Option(64, "--ngf", min=1, help="Generator width."),
    ndf: int = typer.Option(64, "--ndf", min=1, help="Discriminator width."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Mirror half the real faces."),
    limit: int = typer.Option(None, "--limit", min=2, help="Use only the first N images."),
    max_steps: int = typer.Option(0, "--max-steps", min=0,
                                  help="Stop after this many steps (0: run all epochs); "
                                       "learning-rate and noise schedules still follow --epochs."),
    sample_every: int = typer.Option(1, "--sample-every", min=1,
                                     help="Epochs between fixed-noise sample sheets."),
    checkpoint_every: int = typer.Option(1, "--checkpoint-every", min=1,
                                         help="Epochs between checkpoints (and weight exports)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders go."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue RUNS/NAME from its checkpoint up to --epochs "
                                     "(its other settings come from the checkpoint)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
) -> None:
    """Train a face generator on a folder or archive of images."""
    from .models import DCGANConfig
    from .train import DCGANTrainConfig, train_dcgan

    try:
        model = DCGANConfig(image_size, nz, ngf, ndf, arch, loss, d_norm, g_dropout)
        cfg = DCGANTrainConfig(
            epochs=epochs, batch_size=batch, lr_g=lr_g, lr_d=lr_d, beta1=beta1,
            d_steps=d_steps, g_steps=g_steps, lr_decay_every=lr_decay_every,
            lr_decay_factor=lr_decay_factor, smooth=smooth, smooth_end=smooth_end,
            label_smoothing=label_smoothing, label_noise=label_noise,
            instance_noise=instance_noise, gp_lambda=gp_lambda, flip=flip, limit=limit,
            max_steps=max_steps,
            seed=seed, device=device, sample_every=sample_every,
            checkpoint_every=checkpoint_every, model=model)
    except ValueError as e:
        fail(str(e), 2)
    if dry_run:
        typer.echo(json.dumps(asdict(cfg), indent=2))
        return
    run_training(lambda: train_dcgan(cfg, data, name, runs_dir, resume, progress),
                 runs_dir / name, "generator exported to")


@dcgan_app.command(name="sample")
def sample_cmd(
    weights: Path = typer.Option(None, "--weights", help=WEIGHTS_HELP, show_default=False),
    n: int = typer.Option(64, "-n", "--num", min=1, help="Number of faces."),
    seed: int = typer.Option(0, "--seed", help="Noise seed: the same seed, the same faces."),
    output: Path = typer.Option(Path("faces.png"), "-o", "--output",
                                help="Sheet (.png/.jpg), or with --interpolate also .gif/.webp."),
    out_dir: Path = typer.Option(None, "--out-dir",
                                 help="Write single images here instead of a sheet."),
    columns: int = typer.Option(None, "--columns", min=1,
                                help="Faces per row (default: as square as possible)."),
    interpolate: bool = typer.Option(False, "--interpolate",
                                     help="Latent walk from --seed to --to-seed."),
    to_seed: int = typer.Option(None, "--to-seed", help="End of the walk (default: seed + 1)."),
    frames: int = typer.Option(16, "--frames", min=2, help="Faces along the walk."),
    frame_ms: int = typer.Option(80, "--frame-ms", min=10, help="Animation frame time."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Draw new faces (a sheet, single images, or a latent walk)."""
    from . import sample as S

    try:
        for out, what in ((output, "-o"), (out_dir, "--out-dir")):
            if out is not None and weights is not None:
                check_outside(out, [weights], what)
    except PathError as e:
        fail(str(e), 2)
    gen = _generator(weights, device)
    if interpolate:
        walk = S.interpolate(gen, seed, seed + 1 if to_seed is None else to_seed, frames)
        if out_dir is not None:
            paths = S.save_images(walk, out_dir, "frame")
            typer.echo(f"wrote {len(paths)} frames to {out_dir}")
        elif output.suffix.lower() in (".gif", ".webp"):
            typer.echo(f"wrote {S.save_animation(walk, output, frame_ms)}")
        else:
            save_image(output, image_grid(list(walk), columns or frames))
            typer.echo(f"wrote {output}")
        return
    faces = S.sample_faces(gen, n, seed)
    if out_dir is not None:
        paths = S.save_images(faces, out_dir)
        typer.echo(f"wrote {len(paths)} faces to {out_dir}")
        return
    if output.suffix.lower() in (".gif", ".webp"):
        fail("an animated output needs --interpolate", 2)
    save_image(output, image_grid(list(faces), columns or S.grid_columns(n)))
    typer.echo(f"wrote {output}")


@dcgan_app.command(name="eval")
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="Real faces: folder or archive."),
    weights: Path = typer.Option(None, "--weights", help=WEIGHTS_HELP, show_default=False),
    n: int = typer.Option(512, "-n", "--num", min=2, help="Generated faces (and floor set)."),
    n_real: int = typer.Option(1024, "--real", min=2, help="Real reference faces."),
    pairs: int = typer.Option(500, "--pairs", min=1, help="Pairs for mean MS-SSIM."),
    seed: int = typer.Option(0, "--seed", help="Seed for noise, splits and patches."),
    json_out: Path = typer.Option(None, "--json", help="Also write the results here."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """SWD against real faces (with the real-vs-real floor) and MS-SSIM diversity."""
    from . import sample as S
    from .train import load_faces

    if json_out is not None:
        try:
            check_outside(json_out, [data, *([weights] if weights else [])], "--json")
        except PathError as e:
            fail(str(e), 2)
    gen = _generator(weights, device)
    try:
        real = load_faces(data, gen.config.image_size)
        result = S.evaluate(gen, real, n, n_real, pairs, seed)
    except (DataError, ValueError) as e:
        fail(str(e), 2)
    rows = [("SWD generated vs real (×1e3)", result["swd"]),
            ("SWD real vs real (floor)", result["swd_floor"]),
            ("SWD ratio (target ≤ 2)", result["swd_ratio"]),
            ("mean MS-SSIM generated", result["ms_ssim_generated"]),
            ("mean MS-SSIM real", result["ms_ssim_real"]),
            ("MS-SSIM gap (target ≤ 0.05)", result["ms_ssim_gap"])]
    typer.echo(f"{n} generated, {n_real} real reference, {pairs} pairs, seed {seed}")
    for label, value in rows:
        typer.echo(f"  {label:<32} {value:10.4f}")
    if json_out is not None:
        write_json(json_out, {"weights": str(weights or S.default_weights()), **result})
        typer.echo(f"wrote {json_out}")
