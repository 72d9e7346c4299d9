"""Seam refinement: the mask, the loss, and a tiny run that makes tiles agree with the
untiled generator, through the library and the CLI (with --resume)."""

from __future__ import annotations

import json

import torch
from helpers import folder
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.refine import RefineConfig, border_mask, refine, refine_loss
from siamgan.stylize import load_style
from siamgan.weights_io import save_weights

TILE = 16


def tiny_style(home, name: str = "tiny") -> str:
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(channels=4, res_blocks=1))
    save_weights(home / "styles" / f"{name}.safetensors", gen.state_dict(),
                 {"kind": "style", "name": name, "tile_size": TILE,
                  "generator": {"channels": 4, "res_blocks": 1, "norm": "pixel"}})
    return name


def test_border_mask_marks_pixels_near_every_tile_edge():
    mask = border_mask(8, 4, 1)
    # Along one axis, positions 0, 3, 4, 7 touch a tile edge; 1, 2, 5, 6 do not.
    interior = torch.tensor([1, 2, 5, 6])
    assert not mask[interior][:, interior].any()
    assert mask.sum() == 64 - 16
    assert border_mask(8, 4, 0).sum() == 0


def test_loss_is_zero_for_a_pixelwise_generator_and_positive_at_borders_otherwise():
    crops = torch.rand(2, 3, 2 * TILE + 8, 2 * TILE + 8) * 2 - 1
    mask = border_mask(2 * TILE, TILE, 4)
    pointwise = torch.nn.Conv2d(3, 3, 1)  # no spatial context: tiling changes nothing
    loss, stats = refine_loss(pointwise, pointwise, crops, TILE, 4, mask)
    assert loss.item() < 1e-6
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(channels=4, res_blocks=1))
    loss, stats = refine_loss(gen, gen, crops, TILE, 4, mask)
    assert stats["border_l1"] > stats["interior_l1"] > 0


def test_refining_reduces_the_border_error(tmp_path, home):
    style = tiny_style(home)
    photos = folder(tmp_path / "photos", 4, seed=3, size=(60, 70))
    cfg = RefineConfig(style=style, steps=40, batch_size=4, lr=1e-3, context=8,
                       min_crop_scale=1.0, max_crop_scale=1.0, sample_every=40,
                       checkpoint_every=40, ema_decay=0.0, device="cpu")
    out = refine(cfg, photos, "tiny-r", tmp_path / "runs", progress=False)
    assert out == home / "styles" / "tiny-r.safetensors"

    teacher, _, _ = load_style(style)
    refined, config, _ = load_style("tiny-r")
    assert config["refine"]["steps"] == 40 and config["tile_size"] == TILE
    torch.manual_seed(1)
    crops = torch.rand(8, 3, 2 * TILE + 16, 2 * TILE + 16) * 2 - 1
    mask = border_mask(2 * TILE, TILE, cfg.border)
    with torch.no_grad():
        _, before = refine_loss(teacher, teacher, crops, TILE, 8, mask)
        _, after = refine_loss(refined, teacher, crops, TILE, 8, mask)
    # A 4-channel generator on noise levels off near 0.78×; the untouched teacher is 1×.
    assert after["border_l1"] < 0.85 * before["border_l1"]
    run = tmp_path / "runs" / "tiny-r"
    assert (run / "losses.png").is_file() and (run / "samples" / "00000040.png").is_file()


def test_cli_refines_and_resumes(tmp_path, home):
    style = tiny_style(home)
    photos = folder(tmp_path / "photos", 3, seed=4, size=(50, 50))
    args = ["refine-seams", "--photos", str(photos), "--name", "r", "--style", style,
            "--batch", "2", "--context", "4", "--runs-dir", str(tmp_path / "runs"),
            "--sample-every", "1", "--checkpoint-every", "1", "--device", "cpu"]
    r = CliRunner().invoke(app, [*args, "--steps", "2"])
    assert r.exit_code == 0, r.output
    assert "exported" in r.output
    r = CliRunner().invoke(app, [*args, "--steps", "3", "--resume"])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "runs" / "r" / "stats.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in rows] == [1, 2, 3]
    assert CliRunner().invoke(app, [*args, "--context", "6"]).exit_code == 2
    assert CliRunner().invoke(app, [*args, "--style", "nope"]).exit_code == 2
