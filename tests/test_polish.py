"""Seam polish: its loss, a few steps on tiny folders, export, Ctrl-C and resume."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from helpers import folder
from typer.testing import CliRunner

from siamgan import losses
from siamgan.cli import app
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.polish import PolishConfig, polish, polish_loss
from siamgan.runs import load_checkpoint
from siamgan.tiling import combo
from siamgan.weights_io import load_weights, save_weights

TILE = 16


@pytest.fixture(autouse=True)
def _user_home(home):
    """Every test here exports into a temporary SIAMGAN_HOME."""


def tiny_style(tmp_path):
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(4, 1))
    cfg = {"kind": "style", "name": "tiny", "tile_size": TILE, "description": "tiny",
           "generator": {"channels": 4, "res_blocks": 1, "norm": "pixel"},
           "palette": {"lab_mean": [50, 0, 0], "lab_std": [20, 10, 10], "strength": 0.5}}
    return save_weights(tmp_path / "tiny.safetensors", gen.state_dict(), cfg), gen


def config(style, **kw) -> PolishConfig:
    return PolishConfig(style=str(style), steps=kw.pop("steps", 4), batch_size=2, crop_tiles=2,
                        max_zoom=4.0, sample_every=2, checkpoint_every=2, device="cpu", **kw)


def test_loss_starts_at_the_seam_term_alone_and_trains_only_the_student(tmp_path):
    path, gen = tiny_style(tmp_path)
    teacher, student = PatchGenerator(gen.config), PatchGenerator(gen.config)
    teacher.load_state_dict(gen.state_dict())
    student.load_state_dict(gen.state_dict())
    teacher.requires_grad_(False)
    crops = torch.rand(2, 3, 2 * TILE, 2 * TILE) * 2 - 1
    loss, stats = polish_loss(student, teacher, crops, TILE, config(path))
    assert stats["anchor"] == 0.0  # the student starts as the teacher
    expected = losses.seam_contrast(combo(gen, crops, TILE), TILE).item()
    assert stats["seam"] == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    moved = {k: v + 0.1 for k, v in gen.state_dict().items()}
    student.load_state_dict(moved)
    _, stats = polish_loss(student, teacher, crops, TILE, config(path, seam_weight=0.0))
    assert stats["anchor"] > 0 and stats["loss"] == pytest.approx(stats["anchor"])
    assert "level" not in stats  # off: not computed
    # The level term looks at the tiled output's difference from the whole-crop teacher.
    _, stats = polish_loss(student, teacher, crops, TILE, config(path, level_weight=2.0))
    with torch.no_grad():
        level = losses.grid_level(combo(student, crops, TILE) - teacher(crops), TILE).item()
    assert stats["level"] == pytest.approx(level, rel=1e-5) and level > 0
    assert stats["loss"] == pytest.approx(stats["anchor"] + stats["seam"] + 2 * level, rel=1e-5)
    _, stats = polish_loss(student, teacher, crops, TILE,
                           config(path, level_weight=2.0, level_per_image=True))
    with torch.no_grad():
        level = losses.grid_level(combo(student, crops, TILE) - teacher(crops), TILE,
                                  per_image=True).item()
    assert stats["level"] == pytest.approx(level, rel=1e-5)


def test_a_few_steps_write_the_run_and_export_a_style(tmp_path):
    style, gen = tiny_style(tmp_path)
    photos = folder(tmp_path / "photos", 4, seed=1)
    out = polish(config(style), photos, "shiny", tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "shiny"
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["seam"] >= 0 and r["anchor"] >= 0 for r in rows)
    assert (run / "samples" / "00000004.png").is_file() and (run / "losses.png").is_file()
    tensors, cfg = load_weights(out)
    assert cfg["polish"][-1]["steps"] == 4 and cfg["polish"][-1]["images"] == 4
    again = polish(config(out, steps=1), photos, "shinier", tmp_path / "runs", progress=False)
    assert [p["steps"] for p in load_weights(again)[1]["polish"]] == [4, 1]
    assert cfg["palette"]["strength"] == 0.5  # the source style's palette travels with it
    assert cfg["name"] == "shiny" and "seam-polished" in cfg["description"]
    assert any(not torch.equal(tensors[k], v) for k, v in gen.state_dict().items())


def test_ctrl_c_then_resume_repeats_the_uninterrupted_run(tmp_path, monkeypatch):
    style, _ = tiny_style(tmp_path)
    photos = folder(tmp_path / "photos", 4, seed=1)
    # Every option that draws or weighs something on: darkened crops, level per crop.
    extra = {"dark_share": 0.5, "level_weight": 1.0, "level_per_image": True}
    reference = polish(config(style, **extra), photos, "ref", tmp_path / "runs", export=False,
                       progress=False)
    P = __import__("siamgan.polish", fromlist=["polish_loss"])
    real, calls = P.polish_loss, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # finishes the step, checkpoints, stops
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "polish_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        polish(config(style, **extra), photos, "cut", tmp_path / "runs", export=False,
               progress=False)
    assert load_checkpoint(tmp_path / "runs" / "cut")["step"] == 3
    monkeypatch.setattr(P, "polish_loss", real)
    resumed = polish(config(style, **extra), photos, "cut", tmp_path / "runs", resume=True,
                     export=False, progress=False)
    a, b = load_weights(reference)[0], load_weights(resumed)[0]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_cli_polish_and_its_usage_errors(tmp_path, home):
    style, _ = tiny_style(tmp_path)
    photos = folder(tmp_path / "photos", 3, seed=1)
    base = ["polish", "--photos", str(photos), "--style", str(style), "--runs-dir",
            str(tmp_path / "runs"), "--device", "cpu", "--batch", "1", "--crop-tiles", "2"]
    r = CliRunner().invoke(app, [*base, "--name", "p", "--steps", "1", "--level", "2",
                                 "--level-per-image", "--dark", "0.5"])
    assert r.exit_code == 0, r.output
    run_cfg = json.loads((tmp_path / "runs" / "p" / "config.json").read_text())
    assert (run_cfg["dark_share"], run_cfg["level_weight"], run_cfg["level_per_image"]) == \
        (0.5, 2.0, True)
    assert (home / "styles" / "p.safetensors").is_file()
    r = CliRunner().invoke(app, [*base, "--name", "q", "--crop-tiles", "1"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, [*base, "--name", "q", "--dark", "2"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, [*base, "--name", "q", "--style", "no-such-style"])
    assert r.exit_code == 2 and "not found" in r.output
