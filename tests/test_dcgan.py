"""Fast tests of the DCGAN baseline: tiny seeded models on the CPU, synthetic faces."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.dcgan import losses as L
from siamgan.dcgan import sample as S
from siamgan.dcgan import train as T
from siamgan.dcgan.models import DCGANConfig, Discriminator, Generator
from siamgan.runs import load_checkpoint
from siamgan.weights_io import WeightsError, load_weights

TINY = dict(ngf=8, ndf=8)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMGAN_HOME", str(tmp_path / "home"))


def _faces(folder: Path, n: int = 8, seed: int = 0) -> Path:
    """``n`` synthetic 'faces' (a coloured disc on a background), not square, as PNG/JPEG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:72, 0:80]
    for i in range(n):
        img = np.empty((72, 80, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        cy, cx, r = rng.integers(25, 45), rng.integers(25, 55), rng.integers(10, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return folder


def _cfg(**kw) -> T.DCGANTrainConfig:
    base = dict(epochs=1, batch_size=4, device="cpu", n_samples=4,
                model=DCGANConfig(64, **TINY))
    return T.DCGANTrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("size,arch,loss", [(64, "dcgan", "bce"), (96, "dcgan", "bce"),
                                            (64, "mlp", "bce"), (64, "dcgan", "wgan-gp"),
                                            (96, "mlp", "wgan-gp")])
def test_shapes(size, arch, loss):
    cfg = DCGANConfig(size, nz=16, arch=arch, loss=loss, **TINY)
    torch.manual_seed(0)
    img = Generator(cfg)(torch.randn(3, 16))
    assert img.shape == (3, 3, size, size)
    assert img.abs().max() <= 1
    assert Discriminator(cfg)(img).shape == (3,)


def test_wgan_gp_discriminator_has_no_batch_norm():
    cfg = DCGANConfig(loss="wgan-gp", **TINY)
    assert cfg.d_norm == "layer"
    kinds = {type(m).__name__ for m in Discriminator(cfg).modules()}
    assert "BatchNorm2d" not in kinds and "GroupNorm" in kinds
    assert DCGANConfig(**TINY).d_norm == "batch"
    with pytest.raises(ValueError, match="WGAN-GP"):
        DCGANConfig(loss="wgan-gp", d_norm="batch")
    with pytest.raises(ValueError):
        DCGANConfig(image_size=128)


def test_generator_dropout_layers():
    gen = Generator(DCGANConfig(g_dropout=0.3, **TINY))
    assert sum(isinstance(m, torch.nn.Dropout) for m in gen.modules()) == 3


# --------------------------------------------------------------------------- losses


def test_bce_d_loss_with_one_sided_smoothing_matches_hand_value():
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    rt, ft = L.real_fake_targets(1, smoothing=0.1)
    assert rt.item() == pytest.approx(0.9) and ft.item() == 0.0
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = -(0.9 * math.log(sig(2)) + 0.1 * math.log(1 - sig(2))) - math.log(1 - sig(-1))
    assert L.bce_d_loss(real, fake, rt, ft).item() == pytest.approx(expected, rel=1e-6)
    assert L.bce_g_loss(torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_label_noise_flips_targets():
    g = torch.Generator().manual_seed(0)
    rt, ft = L.real_fake_targets(1000, smoothing=0.2, flip_prob=1.0, generator=g)
    assert torch.all(rt == 0) and torch.allclose(ft, torch.full((1000,), 0.8))
    rt, _ = L.real_fake_targets(10000, flip_prob=0.25, generator=g)
    assert (rt == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)


def test_gradient_penalty_of_linear_critic():
    # D(x) = Σ w·x has gradient w everywhere: GP = (‖w‖ − 1)² = (3 − 1)² = 4.
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[2.0, 1.0, 2.0, 0.0]]))
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = L.gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-5)
    gp.backward()  # differentiable w.r.t. the critic's weights
    assert critic[1].weight.grad is not None
    assert L.wgan_d_loss(torch.tensor([3.0, 1.0]), torch.tensor([0.5])).item() == -1.5
    assert L.wgan_g_loss(torch.tensor([0.5, 1.5])).item() == -1.0


def test_lr_scale_staircase_and_smooth():
    cfg = _cfg(epochs=4, lr_decay_every=2, lr_decay_factor=0.5)
    assert [T.lr_scale(cfg, s, 10) for s in (0, 19, 20, 39)] == [1, 1, 0.5, 0.5]
    cfg = _cfg(epochs=2, smooth=True, smooth_end=0.1)
    assert T.lr_scale(cfg, 10, 10) == pytest.approx(0.55)


def test_health_monitor_warns_on_collapse_and_divergence():
    mon = T.HealthMonitor(_cfg(warn_patience=3, label_smoothing=0.0), start=0)
    with pytest.warns(T.TrainingWarning) as record:
        for step in range(1, 5):
            mon.update(step, {"diversity": 0.05, "loss_d": 0.01})
    assert len(record) == 2  # once per episode, not once per step
    assert "mode collapse" in str(record[0].message) + str(record[1].message)


# --------------------------------------------------------------------------- training


def test_train_smoke_on_folder(tmp_path):
    data = _faces(tmp_path / "faces")
    out = T.train_dcgan(_cfg(), data, "tiny", tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "tiny"
    assert out == run / "tiny.safetensors" and out.is_file()
    rows = [json.loads(ln) for ln in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # 8 images, batch 4
    assert {"loss_d", "loss_g", "d_x", "d_gz", "diversity"} <= rows[0].keys()
    for f in ("samples/epoch_0001.png", "reals.png", "losses.png", "config.json"):
        assert (run / f).is_file(), f
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["kind"] == "dcgan" and cfg["training"]["epochs"] == 1
    assert cfg["training"]["images"] == 8 and cfg["model"]["ngf"] == 8


def test_max_steps_stops_mid_run_and_exports(tmp_path):
    data = _faces(tmp_path / "faces")
    out = T.train_dcgan(_cfg(epochs=3, max_steps=3), data, "stop", tmp_path / "runs",
                        progress=False)
    run = tmp_path / "runs" / "stop"
    rows = [json.loads(ln) for ln in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # 2 steps per epoch: stopped inside epoch 2
    assert out.is_file() and load_checkpoint(run)["step"] == 3
    T.train_dcgan(_cfg(epochs=3), data, "stop", tmp_path / "runs", resume=True, progress=False)
    T.train_dcgan(_cfg(epochs=3), data, "full", tmp_path / "runs", progress=False)
    resumed, full = ([json.loads(ln) for ln in (tmp_path / "runs" / n / "stats.jsonl")
                      .read_text().splitlines()] for n in ("stop", "full"))
    assert [r["step"] for r in resumed] == list(range(1, 7))
    for a, b in zip(resumed, full):  # stopping early then resuming changes nothing
        assert a["loss_d"] == pytest.approx(b["loss_d"], rel=1e-5), a["step"]


def test_train_smoke_on_tar_gz_with_wgan_gp(tmp_path):
    faces = _faces(tmp_path / "faces")
    archive = tmp_path / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(faces, arcname="images")
    cfg = _cfg(model=DCGANConfig(64, loss="wgan-gp", **TINY), d_steps=2)
    T.train_dcgan(cfg, archive, "tar", tmp_path / "runs", progress=False)
    rows = (tmp_path / "runs" / "tar" / "stats.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "gp" in json.loads(rows[0])  # 8 images / (4 × 2 D steps)


def test_load_faces_crops_to_square(tmp_path):
    faces = T.load_faces(_faces(tmp_path / "f", 3), 64, progress=False)
    assert faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path, monkeypatch):
    data = _faces(tmp_path / "faces", 16)  # 4 steps per epoch
    runs = tmp_path / "runs"
    T.train_dcgan(_cfg(epochs=2), data, "straight", runs, progress=False)

    real_step, calls = T.train_step, {"n": 0}

    def interrupt_at_6(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of epoch 2
            raise KeyboardInterrupt
        return real_step(*args, **kw)

    monkeypatch.setattr(T, "train_step", interrupt_at_6)
    with pytest.raises(KeyboardInterrupt):
        T.train_dcgan(_cfg(epochs=2), data, "resumed", runs, progress=False)
    state = load_checkpoint(runs / "resumed")
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 6, 2)
    assert (runs / "resumed" / "samples" / "step_00000006.png").is_file()
    monkeypatch.setattr(T, "train_step", real_step)
    T.train_dcgan(_cfg(epochs=2), data, "resumed", runs, resume=True, progress=False)
    T.train_dcgan(_cfg(epochs=3), data, "resumed", runs, resume=True, progress=False)

    assert load_checkpoint(runs / "resumed")["epoch"] == 3
    a, _ = load_weights(runs / "straight" / "straight.safetensors")
    b = load_checkpoint(runs / "resumed")
    assert b["step"] == 12
    steps = [json.loads(x)["step"] for x in (runs / "resumed" / "stats.jsonl").open()]
    assert steps == list(range(1, 13))
    # Epochs 1–2 of the resumed run equal the uninterrupted run, bit for bit.
    rows_a = (runs / "straight" / "stats.jsonl").read_text().splitlines()
    rows_b = (runs / "resumed" / "stats.jsonl").read_text().splitlines()[:8]
    assert rows_a == rows_b
    assert a.keys() == b["generator"].keys()


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        T.train_dcgan(_cfg(), _faces(tmp_path / "f"), "none", tmp_path / "runs", resume=True,
                      progress=False)


# --------------------------------------------------------------------------- sampling


@pytest.fixture
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    return T.train_dcgan(_cfg(), _faces(tmp / "faces"), "g", tmp / "runs", progress=False)


def test_exported_weights_load_through_release_loader(trained):
    gen = S.load_generator(trained)
    tensors, config = load_weights(trained)
    assert config["kind"] == "dcgan" and gen.config == DCGANConfig(**config["model"])
    for k, v in gen.state_dict().items():
        assert torch.equal(v, tensors[k]), k
    assert not gen.training


def test_sampling_with_fixed_seed_is_deterministic(trained):
    gen = S.load_generator(trained)
    a, b = S.sample_faces(gen, 6, seed=3), S.sample_faces(S.load_generator(trained), 6, seed=3)
    assert a.shape == (6, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, S.sample_faces(gen, 6, seed=4))
    # Eval mode: a face does not depend on the others in its batch.
    assert np.array_equal(S.sample_faces(gen, 2, seed=3), a[:2])
    walk = S.interpolate(gen, 3, 4, steps=5)
    assert np.array_equal(walk[0], a[0]) and np.array_equal(walk[-1], S.sample_faces(gen, 1, 4)[0])


def test_loader_errors(tmp_path, monkeypatch, trained):
    monkeypatch.setattr(S, "shipped_weights_dir", lambda: tmp_path / "nothing")
    with pytest.raises(WeightsError, match="no shipped DCGAN weights"):
        S.load_generator()
    cfg = json.loads(trained.with_suffix(".json").read_text())
    cfg["kind"] = "style"
    trained.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="not a dcgan"):
        S.load_generator(trained)


# --------------------------------------------------------------------------- CLI


def test_cli_train_sample_eval(tmp_path, monkeypatch):
    runner = CliRunner()
    data = _faces(tmp_path / "faces", 12)
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["dcgan", "train", "--data", str(data), "--name", "cli",
                              "--epochs", "1", "--batch", "4", "--ngf", "8", "--ndf", "8",
                              "--runs-dir", str(runs), "--device", "cpu", "--no-progress",
                              "--label-noise", "0.05", "--instance-noise", "0.1", "--smooth"])
    assert res.exit_code == 0, res.output
    weights = runs / "cli" / "cli.safetensors"
    assert weights.is_file()

    sheet = tmp_path / "faces.png"
    res = runner.invoke(app, ["dcgan", "sample", "--weights", str(weights), "-n", "6",
                              "--seed", "1", "-o", str(sheet)])
    assert res.exit_code == 0, res.output
    assert Image.open(sheet).size == (2 + 3 * 66, 2 + 2 * 66)  # 6 faces → 3 columns
    res = runner.invoke(app, ["dcgan", "sample", "--weights", str(weights), "-n", "3",
                              "--out-dir", str(tmp_path / "single")])
    assert res.exit_code == 0 and len(list((tmp_path / "single").glob("*.png"))) == 3
    gif = tmp_path / "walk.gif"
    res = runner.invoke(app, ["dcgan", "sample", "--weights", str(weights), "--interpolate",
                              "--frames", "4", "-o", str(gif)])
    assert res.exit_code == 0, res.output
    assert Image.open(gif).n_frames == 6  # forth and back

    report = tmp_path / "eval.json"
    res = runner.invoke(app, ["dcgan", "eval", "--weights", str(weights), "--data", str(data),
                              "-n", "4", "--real", "8", "--pairs", "3", "--json", str(report),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    result = json.loads(report.read_text())
    assert result["swd_floor"] > 0 and result["swd_ratio"] > 0
    assert 0 <= result["ms_ssim_generated"] <= 1 and "SWD ratio" in res.output

    monkeypatch.setattr(S, "shipped_weights_dir", lambda: tmp_path / "nothing")
    res = runner.invoke(app, ["dcgan", "sample", "-o", str(sheet)])
    assert res.exit_code == 2 and "no shipped DCGAN weights" in res.output


def test_cli_rejects_bad_options(tmp_path):
    res = CliRunner().invoke(app, ["dcgan", "train", "--data", str(tmp_path), "--name", "x",
                                   "--loss", "wgan-gp", "--d-norm", "batch", "--dry-run"])
    assert res.exit_code == 2 and "WGAN-GP" in res.output
    res = CliRunner().invoke(app, ["dcgan", "train", "--data", str(tmp_path), "--name", "x",
                                   "--lr-d", "5e-5", "--dry-run"])
    assert res.exit_code == 0 and json.loads(res.output)["lr_d"] == 5e-5
