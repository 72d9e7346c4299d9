"""The `siamgan` command line: parses, validates and calls the library."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import typer
from tqdm import tqdm

from .cli_common import DEVICE_HELP, fail, require_full, run_training
from .convert import (
    ConvertError,
    ConvertOptions,
    check_report,
    convert,
    expand_inputs,
    parse_shard,
)
from .dcgan.cli import dcgan_app
from .imagefiles import DEFAULT_MAX_PIXELS
from .paths import PathError, check_outside, overlap
from .runs import exit_status
from .stylize import RUNTIMES, TileConfig, load_stylizer, on_host
from .weights_io import GENERATOR_LIMITS, WeightsError, scan_styles

# Everything here imports without torch (the light install stylizes with onnxruntime);
# the commands that train or evaluate import it themselves, after `require_full`.

app = typer.Typer(help="Turn photos into paintings at any resolution.",
                  no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(dcgan_app, name="dcgan")



@app.command()
def stylize(
    inputs: list[str] = typer.Argument(
        ..., help="Image files, folders (walked recursively, mirrored under -o) or quoted "
                  "globs such as 'trip/**/*.jpg'; - reads one image from standard input."),
    output: str = typer.Option(..., "-o", "--output",
                               help="Output folder (end it with / to be sure), or an output "
                                    "file for a single input; - writes one image to "
                                    "standard output."),
    style: str = typer.Option(None, "--style", "-s", help="Style name; see `siamgan styles`."),
    weights: Path = typer.Option(None, "--weights", help="A style's .safetensors file."),
    tile: int = typer.Option(None, "--tile", min=8, max=1024,
                             help="Tile size in px (default: the style's training tile)."),
    scale: float = typer.Option(1.0, "--scale", min=0.01, max=8.0,
                                help="Brush size, relative to the style's default: 1 paints "
                                     "strokes as large, relative to the whole picture, as "
                                     "in the style's paintings, at any image size; 0.5 "
                                     "strokes twice as large, 2 half as large. The output "
                                     "keeps the input's size."),
    strokes: str = typer.Option("picture", "--strokes",
                                help="picture: --scale is relative to the whole picture "
                                     "(a coarse painting plus finer detail, docs/strokes.md); "
                                     "pixel: the input is resized by --scale, painted, and "
                                     "resized back (the style's strokes at the image's "
                                     "pixels)."),
    detail: float = typer.Option(None, "--detail", min=0.0, max=2.0,
                                 help="With --strokes picture: how much of the finer "
                                      "paintings' detail is added to the coarse one (0: "
                                      "none, the fastest; default: the style's own)."),
    match_detail: bool = typer.Option(True, "--match-detail/--no-match-detail",
                                      help="With --strokes picture: before the coarse "
                                           "painting, raise the picture's fine detail to "
                                           "that of the photos the style learnt from, where "
                                           "it has less (smooth, large photos; "
                                           "docs/strokes.md). Styles without a record of "
                                           "their photos' detail skip it."),
    shift_average: bool = typer.Option(True, "--shift-average/--no-shift-average",
                                       help="Paint each size the output enlarges 3× or "
                                            "more twice, shifted by 2 px, and average: "
                                            "slanted edges stay smooth instead of becoming "
                                            "a staircase of blocks (docs/strokes.md)."),
    photo_edges: bool = typer.Option(True, "--photo-edges/--no-photo-edges",
                                     help="Enlarge the paintings the output magnifies 3× "
                                          "or more with the photo's own edges (a guided "
                                          "upsampling): edges stay sharp and "
                                          "smooth, without the generator's blocky steps; "
                                          "flat areas keep the painting's dabs "
                                          "(docs/strokes.md)."),
    flow: bool = typer.Option(True, "--flow/--no-flow",
                              help="Lay the coarse painting's dabs along the photo's forms "
                                   "(its brightness contours) as short strokes, instead of "
                                   "the generator's one diagonal pattern everywhere "
                                   "(docs/strokes.md)."),
    overlap: int = typer.Option(None, "--overlap", min=0,
                                help="Overlap between tiles in px (default ⅛ of the tile, 8 "
                                     "px for 64-px tiles: neighbours cross-fade, which "
                                     "hides faint seams in flat areas). 0 = abutting "
                                     "tiles, as trained by the Combo model."),
    blend: str = typer.Option("feather", "--blend",
                              help="How overlapping tiles combine: feather (cross-fade) or "
                                   "crop (each pixel from the tile it is central in)."),
    seamless: bool = typer.Option(False, "--seamless",
                                  help="Hide tile seams: tiles 1.5× as wide, only their "
                                       "centres kept (--blend crop). About 2× the time."),
    palette: float = typer.Option(None, "--palette", min=0.0, max=1.0,
                                  help="How far colours move to the style's paintings after "
                                       "the generator: 0 (off) to 1 (full Reinhard transfer). "
                                       "Default: the style's own default."),
    batch_size: int = typer.Option(None, "--batch-size", min=1,
                                   help="Tiles per forward pass (default 16 on the CPU, 256 "
                                        "on a GPU); small images share passes. Halved "
                                        "automatically on out-of-memory."),
    out_format: str = typer.Option(None, "--format",
                                   help="Write every output as jpg, png or webp "
                                        "(default: keep each input's format and name)."),
    quality: int = typer.Option(95, "--quality", min=1, max=100,
                                help="JPEG/WebP quality of the outputs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that exist."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1,
                                   help="Refuse larger images before decoding "
                                        "(decompression-bomb guard)."),
    report_file: Path = typer.Option(None, "--report",
                                     help="Write the summary (converted, skipped, failed "
                                          "with reasons) to this JSON file."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("float32", "--precision",
                                  help="float32, or bfloat16: faster on CPUs with bf16 "
                                       "instructions, within a few levels of float32."),
    shard: str = typer.Option(None, "--shard", metavar="K/N",
                              help="Convert only shard K of N (a fixed 1/N of the files), so "
                                   "N workers or a job array share one library."),
    runtime: str = typer.Option("auto", "--runtime",
                                help="What runs the style: onnx (onnxruntime, the CPU, "
                                     "float32; the light install), torch (the full install; "
                                     "any device and precision) or auto (onnx when the "
                                     "style has an .onnx model and the run is float32 on "
                                     "the CPU, else torch)."),
) -> None:
    """Stylize photos with a trained style, at their full resolution.

    Formats are detected from content (JPEG, PNG, WebP, BMP, TIFF, GIF). Outputs
    keep name, format, size, EXIF (orientation applied), ICC profile, DPI and
    alpha. Animated GIF/WebP and multi-page TIFF: only the first frame is
    stylized, with a warning. Existing outputs are skipped, every write is
    atomic, and Ctrl-C then the same command again resumes.

    Exit status: 0 all converted or skipped, 1 some files failed, 2 usage
    error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """
    if (style is None) == (weights is None):
        fail("give exactly one of --style NAME or --weights FILE", 2)
    if runtime not in RUNTIMES:
        fail(f"--runtime must be one of {', '.join(RUNTIMES)}", 2)
    try:
        options = ConvertOptions(out_format, quality, overwrite, max_pixels,
                                 TileConfig(tile, overlap, scale, batch_size or 16, blend,
                                            seamless, palette, strokes, detail,
                                            match_detail, shift_average, photo_edges,
                                            flow),
                                 progress=output != "-",
                                 log=lambda line: tqdm.write(line, file=sys.stderr),
                                 shard=None if shard is None else parse_shard(shard))
        if "-" not in inputs:
            expand_inputs(inputs)  # usage errors before the style is loaded
        if report_file is not None:
            check_report(report_file, inputs)
        stylizer = load_stylizer(str(weights or style), runtime, device, precision)
        if batch_size is None:
            batch_size = 16 if on_host(stylizer) else 256
        options.tiling.batch_size = batch_size
        report = convert(stylizer, inputs, output, options)
    except (WeightsError, ConvertError, ValueError) as e:
        fail(str(e), 2)
    # The summary first: it must not be lost if the report cannot be written.
    typer.echo(report.summary(), err=report.exit_code != 0 or output == "-")
    if report_file is not None:
        try:
            report.write_json(report_file)
        except OSError as e:
            fail(f"cannot write the report {report_file}: {e.strerror or e}",
                 report.exit_code or 1)
    raise typer.Exit(report.exit_code)


@app.command(name="train")
def train_cmd(
    a: Path = typer.Option(..., "--a", help="Folder of domain-A images (photos)."),
    b: Path = typer.Option(..., "--b", help="Folder of domain-B images (paintings)."),
    name: str = typer.Option(..., "--name", help="Style name; the run goes to RUNS/NAME."),
    steps: int = typer.Option(20000, "--steps", min=1, help="Total training steps."),
    tile: int = typer.Option(64, "--tile", min=8, max=1024,
                             help="Tile size S; crops are 2S×2S."),
    batch: int = typer.Option(16, "--batch", min=2, help="Crops per batch."),
    recipe: str = typer.Option("default", "--recipe",
                               help="default, or seed (the seed article's objective only)."),
    margin: float = typer.Option(None, "--margin", help="Margin m for fakes (default 1.0)."),
    cosine_weight: float = typer.Option(None, "--lambda", help="Weight λ of T (default 10)."),
    lr_g: float = typer.Option(None, "--lr-g", help="Generator learning rate (default 1e-4)."),
    lr_d: float = typer.Option(None, "--lr-d", help="Discriminator learning rate (default 1e-4)."),
    identity: float = typer.Option(None, "--identity", help="Identity-term weight (default 1)."),
    mse: float = typer.Option(None, "--mse", help="TraVeLGAN MSE weight on the transformation "
                                                  "vectors (default 1)."),
    critic: float = typer.Option(None, "--critic", help="Scalar hinge-critic weight (default 1)."),
    seam: float = typer.Option(None, "--seam",
                               help="Weight of the seam term: the pixel steps at the Combo "
                                    "tiles' joins should match the steps elsewhere (default 0)."),
    colour: float = typer.Option(None, "--colour",
                                 help="Weight of the colour term: each batch's colour mean and "
                                      "covariance held to all the paintings' (default 0)."),
    contrast: float = typer.Option(None, "--contrast",
                                   help="Weight of the contrast term: the spread of each crop's "
                                        "colour contrast held to the paintings' crops' "
                                        "(default 0)."),
    chroma: float = typer.Option(None, "--chroma",
                                 help="Weight of the chroma term: the spread of each crop's "
                                      "colourfulness held to the paintings' crops' "
                                      "(default 0)."),
    gamut: float = typer.Option(None, "--gamut",
                                help="Weight of the gamut term: each pixel's colour held "
                                     "within --gamut-radius of the paintings' colours "
                                     "(default 0)."),
    gamut_radius: float = typer.Option(None, "--gamut-radius",
                                       help="The gamut's radius, in the paintings' colour "
                                            "spread (Mahalanobis distance; default 3)."),
    nce: float = typer.Option(None, "--nce",
                              help="Weight of PatchNCE (CUT) on G's own encoder features: each "
                                   "patch of a translation must match the same place of its "
                                   "photo, not other places (default 0; v2 recipe 10)."),
    shift: float = typer.Option(None, "--shift",
                                help="Weight of the shift term: G paints two windows of a "
                                     "photo crop 1-3 px apart alike, so its strokes follow "
                                     "the photo, not its own 4-px grid (default 0)."),
    noise_init: float = typer.Option(None, "--noise-init",
                                     help="With --noise --init-from: start the noise "
                                          "input's weights at this fraction of the spread "
                                          "of the colour weights, not at zero (default 0)."),
    noise_frozen: bool = typer.Option(None, "--noise-frozen/--noise-trained",
                                      help="With --noise: keep the noise input's weights as "
                                           "they start, so G cannot learn to ignore the "
                                           "noise (default: trained)."),
    patch_critic: str = typer.Option("", "--patch-critic",
                                     help="D depths with a patch critic, e.g. 3,4: strokes "
                                          "judged at several scales (default none)."),
    patch_weight: float = typer.Option(None, "--patch-weight",
                                       help="Weight of the patch critics' hinge loss "
                                            "(default 1 with --patch-critic)."),
    augment_policy: str = typer.Option("", "--augment",
                                       help="DiffAugment for D: translation,cutout (default "
                                            "none). No colour jitter: the palette is learned."),
    identity_crops: int = typer.Option(0, "--identity-crops", min=0,
                                       help="Take the identity term on this many paintings "
                                            "of each batch, not all (0: all); each costs a "
                                            "generator pass."),
    train_precision: str = typer.Option("float32", "--precision",
                                        help="float32, or bfloat16: G's and D's passes under "
                                             "bf16 autocast, about 2× faster on CPUs with "
                                             "AVX-512 BF16 (weights stay float32)."),
    min_crop_scale: float = typer.Option(0.5, "--min-crop-scale", min=0.05, max=1.0,
                                         help="Crops are zoomed out by up to 1/this."),
    ema_decay: float = typer.Option(None, "--ema-decay", min=0.0, max=0.99999,
                                    help="Decay of the exported EMA of G per step "
                                         "(default 0.999)."),
    zoom_a: float = typer.Option(None, "--zoom-a", min=1.0,
                                 help="Half the photo crops enlarged by up to this factor, "
                                      "like the flat tiles of large photos (default 1: none)."),
    vivid_a: float = typer.Option(None, "--vivid-a", min=0.0, max=1.0,
                                  help="Share of the photo crops made more colourful, up to "
                                       "--saturation-a × (vivid photos: flowers, macro shots; "
                                       "default 0)."),
    saturation_a: float = typer.Option(None, "--saturation-a", min=1.0,
                                       help="How colourful --vivid-a makes a crop at most: each "
                                            "pixel's distance from its grey × up to this "
                                            "(default 2)."),
    channels: int = typer.Option(32, "--channels", min=4, max=GENERATOR_LIMITS["channels"][1],
                                 help="Generator base width."),
    res_blocks: int = typer.Option(4, "--res-blocks", min=0,
                                   max=GENERATOR_LIMITS["res_blocks"][1],
                                   help="Generator residual blocks."),
    norm: str = typer.Option("pixel", "--norm", help="Generator norm: pixel, none, instance."),
    skip: bool = typer.Option(False, "--skip",
                              help="Generator skip: full-size features reach the decoder, so "
                                   "strokes can follow the photo's fine detail (with "
                                   "--init-from, added at zero to that style's G)."),
    noise: bool = typer.Option(False, "--noise",
                               help="Generator noise input: a fourth channel of noise to paint "
                                    "flat areas from, fixed per pixel when stylizing (with "
                                    "--init-from, added at zero)."),
    streaks: bool = typer.Option(False, "--streaks",
                                 help="With --noise: lay the noise in streaks along the "
                                      "photo's contours, so the texture G paints from it "
                                      "follows the forms."),
    upsample: str = typer.Option(None, "--upsample",
                                 help="Generator decoder upsampling: nearest (default) or "
                                      "bilinear (no 4-px blocks along a magnified painting's "
                                      "edges; with --init-from, that style's G is switched)."),
    no_combo: bool = typer.Option(False, "--no-combo",
                                  help="Ablation: train G on whole crops, not via Combo "
                                       "(with --resume: from the checkpoint on)."),
    init_from: str = typer.Option(None, "--init-from",
                                  help="Start G (and its EMA) from this style's weights; its "
                                       "architecture replaces --channels/--res-blocks/--norm. "
                                       "D starts fresh."),
    d_warmup: int = typer.Option(0, "--d-warmup", min=0,
                                 help="Train only D for the first N steps (for --init-from)."),
    sample_every: int = typer.Option(500, "--sample-every", min=1, help="Steps between samples."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1,
                                         help="Steps between checkpoints."),
    holdout_every: int = typer.Option(0, "--holdout-every", min=0,
                                      help="Keep every K-th A image (sorted) out of training, "
                                           "for `siamgan eval`; 0 uses all."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders go."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue RUNS/NAME from its checkpoint, with its config; "
                                     "loss weights, learning rates, --zoom-a, --vivid-a, "
                                     "--saturation-a and "
                                     "--ema-decay given with it change (logged in "
                                     "config.json)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
) -> None:
    """Learn a style from two folders of unpaired images (photos → paintings)."""
    require_full("siamgan train")
    from .models import DiscriminatorConfig, GeneratorConfig
    from .stylize import load_style
    from .train import TrainConfig, train

    overrides = {k: v for k, v in dict(margin=margin, cosine_weight=cosine_weight, lr_g=lr_g,
                                       lr_d=lr_d, identity_weight=identity,
                                       mse_weight=mse, critic_weight=critic,
                                       seam_weight=seam, colour_weight=colour, zoom_a=zoom_a,
                                       vivid_a=vivid_a, saturation_a=saturation_a,
                                       contrast_weight=contrast, chroma_weight=chroma,
                                       gamut_weight=gamut, gamut_radius=gamut_radius,
                                       ema_decay=ema_decay, nce_weight=nce,
                                       patch_weight=patch_weight, shift_weight=shift,
                                       noise_init=noise_init,
                                       noise_frozen=noise_frozen).items()
                 if v is not None}
    try:
        heads = tuple(int(d) for d in patch_critic.split(",") if d.strip())
    except ValueError:
        fail(f"--patch-critic takes depths like 3,4, got {patch_critic!r}", 2)
    if heads and patch_weight is None and not resume:
        overrides["patch_weight"] = 1.0
    try:
        generator = GeneratorConfig(channels, res_blocks, norm, skip, noise,
                                    upsample or "nearest", streaks)
    except ValueError as e:
        fail(f"{e} (--norm, --upsample, --streaks)", 2)
    if init_from:
        try:
            start = load_style(init_from)[0].config
        except WeightsError as e:
            fail(str(e), 2)
        generator = replace(start, skip=skip or start.skip, noise=noise or start.noise,
                            upsample=upsample or start.upsample,
                            streaks=streaks or start.streaks)
    # With --resume the checkpoint's config is the base and ``overrides`` are checked as
    # changes to it (a --patch-weight needs the checkpoint's patch critic, not this call's).
    built = {} if resume else overrides
    common = dict(steps=steps, tile_size=tile, batch_size=batch, combo=resume or not no_combo,
                  sample_every=sample_every, checkpoint_every=checkpoint_every, seed=seed,
                  holdout_every=holdout_every, min_crop_scale=min_crop_scale,
                  device=device, generator=generator, init_from=init_from, d_warmup=d_warmup,
                  augment=augment_policy, identity_crops=identity_crops,
                  precision=train_precision)
    # As deep as the crop allows: each stride-2 layer halves it, and a 4×4 kernel needs ≥ 2 px.
    d_layers = min(DiscriminatorConfig.layers, (2 * tile).bit_length() - 1)
    try:
        if recipe == "seed":
            cfg = TrainConfig.seed_recipe(**common, **built, discriminator=DiscriminatorConfig(
                layers=d_layers, spectral_norm=False, critic=False))
        elif recipe == "default":
            cfg = TrainConfig(**common, **built,
                              discriminator=DiscriminatorConfig(layers=d_layers,
                                                                patch_heads=heads))
        else:
            fail(f"unknown recipe {recipe!r} (default or seed)", 2)
    except ValueError as e:
        fail(str(e), 2)
    if dry_run:
        typer.echo(json.dumps(asdict(cfg), indent=2))
        return
    if overlap(a, b):
        typer.echo(f"warning: --a {a} and --b {b} are the same photos (or one holds the "
                   "other): there is no style to learn, only a copy", err=True)
    # With --resume, the weights and rates given here change the checkpoint's (logged).
    changes = {**overrides, **({"combo": False} if no_combo else {})} if resume else None
    run_training(lambda: train(cfg, a, b, name, runs_dir, resume, changes=changes),
                 runs_dir / name,
                 f"style {name!r} exported to")


@app.command()
def polish(
    photos: Path = typer.Option(..., "--photos", help="Folder of photos (domain A)."),
    name: str = typer.Option(..., "--name", help="Name of the polished style; the run goes "
                                                 "to RUNS/NAME."),
    style: str = typer.Option("vangogh", "--style", "-s",
                              help="The style to polish (a name or a .safetensors path)."),
    steps: int = typer.Option(400, "--steps", min=1, help="Total polish steps."),
    batch: int = typer.Option(4, "--batch", min=1, help="Crops per batch."),
    crop_tiles: int = typer.Option(4, "--crop-tiles", min=2,
                                   help="Crops are this many tiles on a side."),
    lr: float = typer.Option(5e-5, "--lr", help="Learning rate."),
    seam: float = typer.Option(1.0, "--seam", min=0.0, help="Weight of the seam term."),
    level: float = typer.Option(0.0, "--level", min=0.0,
                                help="Weight of the level term: no tile-grid position of "
                                     "another mean colour (a frame along tile borders)."),
    level_per_image: bool = typer.Option(False, "--level-per-image",
                                         help="Take the level term in each crop, not on "
                                              "the batch mean."),
    anchor: float = typer.Option(1.0, "--anchor", min=0.0,
                                 help="Weight of the L1 to the style before polishing."),
    max_zoom: float = typer.Option(10.0, "--max-zoom", min=1.0,
                                   help="Half the crops enlarged by up to this factor."),
    dark: float = typer.Option(0.0, "--dark", min=0.0, max=1.0,
                               help="Share of the crops darkened by up to 8× (night scenes)."),
    holdout_every: int = typer.Option(0, "--holdout-every", min=0,
                                      help="Keep every K-th photo (sorted) out, as in train."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    sample_every: int = typer.Option(100, "--sample-every", min=1,
                                     help="Steps between sample sheets."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1,
                                         help="Steps between checkpoints."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders go."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue RUNS/NAME from its checkpoint, with its config."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Fine-tune a style so its abutting tiles leave no seams on large photos.

    No discriminator: through the Combo model, a seam term evens out the pixel steps
    across the tile grid while an L1 anchor to the style itself keeps its strokes and
    colours (docs/training.md).
    """
    require_full("siamgan polish")

    from .polish import PolishConfig
    from .polish import polish as run_polish

    try:
        cfg = PolishConfig(style=style, steps=steps, batch_size=batch, crop_tiles=crop_tiles,
                           lr=lr, seam_weight=seam, level_weight=level,
                           level_per_image=level_per_image, anchor_weight=anchor,
                           max_zoom=max_zoom, dark_share=dark,
                           holdout_every=holdout_every, seed=seed, sample_every=sample_every,
                           checkpoint_every=checkpoint_every, device=device)
    except ValueError as e:
        fail(str(e), 2)
    try:
        run_training(lambda: run_polish(cfg, photos, name, runs_dir, resume), runs_dir / name,
                     f"style {name!r} exported to")
    except WeightsError as e:
        fail(str(e), 2)


def _new_style_option() -> typer.models.OptionInfo:
    """``-o``: where a command that records something in a style writes the new one."""
    return typer.Option(..., "-o", "--output",
                        help="The new style's .safetensors file (its .json beside it).")


def _source_style_option() -> typer.models.OptionInfo:
    """``--style``: the style such a command starts from."""
    return typer.Option(..., "--style", "-s",
                        help="The style (a name or a .safetensors path).")


@app.command(name="palette")
def palette_cmd(
    paintings: Path = typer.Option(..., "--paintings", help="Folder of the style's paintings."),
    output: Path = _new_style_option(),
    style: str = _source_style_option(),
    strength: float = typer.Option(0.5, "--strength", min=0.0, max=1.0,
                                   help="Default strength of the palette match (0 = off)."),
) -> None:
    """Record the paintings' colours in a style, for the palette match after its generator.

    Writes the style's weights unchanged with the paintings' CIE-Lab mean and std and a
    default strength in its config; `stylize --palette` overrides the strength.
    """
    require_full("siamgan palette")

    from .palette import record_palette

    try:
        path = record_palette(style, paintings, strength, output)
    except (WeightsError, ValueError, OSError) as e:
        fail(str(e), 2)
    typer.echo(f"style with palette written to {path}")


@app.command(name="photo-detail")
def photo_detail_cmd(
    photos: Path = typer.Option(..., "--photos", help="Folder of the style's training photos."),
    output: Path = _new_style_option(),
    style: str = _source_style_option(),
    holdout_every: int = typer.Option(10, "--holdout-every", min=0,
                                      help="Leave out every K-th photo (sorted), as `train "
                                           "--holdout-every K` did; 0 = use all."),
) -> None:
    """Record the training photos' fine detail in a style, for `stylize --match-detail`.

    Writes the style's weights unchanged with the photos' median detail (the finest
    Laplacian bands, each photo seen at the style's coarse-painting size) in its
    config. `train` records it itself; this adds it to a style trained before.
    """
    require_full("siamgan photo-detail")

    from .detail import record_photo_detail

    try:
        path, found = record_photo_detail(style, photos, holdout_every, output)
    except (WeightsError, ValueError, OSError) as e:
        fail(str(e), 2)
    typer.echo(f"photo detail {found} recorded; style written to {path}")


@app.command(name="eval")
def eval_cmd(
    photos: Path = typer.Option(None, "--photos",
                                help="Folder of photos (domain A): held-out photos scored at "
                                     "their own size, plus the seam score."),
    paintings: Path = typer.Option(..., "--paintings", help="Folder of paintings (domain B)."),
    style: str = typer.Option(None, "--style", "-s", help="Style name; see `siamgan styles`."),
    weights: Path = typer.Option(None, "--weights", help="A style's .safetensors file."),
    large: Path = typer.Option(None, "--large",
                               help="Folder of large photos, each stylized at full size and "
                                    "seen whole at the paintings' size: whole-picture SWD and "
                                    "SSIM, seams at the tile pitch, time."),
    yardstick: Path = typer.Option(None, "--yardstick",
                                   help="With --large: another tool's outputs of the same "
                                        "photos (same file stems), scored alike and put in "
                                        "the sheets (benchmarks/yardstick.py)."),
    sheets: Path = typer.Option(None, "--sheets",
                                help="With --large: write input | siamgan | yardstick sheets, "
                                     "whole and 100 % crops, to this folder."),
    save: Path = typer.Option(None, "--save",
                              help="With --large: also save the full-size outputs here."),
    holdout_every: int = typer.Option(10, "--holdout-every", min=0,
                                      help="Score only every K-th photo (sorted), the ones "
                                           "`train --holdout-every K` kept out; 0 = all."),
    seam_photos: int = typer.Option(3, "--seam-photos", min=0,
                                    help="Photos resized to 2560×1600 for the seam score."),
    tile: int = typer.Option(None, "--tile", min=8, max=1024, help="As in stylize."),
    overlap: int = typer.Option(None, "--overlap", min=0,
                                help="Tile overlap in px (default ⅛ of the tile, as in "
                                     "stylize)."),
    blend: str = typer.Option("feather", "--blend", help="As in stylize."),
    seamless: bool = typer.Option(False, "--seamless", help="As in stylize."),
    scale: float = typer.Option(1.0, "--scale", min=0.01, max=8.0, help="As in stylize."),
    strokes: str = typer.Option("picture", "--strokes", help="As in stylize."),
    detail: float = typer.Option(None, "--detail", min=0.0, max=2.0, help="As in stylize."),
    match_detail: bool = typer.Option(True, "--match-detail/--no-match-detail",
                                      help="As in stylize."),
    shift_average: bool = typer.Option(True, "--shift-average/--no-shift-average",
                                       help="As in stylize."),
    photo_edges: bool = typer.Option(True, "--photo-edges/--no-photo-edges",
                                     help="As in stylize."),
    flow: bool = typer.Option(True, "--flow/--no-flow", help="As in stylize."),
    palette: float = typer.Option(None, "--palette", min=0.0, max=1.0, help="As in stylize."),
    json_out: Path = typer.Option(None, "--json", help="Also write the results as JSON."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Score a style: style distance (SWD), content kept (SSIM) and tile seams."""
    require_full("siamgan eval")

    from .evaluate import EvalConfig, evaluate, evaluate_large, format_large, format_table
    from .runs import write_json
    from .stylize import Stylizer

    if (style is None) == (weights is None):
        fail("give exactly one of --style NAME or --weights FILE", 2)
    if photos is None and large is None:
        fail("give --photos DIR, --large DIR or both", 2)
    if large is None and (yardstick or sheets or save):
        fail("--yardstick, --sheets and --save go with --large", 2)
    inputs = [p for p in (photos, paintings, large, yardstick) if p is not None]
    try:
        for out, what in ((sheets, "--sheets"), (save, "--save"), (json_out, "--json")):
            if out is not None:
                check_outside(out, inputs, what)
    except PathError as e:
        fail(str(e), 2)
    result: dict = {}
    try:
        stylizer = Stylizer.from_style(str(weights or style), device)
        tiling = TileConfig(tile, overlap, scale, blend=blend, seamless=seamless,
                            palette=palette, strokes=strokes, detail=detail,
                            match_detail=match_detail, shift_average=shift_average,
                            photo_edges=photo_edges, flow=flow)
        if photos is not None:
            result = evaluate(stylizer, photos, paintings,
                              EvalConfig(holdout_every=holdout_every, seam_photos=seam_photos),
                              tiling)
        if large is not None:
            result["large"] = evaluate_large(stylizer, large, paintings, tiling, yardstick,
                                             sheets, save)
    except (WeightsError, ValueError, OSError) as e:
        fail(str(e), 2)
    result["style"] = str(weights or style)
    if photos is not None:
        typer.echo(format_table(result))
    if large is not None:
        typer.echo(format_large(result["large"]))
    if json_out is not None:
        write_json(json_out, result)


@app.command(name="serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on. Anything but localhost lets other "
                                  "machines use the page (a warning is printed)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free one)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the browser."),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", min=0.001,
                                        help="Refuse larger uploads, with a message."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1,
                                   help="Refuse larger images before decoding "
                                        "(decompression-bomb guard)."),
    quality: int = typer.Option(95, "--quality", min=1, max=100,
                                help="JPEG/WebP quality of the results."),
    batch_size: int = typer.Option(None, "--batch-size", min=1,
                                   help="Tiles per forward pass (default 16 on the CPU, 256 "
                                        "on a GPU)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("float32", "--precision", help="As in stylize."),
) -> None:
    """Serve a local web page: drop photos, pick a style and brush size, download paintings.

    Photos are converted one at a time exactly as `stylize` converts them (same safe
    decoder, names, formats and metadata), in a temporary folder deleted when Ctrl-C or
    SIGTERM stops the server (exit 0).
    """
    from .runs import terminate_as_interrupt
    from .serve import serve
    from .webqueue import ServeConfig

    try:
        config = ServeConfig(host, port, device, precision, batch_size, max_upload_mb,
                             max_pixels, quality)
    except ValueError as e:
        fail(str(e), 2)
    try:
        with terminate_as_interrupt():  # SIGTERM, like Ctrl-C, ends it through its clean-up
            serve(config, open_browser, echo=lambda line: typer.echo(
                line, err=line.startswith("warning")))
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}", 2)


@app.command(name="export")
def export_cmd(
    style: str = typer.Argument(..., help="Style name or weights (.safetensors) file."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="Where to write OUTPUT.onnx and OUTPUT.json (default: "
                                     "beside a user style's weights, where `stylize "
                                     "--style NAME` finds it)."),
) -> None:
    """Write a style as an ONNX model plus its JSON config, for the light install.

    The model maps tiles (batch × 3 × height × width, float32 in [-1, 1]) to paintings;
    the batch and both sizes are dynamic. `stylize --runtime onnx` runs it with
    onnxruntime, without torch. Shipped styles come with theirs.
    """
    require_full("siamgan export")
    from .onnx_style import export_onnx
    from .weights_io import find_style, shipped_weights_dir

    try:
        source = find_style(style)
        if output is None:
            if source.parent.resolve() == shipped_weights_dir().resolve():
                fail(f"{style!r} is a shipped style and has its ONNX model already "
                     f"({source.with_suffix('.onnx')}); give -o to write a copy", 2)
            output = source.with_suffix(".onnx")
        check_outside(output.with_suffix(".onnx"), [source], "-o")
        model, config = export_onnx(source, output)
    except (WeightsError, PathError, ValueError) as e:
        fail(str(e), 2)
    except OSError as e:
        fail(f"cannot write {output}: {e.strerror or e}", 1)
    typer.echo(f"wrote {model} and {config}")


@app.command()
def styles() -> None:
    """List the styles siamgan can find (shipped and user-trained).

    A style file that cannot be used (unreadable or invalid config, or a user style
    named like a shipped one) is skipped with a warning line on standard error.
    """
    try:
        found, problems = scan_styles()
    except WeightsError as e:
        fail(str(e), 2)
    for line in problems:
        typer.echo(f"warning: {line}", err=True)
    if not found:
        typer.echo("no styles found")
    for s in found:
        typer.echo(f"{s['name']:<16} tile {s['tile_size']!s:<4} {s['path']}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM while a trainer runs (Terminated)
        sys.exit(exit_status(e))


if __name__ == "__main__":
    main()
