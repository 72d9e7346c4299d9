"""A few training steps on tiny synthetic folders: files written, resume, export, ablations."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import folder
from PIL import Image

from siamgan.data import load_collection
from siamgan.models import DiscriminatorConfig, GeneratorConfig
from siamgan.runs import load_checkpoint
from siamgan.stylize import Stylizer, TileConfig
from siamgan.weights_io import list_styles, load_weights, user_styles_dir

T = importlib.import_module("siamgan.train")  # the package also exports a `train` function

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "cos_d", "g_adv", "cos_g")


@pytest.fixture(autouse=True)
def _user_home(home):
    """Every test here exports into a temporary SIAMGAN_HOME."""


def tiny(steps: int = 3, **kw) -> T.TrainConfig:
    kw = {"sample_every": 2, "checkpoint_every": 1, "generator": GeneratorConfig(4, 1), **kw}
    return T.TrainConfig(tile_size=8, batch_size=2, steps=steps, device="cpu",
                         discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2),
                         **kw)


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def fit(tmp_path: Path, cfg: T.TrainConfig, name: str = "tiny", **kw) -> Path:
    a = folder(tmp_path / "a", 3, seed=1)
    b = folder(tmp_path / "b", 3, seed=2)
    return T.train(cfg, a, b, name, tmp_path / "runs", progress=False, **kw)


def test_a_few_steps_write_the_run_folder_then_resume_continues(tmp_path, home, spy_train_steps):
    exported = fit(tmp_path, tiny(steps=3))
    run = tmp_path / "runs" / "tiny"
    for name in ("checkpoint.pt", "config.json", "stats.jsonl", "losses.png"):
        assert (run / name).is_file(), name
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    # sample_every 2 over 3 steps: step 2, and the last step.
    assert samples == ["00000002.png", "00000002_whole.png", "00000003.png", "00000003_whole.png"]
    with Image.open(run / "samples" / "00000003_whole.png") as im:
        assert im.size == (2 * 50, 40)  # the whole test image beside its stylized version
    rows = stats(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in LOSS_KEYS)
    config = json.loads((run / "config.json").read_text())
    assert config["tile_size"] == 8 and config["steps"] == 3 and config["name"] == "tiny"
    assert load_checkpoint(run)["step"] == 3
    assert exported == user_styles_dir() / "tiny.safetensors" and exported.is_file()
    assert str(home) in str(exported)

    before = rows
    calls = spy_train_steps()
    fit(tmp_path, tiny(steps=5), resume=True)
    assert calls == [3, 4]  # only the missing steps ran, from the saved step on
    rows = stats(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # continued, no duplicates
    assert rows[:3] == before
    assert all(math.isfinite(r[k]) for r in rows for k in LOSS_KEYS)
    assert load_checkpoint(run)["step"] == 5
    _, style_cfg = load_weights(user_styles_dir() / "tiny.safetensors")
    assert style_cfg["training"]["steps"] == 5


def test_resume_after_stats_past_the_checkpoint_truncates_them(tmp_path):
    """Lines logged after the last checkpoint (a crash) are replaced, not duplicated."""
    fit(tmp_path, tiny(steps=2, sample_every=100), export=False)
    run = tmp_path / "runs" / "tiny"
    assert load_checkpoint(run)["step"] == 2
    # Pretend the run died after logging step 3 but before checkpointing it.
    with open(run / "stats.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss_d": 123.0}) + "\n")
    fit(tmp_path, tiny(steps=3, sample_every=100), resume=True, export=False)
    rows = stats(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["loss_d"] != 123.0 and math.isfinite(rows[2]["loss_d"])


def test_exported_style_loads_by_name_and_stylizes_odd_sizes(tmp_path):
    fit(tmp_path, tiny(steps=2))
    assert [s["name"] for s in list_styles() if s["name"] == "tiny"] == ["tiny"]
    stylizer = Stylizer.from_style("tiny", device="cpu")
    assert stylizer.tile_size == 8
    assert stylizer.config["training"]["images_a"] == 3
    photo = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = stylizer.stylize(Image.fromarray(photo))
    assert out.size == (53, 37) and out.mode == "RGB"
    arr = np.asarray(out)
    assert not np.array_equal(arr, photo)  # a generator, not a copy
    again = np.asarray(Stylizer.from_style("tiny", device="cpu").stylize(Image.fromarray(photo)))
    np.testing.assert_array_equal(arr, again)  # loading and stylizing are deterministic
    # The paintings' palette is recorded, off by default; --palette turns it on.
    assert stylizer.config["palette"]["images"] == 3 and stylizer.palette_strength() == 0.0
    matched = stylizer.stylize_array(photo, TileConfig(palette=1.0))
    assert not np.array_equal(matched, arr)


@pytest.mark.parametrize("recipe", ["no-combo", "seed"])
def test_ablations_train_too(tmp_path, recipe):
    if recipe == "seed":
        cfg = T.TrainConfig.seed_recipe(
            tile_size=8, batch_size=2, steps=2, device="cpu", generator=GeneratorConfig(4, 1),
            discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2,
                                              spectral_norm=False, critic=False))
    else:
        cfg = tiny(steps=2, combo=False)
    fit(tmp_path, cfg, export=False)
    run = tmp_path / "runs" / "tiny"
    rows = stats(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in LOSS_KEYS)
    saved = json.loads((run / "config.json").read_text())
    assert saved["combo"] is (recipe != "no-combo")
    assert saved["recipe"] == ("seed" if recipe == "seed" else "default")
    if recipe == "seed":
        assert not {"mse_g", "critic_g", "identity"} & set(rows[0])


def test_holdout_every_leaves_files_out_of_training(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    colours = [10, 70, 130, 190]
    for i, c in enumerate(colours):
        Image.fromarray(np.full((40, 50, 3), c, np.uint8)).save(a / f"{i}.png")
    used = load_collection(a, holdout_every=2, progress=False)
    assert [int(img[0, 0, 0]) for img in used] == [10, 130]  # files 1 and 3 held out
    assert len(load_collection(a, holdout_every=0, progress=False)) == 4

    b = folder(tmp_path / "b", 3, seed=2)
    T.train(tiny(steps=1, holdout_every=2), a, b, "held", tmp_path / "runs", progress=False)
    style = Stylizer.from_style("held", device="cpu")
    assert style.config["training"]["images_a"] == 2
    assert style.config["training"]["images_b"] == 3
    assert json.loads((tmp_path / "runs" / "held" / "config.json").read_text())[
        "holdout_every"] == 2


def test_channels_last_models_train_like_contiguous_ones():
    import torch

    cfg = tiny()
    runs = []
    for layout in (torch.channels_last, torch.contiguous_format):
        m = T.build_models(cfg, torch.device("cpu"))
        for mod in (m.generator, m.discriminator, m.ema):
            mod.to(memory_format=layout)
        g = torch.Generator().manual_seed(0)
        a, b = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1 for _ in range(2))
        runs.append([T.train_step(m, a, b, cfg, step) for step in range(3)])
    assert next(T.build_models(cfg, torch.device("cpu")).generator.parameters()).is_contiguous(
        memory_format=torch.channels_last)
    for fast, plain in zip(*runs):
        assert fast.keys() == plain.keys()
        for k in fast:
            assert fast[k] == pytest.approx(plain[k], rel=1e-3, abs=1e-5), k


def test_init_from_a_style_starts_there_and_d_warmup_leaves_g_alone(tmp_path):
    import torch

    first = fit(tmp_path, tiny(steps=2), name="first")
    start = Stylizer.from_style(str(first)).generator.state_dict()
    run = tmp_path / "runs" / "second"
    second = fit(tmp_path, tiny(steps=2, init_from=str(first), d_warmup=2), name="second")
    after = Stylizer.from_style(str(second)).generator.state_dict()
    for k in start:  # two warm-up steps: D trained, G and its EMA untouched
        torch.testing.assert_close(after[k], start[k])
    assert {"loss_d", "loss_g", "g_adv"} <= set(stats(run)[-1])
    third = fit(tmp_path, tiny(steps=2, init_from=str(first)), name="third")
    moved = Stylizer.from_style(str(third)).generator.state_dict()
    assert any(not torch.equal(moved[k], start[k]) for k in start)
    with pytest.raises(ValueError, match="its generator is"):
        fit(tmp_path, tiny(steps=1, init_from=str(first), generator=GeneratorConfig(8, 1)),
            name="bad")


def test_a_noise_input_grown_on_a_style_starts_at_zero_or_at_noise_init(tmp_path):
    first = fit(tmp_path, tiny(steps=1), name="first")
    noisy = GeneratorConfig(4, 1, noise=True)
    build = lambda **kw: T.build_models(  # noqa: E731
        tiny(init_from=str(first), generator=noisy, **kw), torch.device("cpu")).generator
    plain = build().net[0].weight
    assert plain.shape[1] == 4 and not plain[:, 3].any()
    grown = build(noise_init=0.5).net[0].weight
    torch.testing.assert_close(grown[:, :3], plain[:, :3])
    spread = float(grown[:, 3].detach().std()) / float(plain[:, :3].detach().std())
    assert spread == pytest.approx(0.5, rel=0.5)
    # The run trains, samples and exports with the noise input, here laid in streaks.
    streaky = GeneratorConfig(4, 1, noise=True, streaks=True)
    done = fit(tmp_path, tiny(steps=2, init_from=str(first), generator=streaky,
                              noise_init=0.5, shift_weight=1.0, shift_crops=1), name="noisy")
    assert Stylizer.from_style(str(done)).noise and Stylizer.from_style(str(done)).streaks
    assert "shift" in stats(tmp_path / "runs" / "noisy")[-1]
    # Frozen, the noise weights stay as they started while the rest moves.
    start = build(noise_init=0.5).net[0].weight.detach().clone()
    kw = dict(init_from=str(first), generator=noisy, noise_init=0.5, ema_decay=0.0)
    for frozen in (True, False):
        done = fit(tmp_path, tiny(steps=3, noise_frozen=frozen, **kw), name=f"f{frozen}")
        end = Stylizer.from_style(str(done)).generator.net[0].weight
        assert torch.equal(end[:, 3], start[:, 3]) is frozen
        assert not torch.equal(end[:, :3], start[:, :3])


def test_zoomed_photo_crops_are_enlarged_and_flatter():
    from siamgan.data import CropConfig, CropSampler

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    plain = CropSampler(images, CropConfig(64, 1.0, flip=False), 7).sample(64)
    zoomed = CropSampler(images, CropConfig(64, 1.0, flip=False, max_zoom=8.0), 7).sample(64)
    steps = lambda x: x.diff(dim=-1).abs().mean(dim=(1, 2, 3))  # noqa: E731
    # Noise enlarged by 2–8× is smooth: about half the crops have much smaller steps.
    assert (steps(zoomed) < 0.5 * steps(plain).median()).float().mean() > 0.3
    assert (steps(plain) < 0.5 * steps(plain).median()).sum() == 0


def plain_and_altered_crops(images, share: str, **extra):
    """32 crops drawn plainly and 32 with every crop altered (``share`` 1, ``extra``), from
    the same seed; with ``share`` 0 the crops must be the plain ones exactly (no draw when
    off: earlier runs' crops are unchanged)."""
    from siamgan.data import CropConfig, CropSampler

    def crops(**cfg):
        return CropSampler(images, CropConfig(32, 1.0, max_zoom=4.0, **cfg), 3).sample(32)

    plain = crops()
    assert torch.equal(plain, crops(**{share: 0.0}))
    return plain, crops(**{share: 1.0}, **extra)


def test_darkened_crops_keep_the_stream_and_are_scaled_down():
    from siamgan.data import CropConfig

    rng = np.random.default_rng(0)
    images = [rng.integers(64, 256, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    plain, dark = plain_and_altered_crops(images, "dark_share", min_exposure=0.25)
    level = lambda x: (x.mean(dim=(1, 2, 3)) + 1) / 2  # noqa: E731
    # Every crop darkened by 1–4×: its mean level drops below the plain crops' lowest.
    assert (level(dark) < level(plain).min()).float().mean() > 0.5
    assert (level(dark) >= 0.25 * 64 / 255 - 0.01).all()  # never below the min exposure
    with pytest.raises(ValueError):
        CropConfig(dark_share=1.5)
    with pytest.raises(ValueError):
        CropConfig(min_exposure=0.0)


def test_vivid_crops_keep_the_stream_grey_and_brightness_and_gain_colour():
    from siamgan.data import CropConfig, saturate

    rng = np.random.default_rng(1)
    images = [rng.integers(64, 192, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    plain, vivid = plain_and_altered_crops(images, "vivid_share", max_saturation=3.0)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = lambda x: (x * luma).sum(1, keepdim=True)  # noqa: E731
    colour = lambda x: (x - grey(x)).abs().mean(dim=(1, 2, 3))  # noqa: E731
    # (Each vivid crop draws one more number, so the crops differ from there on.)
    assert colour(vivid).mean() > 1.3 * colour(plain).mean()
    assert abs(grey(vivid).mean() - grey(plain).mean()) < 0.05
    img = images[0]
    assert np.array_equal(saturate(img, 1.0), img)
    mild = rng.integers(110, 147, (16, 16, 3), dtype=np.uint8)  # nothing clips at 1.7×
    np.testing.assert_allclose(saturate(mild, 1.7).astype(float) @ [0.299, 0.587, 0.114],
                               mild.astype(float) @ [0.299, 0.587, 0.114], atol=1.0)
    flat = np.full((4, 4, 3), 77, np.uint8)
    assert np.array_equal(saturate(flat, 2.0), flat)  # grey stays grey
    px = np.array([[[100, 120, 140]]], np.uint8)
    g = px.astype(float) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(saturate(px, 2.0).astype(float), g + 2 * (px - g), atol=0.6)
    for bad in ({"vivid_share": 1.5}, {"max_saturation": 0.5}):
        with pytest.raises(ValueError):
            CropConfig(**bad)
