"""Training survives bad data, divergence, kills during saves, and resumes exactly."""

from __future__ import annotations

import importlib
import io
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.data import DataError
from siamgan.models import DiscriminatorConfig, GeneratorConfig
from siamgan.runs import load_checkpoint
from siamgan.weights_io import load_weights

T = importlib.import_module("siamgan.train")  # the package exports a `train` function too


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the training loop may catch it."""


def images(folder: Path, n: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def config(steps: int = 6, **kw) -> T.TrainConfig:
    return T.TrainConfig(tile_size=16, batch_size=2, steps=steps,
                         generator=GeneratorConfig(8, 1),
                         discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=3),
                         device="cpu", checkpoint_every=3, sample_every=1000, **kw)


def fit(tmp_path: Path, cfg: T.TrainConfig | None = None, name: str = "run",
        resume: bool = False, a: Path | None = None) -> Path:
    a = a or images(tmp_path / "a", 3, seed=1)
    b = images(tmp_path / "b", 3, seed=2)
    return T.train(cfg or config(), a, b, name, tmp_path / "runs", resume=resume,
                   export=False, progress=False)


def losses(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if not k.endswith("_s")} for r in rows}


@pytest.fixture()
def no_steps(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a training step ran")
    monkeypatch.setattr(T, "train_step", forbidden)


def junk(folder: Path) -> None:
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"junk")


@pytest.mark.parametrize("make, message", [
    (Path.mkdir, "found 0 readable"),
    (lambda d: images(d, 1), "found 1 readable"),
    (junk, "found 0 readable"),
])
@pytest.mark.filterwarnings("ignore:.*unreadable")
def test_unusable_folder_fails_before_the_first_step(tmp_path, no_steps, make, message):
    make(tmp_path / "bad")
    with pytest.raises(DataError, match=message):
        fit(tmp_path, a=tmp_path / "bad")
    assert not (tmp_path / "runs" / "run" / "checkpoint.pt").exists()


def test_a_few_bad_files_are_skipped_and_counted(tmp_path):
    a = images(tmp_path / "a", 3, seed=1)
    (a / "broken.png").write_bytes(b"\x89PNG broken")
    (a / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable file"):
        fit(tmp_path, config(steps=1), a=a)


def test_nan_stops_with_step_number_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real, calls = T.train_step, []

    def diverging(*args, **kwargs):
        stats = real(*args, **kwargs)
        calls.append(1)
        return {**stats, "loss_g": float("nan")} if len(calls) == 5 else stats

    monkeypatch.setattr(T, "train_step", diverging)
    with pytest.raises(T.TrainingDiverged, match="at step 5"):
        fit(tmp_path)
    run = tmp_path / "runs" / "run"
    assert load_checkpoint(run)["step"] == 3
    tensors, cfg = load_weights(run / "run.safetensors")  # finite, from step 3
    assert cfg["training"]["steps"] == 3


def test_cli_train_exits_non_zero_on_nan(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMGAN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(T, "train_step", lambda *a, **k: {"loss_d": float("inf")})
    a, b = images(tmp_path / "a", 2, seed=1), images(tmp_path / "b", 2, seed=2)
    r = CliRunner().invoke(app, ["train", "--a", str(a), "--b", str(b), "--name", "x",
                                 "--steps", "3", "--tile", "16", "--batch", "2",
                                 "--channels", "4", "--res-blocks", "0", "--device", "cpu",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 1 and "non-finite loss at step 1" in r.output


def test_kill_during_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    real_save, saves = torch.save, []

    def dying_save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the step-6 checkpoint: half written, then killed
            buf = io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise Killed
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(Killed):
        fit(tmp_path)
    run = tmp_path / "runs" / "run"
    assert load_checkpoint(run)["step"] == 3
    assert load_weights(run / "run.safetensors")[1]["training"]["steps"] == 3


def interrupt_then_resume(tmp_path: Path, monkeypatch, interrupt,
                          cfg: T.TrainConfig | None = None) -> None:
    """Train 6 steps, interrupted by ``interrupt()`` during step 5, then resume;
    every step after the checkpoint must repeat the uninterrupted run's losses."""
    fit(tmp_path / "ref", cfg)
    reference = losses(tmp_path / "ref" / "runs" / "run")
    real, calls = T.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # its crops are drawn already: a typical moment to be hit
            interrupt()
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_step", interrupted)
    with pytest.raises((Killed, KeyboardInterrupt)):
        fit(tmp_path, cfg)
    run = tmp_path / "runs" / "run"
    saved = load_checkpoint(run)["step"]
    assert saved >= 3
    monkeypatch.setattr(T, "train_step", real)
    fit(tmp_path, cfg, resume=True)
    resumed = losses(run)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in range(saved + 1, 7):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-5), step


def test_kill_then_resume_reproduces_the_uninterrupted_losses(tmp_path, monkeypatch):
    def kill():
        raise Killed

    interrupt_then_resume(tmp_path, monkeypatch, kill)


def test_ctrl_c_then_resume_reproduces_the_uninterrupted_losses(tmp_path, monkeypatch):
    interrupt_then_resume(tmp_path, monkeypatch, lambda: signal.raise_signal(signal.SIGINT))


def test_kill_then_resume_with_the_colour_term_reproduces_the_losses(tmp_path, monkeypatch):
    def kill():
        raise Killed

    # The paintings' colour moments are computed again on resume: the same target.
    interrupt_then_resume(tmp_path, monkeypatch, kill, config(colour_weight=1.0))
    assert "colour" in losses(tmp_path / "runs" / "run")[6]


def test_resume_can_change_loss_weights_and_rates_and_logs_it(tmp_path):
    run = tmp_path / "runs" / "run"
    fit(tmp_path, config(steps=3))
    T.train(config(steps=5), tmp_path / "a", tmp_path / "b", "run", tmp_path / "runs",
            resume=True, export=False, progress=False,
            changes={"seam_weight": 2.0, "lr_g": 5e-5})
    stats = losses(run)
    assert "seam" not in stats[3] and "seam" in stats[4] and "seam" in stats[5]
    saved = json.loads((run / "config.json").read_text())
    assert saved["seam_weight"] == 2.0 and saved["lr_g"] == 5e-5
    assert saved["changes"] == [{"step": 3, "seam_weight": [0.0, 2.0], "lr_g": [1e-4, 5e-5]}]
    state = load_checkpoint(run)
    assert state["opt_g"]["param_groups"][0]["lr"] == 5e-5
    assert state["opt_d"]["param_groups"][0]["lr"] == 1e-4
    # A later plain resume keeps both the new settings and the log.
    T.train(config(steps=6), tmp_path / "a", tmp_path / "b", "run", tmp_path / "runs",
            resume=True, export=False, progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["seam_weight"] == 2.0 and len(saved["changes"]) == 1
    assert "seam" in losses(run)[6]


def test_resume_refuses_to_change_the_architecture(tmp_path):
    fit(tmp_path, config(steps=3))
    with pytest.raises(ValueError, match="tile_size"):
        T.train(config(steps=5), tmp_path / "a", tmp_path / "b", "run", tmp_path / "runs",
                resume=True, export=False, progress=False, changes={"tile_size": 32})
