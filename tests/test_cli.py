"""The command line end to end through typer's runner: train → styles → stylize → eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import folder
from PIL import Image
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.evaluate import EvalConfig, evaluate
from siamgan.stylize import Stylizer, TileConfig

# The smallest run the CLI's default discriminator (5 stride-2 layers) accepts: 32-px crops.
TINY = ["--tile", "16", "--batch", "2", "--steps", "2", "--channels", "4", "--res-blocks", "1",
        "--sample-every", "1", "--checkpoint-every", "1", "--device", "cpu"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_train_styles_stylize_eval(tmp_path, home):
    a = folder(tmp_path / "a", 3, seed=1, size=(64, 72))
    b = folder(tmp_path / "b", 4, seed=2, size=(64, 80))
    runs = tmp_path / "runs"

    r = cli("train", "--a", str(a), "--b", str(b), "--name", "tiny", "--runs-dir", str(runs),
            *TINY)
    assert r.exit_code == 0, r.output
    exported = home / "styles" / "tiny.safetensors"
    assert "exported" in r.stdout and str(exported) in r.stdout
    assert exported.is_file() and (runs / "tiny" / "checkpoint.pt").is_file()
    assert len((runs / "tiny" / "stats.jsonl").read_text().splitlines()) == 2
    assert json.loads((runs / "tiny" / "config.json").read_text())["tile_size"] == 16

    r = cli("styles")
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("tiny "))
    assert "tile 16" in line and str(exported) in line

    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(3).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    out = tmp_path / "out.png"
    r = cli("stylize", str(photo), "-o", str(out), "--style", "tiny", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.size == (45, 37)
        assert not np.array_equal(np.asarray(im.convert("RGB")), pixels)

    # The same style through --weights, with overlap and scale.
    out2 = tmp_path / "out2.png"
    r = cli("stylize", str(photo), "-o", str(out2), "--weights", str(exported),
            "--overlap", "4", "--scale", "0.5", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with Image.open(out2) as im:
        assert im.size == (45, 37)

    # A picture the paintings' size magnifies: flow and photo edges on by default.
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (200, 260, 3), dtype=np.uint8)
                    ).save(big)
    outs = {}
    for name, extra in (("on", []), ("off", ["--no-flow", "--no-photo-edges"])):
        outs[name] = tmp_path / f"{name}.png"
        r = cli("stylize", str(big), "-o", str(outs[name]), "--style", "tiny", "--device",
                "cpu", *extra)
        assert r.exit_code == 0, r.output
    with Image.open(outs["on"]) as on, Image.open(outs["off"]) as off:
        assert on.size == off.size == (260, 200)
        assert np.abs(np.asarray(on, dtype=int) - np.asarray(off, dtype=int)).mean() > 0.5

    report = tmp_path / "eval.json"
    r = cli("eval", "--photos", str(a), "--paintings", str(b), "--style", "tiny",
            "--seam-photos", "0", "--holdout-every", "0", "--device", "cpu",
            "--json", str(report))
    assert r.exit_code == 0, r.output
    assert "SWD" in r.stdout and "SSIM" in r.stdout
    assert "3 held-out photos, 4 paintings, tile 16" in r.stdout
    result = json.loads(report.read_text())
    assert result["photos"] == 3 and result["paintings"] == 4 and result["style"] == "tiny"
    assert result["swd"]["stylized"]["mean"] >= 0
    assert "palette with the scene" in r.stdout
    assert set(result["scene"]) == {"stylized", "colour_transfer"}
    assert -1 <= result["scene"]["stylized"]["brightness"] <= 1


def test_eval_with_seams_at_any_scale(tmp_path):
    """`siamgan eval --scale F` must score (or skip, saying why) the seams, not fail."""
    photos = folder(tmp_path / "a", 2, seed=1, size=(64, 64))
    paintings = folder(tmp_path / "b", 4, seed=2, size=(64, 64))
    cfg = EvalConfig(holdout_every=0, seam_photos=1, seam_width=128, seam_height=64)
    result = evaluate(Stylizer(torch.nn.Identity(), 16), photos, paintings, cfg,
                      TileConfig(scale=0.75))
    assert result["swd"]["stylized"]["mean"] >= 0
    assert result["seams"]["stylized"] or result["seams"].get("skipped")


def test_train_resume_continues_from_the_checkpoint(tmp_path, home, spy_train_steps):
    a = folder(tmp_path / "a", 3, seed=1, size=(40, 50))
    b = folder(tmp_path / "b", 3, seed=2, size=(40, 50))
    args = ["train", "--a", str(a), "--b", str(b), "--name", "r", "--runs-dir",
            str(tmp_path / "runs"), *TINY, "--sample-every", "100"]
    assert cli(*args).exit_code == 0
    calls = spy_train_steps()
    r = cli(*args, "--steps", "3", "--resume")  # the last --steps wins
    assert r.exit_code == 0, r.output
    assert calls == [2]
    rows = (tmp_path / "runs" / "r" / "stats.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in rows] == [1, 2, 3]
    # Loss weights given with --resume change the run from there on, and say so.
    r = cli(*args, "--steps", "4", "--resume", "--seam", "1.5", "--colour", "2")
    assert r.exit_code == 0, r.output
    assert "seam_weight 0.0 → 1.5" in r.output and "colour_weight 0.0 → 2.0" in r.output
    config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert config["seam_weight"] == 1.5 and config["colour_weight"] == 2.0
    assert config["changes"][0]["step"] == 3
    # An ablation branched from the checkpoint: Combo off from here on.
    r = cli(*args, "--steps", "5", "--resume", "--no-combo", "--seam", "0")
    assert r.exit_code == 0, (r.output, r.exception)
    assert "combo True → False" in r.output
    assert json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["combo"] is False


def test_resume_may_change_the_patch_weight_without_repeating_the_critic(tmp_path, home):
    a = folder(tmp_path / "a", 3, seed=1, size=(40, 50))
    b = folder(tmp_path / "b", 3, seed=2, size=(40, 50))
    args = ["train", "--a", str(a), "--b", str(b), "--name", "p", "--runs-dir",
            str(tmp_path / "runs"), *TINY]
    assert cli(*args, "--patch-critic", "3").exit_code == 0
    # The checkpoint has the patch critic; this call does not name it and must not need to.
    r = cli(*args, "--steps", "3", "--resume", "--patch-weight", "2.5")
    assert r.exit_code == 0, (r.output, r.exception)
    assert "patch_weight 1.0 → 2.5" in r.output
    # A change the checkpoint cannot take is still refused, by the checkpoint's rules.
    r = cli(*args, "--steps", "4", "--resume", "--no-combo", "--seam", "2")
    assert r.exit_code != 0 and "Combo" in r.output


def test_smallest_allowed_tile_trains_or_is_refused_cleanly(tmp_path, home):
    a = folder(tmp_path / "a", 3, seed=1, size=(40, 50))
    b = folder(tmp_path / "b", 3, seed=2, size=(40, 50))
    r = cli("train", "--a", str(a), "--b", str(b), "--name", "t8", "--runs-dir",
            str(tmp_path / "runs"), *TINY, "--tile", "8")  # the last --tile wins
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        assert "tile" in r.output


def test_dry_run_prints_the_resolved_config_and_trains_nothing(tmp_path):
    r = cli("train", "--a", str(tmp_path / "nope"), "--b", str(tmp_path / "nope"),
            "--name", "dry", "--runs-dir", str(tmp_path / "runs"), "--tile", "32",
            "--batch", "3", "--steps", "7", "--channels", "8", "--res-blocks", "2",
            "--lambda", "5", "--margin", "2.5", "--no-combo", "--holdout-every", "4",
            "--device", "cpu", "--noise", "--dry-run")
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.stdout)
    assert cfg["tile_size"] == 32 and cfg["batch_size"] == 3 and cfg["steps"] == 7
    assert cfg["cosine_weight"] == 5 and cfg["margin"] == 2.5
    assert cfg["combo"] is False and cfg["holdout_every"] == 4 and cfg["device"] == "cpu"
    assert cfg["generator"] == {"channels": 8, "res_blocks": 2, "norm": "pixel",
                                "skip": False, "noise": True, "upsample": "nearest",
                                "streaks": False}
    assert cfg["recipe"] == "default" and cfg["discriminator"]["critic"] is True
    assert not (tmp_path / "runs").exists()


def test_dry_run_seed_recipe_drops_the_extras(tmp_path):
    r = cli("train", "--a", "x", "--b", "y", "--name", "dry", "--recipe", "seed", "--dry-run")
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.stdout)
    assert cfg["recipe"] == "seed"
    assert cfg["mse_weight"] == cfg["critic_weight"] == cfg["identity_weight"] == 0
    assert cfg["discriminator"]["spectral_norm"] is False
    assert cfg["discriminator"]["critic"] is False


@pytest.mark.parametrize("args, message", [
    (["train", "--a", "A", "--b", "B", "--name", "n", "--runs-dir", "RUNS",
      "--recipe", "bogus"], "unknown recipe"),
    (["train", "--a", "A", "--b", "B", "--name", "n", "--runs-dir", "RUNS", "--tile", "10"],
     "multiple of 4"),
    (["train", "--a", "MISSING", "--b", "B", "--name", "n", "--runs-dir", "RUNS",
      "--device", "cpu"], "no such file"),
    (["stylize", "IMG", "-o", "OUT", "--style", "x", "--weights", "W"], "exactly one of"),
    (["stylize", "IMG", "-o", "OUT"], "exactly one of"),
    (["eval", "--photos", "A", "--paintings", "B", "--style", "x", "--weights", "W"],
     "exactly one of"),
    (["stylize", "IMG", "-o", "OUT", "--style", "no-such-style"], "not found"),
])
def test_usage_errors_exit_2(tmp_path, home, args, message):
    a = folder(tmp_path / "a", 2, seed=1, size=(8, 8))
    img = a / "0.png"
    subst = {"A": str(a), "B": str(a), "MISSING": str(tmp_path / "missing"), "IMG": str(img),
             "OUT": str(tmp_path / "out.png"), "W": str(tmp_path / "w.safetensors"),
             "RUNS": str(tmp_path / "runs")}
    r = cli(*[subst.get(x, x) for x in args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command, options", [
    ([], ["stylize", "train", "eval", "styles", "dcgan"]),
    (["stylize"], ["--output", "--style", "--weights", "--tile", "--scale", "--overlap",
                   "--device", "--photo-edges", "--flow"]),
    (["train"], ["--a", "--b", "--name", "--steps", "--tile", "--batch", "--recipe",
                 "--resume", "--dry-run", "--device", "--no-combo", "--holdout-every"]),
    (["eval"], ["--photos", "--paintings", "--style", "--weights", "--holdout-every",
                "--seam-photos"]),
    (["styles"], ["List the styles"]),
    (["dcgan"], ["train", "sample", "eval"]),
])
def test_help_of_every_command(command, options):
    r = cli(*command, "--help")
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output
    for option in options:
        assert option in r.output, option


def test_seams_are_folded_at_the_pitch_of_overlapping_tiles():
    from siamgan.evaluate import seam_scores

    class Darken(torch.nn.Module):  # every tile's first 4 columns 8% darker: a seam per tile
        def forward(self, x):
            x = x.clone()
            x[..., :4] = (x[..., :4] + 1) * 0.92 - 1
            return x

    noise = np.random.default_rng(0).normal(0, 12, (256, 256, 3))
    smooth = np.clip(np.linspace(60, 200, 256)[None, :, None] + noise, 0, 255).astype(np.uint8)
    cfg = EvalConfig(seam_photos=1, seam_width=480, seam_height=240)
    s = Stylizer(Darken(), tile_size=32)
    abutting = seam_scores(s, [smooth], cfg, TileConfig(overlap=0, strokes="pixel"))
    cropped = seam_scores(s, [smooth], cfg, TileConfig(tile_size=40, overlap=16, blend="crop",
                                                       strokes="pixel"))
    feathered = seam_scores(s, [smooth], cfg, TileConfig(overlap=8, strokes="pixel"))
    control = cropped["input"][0]  # the same photo unstylized, folded at 24 px
    assert abutting["period"] == 32 and abutting["max"] > 1.5
    assert feathered["period"] == 24 and 1.2 * control < feathered["max"] < abutting["max"]
    assert cropped["period"] == 24 and cropped["max"] == pytest.approx(control, rel=0.01)
    # The darkened band is a frame of another level too; with crop blending it is gone.
    assert abutting["level"]["stylized"][0] > 3 * abutting["level"]["input"][0]
    assert cropped["level"]["stylized"][0] == pytest.approx(cropped["level"]["input"][0],
                                                            abs=0.2)


def test_tiles_cross_fade_over_an_eighth_of_the_tile_by_default():
    s = Stylizer(torch.nn.Identity(), tile_size=64)
    assert s.layout(TileConfig()) == (64, 8, "feather")
    assert s.layout(TileConfig(tile_size=32)) == (32, 4, "feather")
    assert s.layout(TileConfig(tile_size=16)) == (16, 0, "feather")  # 2 px: abutting
    assert s.layout(TileConfig(overlap=0)) == (64, 0, "feather")  # as the Combo trained
    assert s.layout(TileConfig(tile_size=128, blend="crop")) == (128, 16, "crop")
    assert s.layout(TileConfig(seamless=True)) == (96, 32, "crop")  # seamless sets its own


def test_seamless_runs_wider_tiles_and_keeps_their_centres(tmp_path):
    s = Stylizer(torch.nn.Identity(), tile_size=64)
    assert s.layout(TileConfig(seamless=True)) == (96, 32, "crop")
    assert s.layout(TileConfig(tile_size=32, seamless=True)) == (48, 16, "crop")
    assert s.layout(TileConfig(overlap=100)) == (64, 60, "feather")  # capped below the tile
    with pytest.raises(ValueError, match="seamless sets"):
        TileConfig(seamless=True, overlap=8)
    pixels = np.random.default_rng(0).integers(0, 256, (70, 150, 3), dtype=np.uint8)
    np.testing.assert_array_equal(s.stylize_array(pixels, TileConfig(seamless=True)), pixels)
    assert s.tile_count(70, 150, TileConfig(seamless=True)) == 1 * 2  # 96-px tiles, pitch 64
    src = tmp_path / "in.png"
    Image.fromarray(pixels).save(src)
    r = cli("stylize", str(src), "-o", str(tmp_path / "o.png"), "--weights", "x.safetensors",
            "--seamless", "--overlap", "8")
    assert r.exit_code == 2 and "seamless sets" in r.output


def test_train_init_from_takes_the_styles_generator(tmp_path, home):
    a = folder(tmp_path / "a", 3, seed=1, size=(40, 50))
    b = folder(tmp_path / "b", 3, seed=2, size=(40, 50))
    runs = tmp_path / "runs"
    base = ["train", "--a", str(a), "--b", str(b), "--runs-dir", str(runs), *TINY]
    assert cli(*base, "--name", "first").exit_code == 0
    r = cli(*base, "--name", "more", "--init-from", "first", "--d-warmup", "1",
            "--channels", "8")  # the style's own architecture wins
    assert r.exit_code == 0, r.output
    cfg = json.loads((runs / "more" / "config.json").read_text())
    assert cfg["init_from"] == "first" and cfg["d_warmup"] == 1
    assert cfg["generator"]["channels"] == 4
    r = cli(*base, "--name", "x", "--init-from", "no-such-style")
    assert r.exit_code == 2 and "not found" in r.output


def test_eval_large_scores_whole_pictures_seams_and_writes_sheets(tmp_path):
    from siamgan.evaluate import evaluate_large, format_large

    large = folder(tmp_path / "large", 2, seed=3, size=(192, 320))
    paintings = folder(tmp_path / "b", 4, seed=2, size=(64, 64))
    yard = folder(tmp_path / "yard", 1, seed=4, size=(96, 160))  # one of two, half size
    s = Stylizer(torch.nn.Identity(), 16, config={"strokes": {"picture_side": 64}})
    # No flow: it lays an identity painting's texture (here, the noise) along contours.
    result = evaluate_large(s, large, paintings, TileConfig(flow=False), yard,
                            tmp_path / "sheets", tmp_path / "saved")
    assert result["photos"] == 2 and result["whole"] == 256
    for key in ("photos", "stylized"):
        assert set(result["swd"][key]) == {"level0", "level1", "level2", "mean"}
    assert result["swd"]["yardstick"] is None  # one picture cannot make a distribution
    assert result["ssim"]["stylized"] > 0.9  # the identity keeps the content
    assert set(result["scene"]) == {"stylized"}  # not the yardstick: it painted one of two
    assert result["scene"]["stylized"]["brightness"] > 0.9
    first = result["images"][0]
    assert first["pitch"] == 16 and first["seam"] > 0 and len(first["rungs"]) > 1
    assert "yardstick_ssim" in first and "yardstick_ssim" not in result["images"][1]
    with Image.open(tmp_path / "sheets" / "0.jpg") as sheet:
        assert sheet.width > 3 * 320  # input | siamgan | yardstick
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["0.png", "1.png"]
    assert "siamgan" in format_large(result)


def test_eval_cli_needs_photos_or_large(tmp_path):
    paintings = folder(tmp_path / "b", 4, seed=2, size=(64, 64))
    r = cli("eval", "--paintings", str(paintings), "--style", "vangogh")
    assert r.exit_code == 2 and "--large" in r.output
    r = cli("eval", "--paintings", str(paintings), "--style", "vangogh", "--photos",
            str(paintings), "--sheets", str(tmp_path / "s"))
    assert r.exit_code == 2 and "go with --large" in r.output
