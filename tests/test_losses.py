"""Loss terms against hand-computed values, and gradients reaching G from each of its terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siamgan import losses
from siamgan.models import DiscriminatorConfig, GeneratorConfig
from siamgan.train import TrainConfig, _shift_term, build_models, train_step, translate


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------- values


def test_squared_norm_is_mean_of_squared_lengths():
    assert losses.squared_norm(t([3.0, 4.0], [1.0, 0.0])).item() == pytest.approx((25 + 1) / 2)
    assert losses.squared_norm(torch.zeros(4, 8)).item() == 0.0


@pytest.mark.parametrize("length", [1.0, 1.5, 2.0, 3.0, 10.0])
def test_margin_loss_is_zero_at_and_beyond_the_margin(length):
    vec = t([length * 0.6, length * 0.8])  # ‖v‖ = length
    assert losses.margin_loss(vec, margin=1.0).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("length", [0.0, 0.25, 0.5, 0.9])
def test_margin_loss_inside_the_margin_is_squared_shortfall(length):
    vec = t([0.0, length, 0.0])
    assert losses.margin_loss(vec, margin=1.0).item() == pytest.approx((1 - length) ** 2)


def test_margin_loss_averages_over_the_batch():
    vec = t([3.0, 4.0], [1.0, 0.0], [0.0, 0.0])  # lengths 5, 1, 0 against m = 2
    assert losses.margin_loss(vec, margin=2.0).item() == pytest.approx((0 + 1 + 4) / 3)


def test_pair_vectors_subtract_the_previous_sample():
    vec = t([1.0, 2.0], [4.0, 6.0], [0.0, 1.0])
    expected = t([1.0 - 0.0, 2.0 - 1.0], [4.0 - 1.0, 6.0 - 2.0], [0.0 - 4.0, 1.0 - 6.0])
    torch.testing.assert_close(losses.pair_vectors(vec), expected)


VA = t([1.0, 0.0, 2.0], [0.0, 3.0, -1.0], [2.0, 1.0, 1.0], [-1.0, 0.5, 0.0])


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_transformation_cosine_zero_for_parallel_vectors(scale):
    # Scaling and shifting every latent keeps each pair vector's direction.
    vab = scale * VA + t([5.0, -2.0, 7.0])
    assert losses.transformation_cosine(VA, vab).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_transformation_cosine_two_for_opposite_vectors(scale):
    vab = -scale * VA + t([1.0, 1.0, 1.0])
    assert losses.transformation_cosine(VA, vab).item() == pytest.approx(2.0, abs=1e-6)


def test_transformation_cosine_one_for_orthogonal_vectors():
    va = t([0.0, 0.0], [1.0, 0.0])  # pair vectors ±(1, 0)
    vab = t([0.0, 0.0], [0.0, 2.0])  # pair vectors ±(0, 2)
    assert losses.transformation_cosine(va, vab).item() == pytest.approx(1.0, abs=1e-6)


def test_transformation_cosine_hand_value():
    va = t([0.0, 0.0], [1.0, 0.0])  # pair vectors (-1, 0), (1, 0)
    vab = t([0.0, 0.0], [1.0, 1.0])  # pair vectors (-1, -1), (1, 1): 45°
    assert losses.transformation_cosine(va, vab).item() == pytest.approx(1 - math.sqrt(0.5))


def test_transformation_mse_hand_value():
    va = t([0.0, 0.0], [1.0, 2.0])  # pair vectors (-1, -2), (1, 2)
    vab = t([0.0, 0.0], [0.0, 0.0])  # pair vectors 0
    assert losses.transformation_mse(va, vab).item() == pytest.approx(5.0)
    vab = va + 3.0  # same pair vectors: length and direction kept
    assert losses.transformation_mse(va, vab).item() == pytest.approx(0.0, abs=1e-6)
    vab = 2 * va  # pair vectors doubled: (1, 2) off by (1, 2) → 5 each
    assert losses.transformation_mse(va, vab).item() == pytest.approx(5.0)


def test_hinge_values():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.0])
    # relu(1 − real) = [0, 0.5] → 0.25; relu(1 + fake) = [0, 1] → 0.5
    assert losses.hinge_d(real, fake).item() == pytest.approx(0.75)
    assert losses.hinge_d(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -4.0])).item() == 0.0
    assert losses.hinge_g(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_identity_l1_hand_value():
    a = torch.zeros(1, 3, 2, 2)
    b = a.clone()
    b[0, 0, 0, 0], b[0, 2, 1, 1] = 1.2, -0.6
    assert losses.identity_l1(b, a).item() == pytest.approx((1.2 + 0.6) / 12)
    assert losses.identity_l1(a, a).item() == 0.0


# ----------------------------------------------------------------- gradients and steps


def tiny(recipe: str = "default", **kw) -> TrainConfig:
    common = {"tile_size": 8, "batch_size": 2, "generator": GeneratorConfig(4, 1),
              "device": "cpu", **kw}
    if recipe == "seed":
        return TrainConfig.seed_recipe(
            discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2,
                                              spectral_norm=False, critic=False), **common)
    return TrainConfig(discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2),
                       **common)


def batch(cfg: TrainConfig, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(cfg.batch_size, 3, cfg.crop_size, cfg.crop_size, generator=g) * 2 - 1


def generator_grads(m, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(m.generator.parameters()), allow_unused=True))


def grad_norm(grads: list[torch.Tensor | None]) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))


@pytest.mark.parametrize("recipe", ["default", "seed"])
@pytest.mark.parametrize("combo", [True, False])
def test_generator_gets_gradients_from_each_of_its_terms(recipe, combo):
    cfg = tiny(recipe, combo=combo)
    m = build_models(cfg, torch.device("cpu"))
    a = batch(cfg, 1)
    ab = translate(m.generator, a, cfg)
    vab, _ = m.discriminator(ab)
    va = m.discriminator(a)[0].detach()
    adv = generator_grads(m, losses.squared_norm(vab))
    vab, _ = m.discriminator(translate(m.generator, a, cfg))
    cos = generator_grads(m, losses.transformation_cosine(va, vab))
    for grads in (adv, cos):
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert grad_norm(grads) > 0
        # Both ends of G are reached, not only the output layer.
        assert grads[0].abs().sum() > 0 and grads[-2].abs().sum() > 0
    # Two different terms: their gradients point in different directions.
    flat_adv = torch.cat([g.flatten() for g in adv])
    flat_cos = torch.cat([g.flatten() for g in cos])
    assert torch.cosine_similarity(flat_adv, flat_cos, dim=0).abs() < 0.999


def test_default_recipe_extra_terms_reach_the_generator():
    cfg = tiny()
    m = build_models(cfg, torch.device("cpu"))
    a, b = batch(cfg, 1), batch(cfg, 2)
    va = m.discriminator(a)[0].detach()
    vab, score = m.discriminator(translate(m.generator, a, cfg))
    assert grad_norm(generator_grads(m, losses.transformation_mse(va, vab))) > 0
    vab, score = m.discriminator(translate(m.generator, a, cfg))
    assert grad_norm(generator_grads(m, losses.hinge_g(score))) > 0
    out = translate(m.generator, b, cfg)
    assert grad_norm(generator_grads(m, losses.identity_l1(out, b))) > 0


@pytest.mark.parametrize("recipe", ["default", "seed"])
def test_one_train_step_updates_both_networks_with_finite_stats(recipe):
    cfg = tiny(recipe)
    m = build_models(cfg, torch.device("cpu"))
    g_before = [p.detach().clone() for p in m.generator.parameters()]
    d_before = [p.detach().clone() for p in m.discriminator.parameters()]
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    assert all(math.isfinite(v) for v in stats.values())
    base = {"loss_d", "d_real", "d_fake", "cos_d", "g_adv", "cos_g", "norm_b", "norm_ab",
            "loss_g"}
    extra = {"mse_g", "critic_g", "identity"}
    if recipe == "seed":
        assert set(stats) == base
        assert cfg.recipe == "seed" and not cfg.discriminator.critic
    else:
        assert set(stats) == base | extra
    assert 0 <= stats["cos_g"] <= 2 and 0 <= stats["cos_d"] <= 2
    assert stats["d_real"] >= 0 and stats["d_fake"] >= 0
    assert any(not torch.equal(p, q) for p, q in zip(m.generator.parameters(), g_before))
    assert any(not torch.equal(p, q) for p, q in zip(m.discriminator.parameters(), d_before))
    # train_step leaves D trainable again after freezing it for G's update.
    assert all(p.requires_grad for p in m.discriminator.parameters())


def test_seed_recipe_loss_d_is_the_papers_sum():
    cfg = tiny("seed")
    m = build_models(cfg, torch.device("cpu"))
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    expected = stats["d_real"] + stats["d_fake"] + cfg.cosine_weight * stats["cos_d"]
    assert stats["loss_d"] == pytest.approx(expected, rel=1e-5)
    expected_g = stats["g_adv"] + cfg.cosine_weight * stats["cos_g"]
    assert stats["loss_g"] == pytest.approx(expected_g, rel=1e-5)


# ----------------------------------------------------------------- seam term


def noise(size: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_seam_contrast_near_zero_where_there_is_no_seam():
    assert losses.seam_contrast(noise(), 64).item() < 0.02
    assert losses.seam_contrast(noise(32), 16).item() < 0.02  # small tiles: classes of 2


def test_seam_contrast_grows_with_a_line_at_the_join():
    values = []
    for gain in (0.0, 0.2, 0.5, 1.0):
        x = noise()
        x[..., :, 63] += gain  # a bright column at the end of the left tile
        values.append(losses.seam_contrast(x, 64).item())
    assert values == sorted(values) and values[-1] > 20 * values[0]


def test_seam_contrast_sees_a_line_a_few_pixels_inside_the_tiles_too():
    # The first version compared only ±2 px around the join, and a generator trained
    # with it moved the excess 3 px inside its tiles. Every phase counts now.
    clean = losses.seam_contrast(noise(), 64).item()
    for column in (2, 66, 100):
        x = noise()
        x[..., :, column] += 0.5
        assert losses.seam_contrast(x, 64).item() > 5 * clean, column


def test_seam_contrast_ignores_patterns_of_period_4_and_8():
    x = noise()
    x[..., :, ::4] += 0.3  # the nearest-upsampling grid of the generator, or JPEG's
    assert losses.seam_contrast(x, 64).item() < 0.02


def test_seam_contrast_sees_rows_as_well_as_columns():
    x = noise()
    x[..., 64, :] -= 0.5
    assert losses.seam_contrast(x, 64).item() > 0.05
    assert losses.seam_contrast(x, 64).item() == pytest.approx(
        losses.seam_contrast(x.transpose(-1, -2), 64).item())


def test_seam_contrast_punishes_a_flat_seam_too():
    x = noise()
    x[..., :, 63] = x[..., :, 64]  # no step at all across the join
    assert losses.seam_contrast(x, 64).item() > 1.0


def test_seam_contrast_needs_whole_tiles_with_two_phases_per_class():
    with pytest.raises(ValueError, match="whole tiles"):
        losses.seam_contrast(noise(), 8)  # one phase per class mod 8: nothing to compare
    with pytest.raises(ValueError, match="whole tiles"):
        losses.seam_contrast(noise(100), 64)


def test_seam_term_needs_the_combo_model():
    with pytest.raises(ValueError, match="Combo"):
        tiny(seam_weight=1.0, combo=False)


def test_seam_term_reaches_the_generator_and_is_logged():
    cfg = tiny(seam_weight=1.0, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    ab = translate(m.generator, batch(cfg, 1), cfg)
    assert grad_norm(generator_grads(m, losses.seam_contrast(ab, cfg.tile_size))) > 0
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    assert math.isfinite(stats["seam"]) and stats["seam"] >= 0
    assert "seam" not in train_step(m, batch(cfg, 1), batch(cfg, 2), tiny(tile_size=16))


# ----------------------------------------------------------------- colour term


def test_rgb_moments_hand_values():
    # Two pixels per channel: R ∈ {-1, 1}, G ∈ {0, 0}, B = −R.
    x = torch.tensor([[[[-1.0, 1.0]], [[0.0, 0.0]], [[1.0, -1.0]]]])
    mean, cov = losses.rgb_moments(x)
    assert torch.allclose(mean, torch.zeros(3))
    assert torch.allclose(cov, t([1, 0, -1], [0, 0, 0], [-1, 0, 1]))


def test_colour_moments_zero_on_target_and_grows_with_a_flatter_palette():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mean, cov = losses.rgb_moments(x)
    assert losses.colour_moments(x, mean, cov).item() == pytest.approx(0, abs=1e-10)
    flat = losses.colour_moments(0.9 * x, mean, cov)
    flatter = losses.colour_moments(0.7 * x, mean, cov)
    assert 0 < flat < flatter
    shifted = losses.colour_moments(x + t(0.1, 0, 0).view(1, 3, 1, 1), mean, cov)
    assert shifted.item() == pytest.approx(0.01, rel=1e-4)  # only the mean moved


def test_colour_moments_of_a_collection_pools_all_its_pixels():
    from siamgan.data import colour_moments_of
    from siamgan.images import to_model_range

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, 12, 3), dtype=np.uint8) for h in (8, 20)]
    mean, cov = colour_moments_of(images)
    pooled = torch.cat([to_model_range(i).reshape(1, 3, -1) for i in images], dim=2)
    want_mean, want_cov = losses.rgb_moments(pooled.unsqueeze(2))
    assert torch.allclose(mean, want_mean, atol=1e-5)
    assert torch.allclose(cov, want_cov, atol=1e-5)


def test_colour_term_reaches_the_generator_and_needs_its_target():
    cfg = tiny(colour_weight=1.0, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    target = (torch.zeros(3), torch.eye(3) * 0.3)
    ab = translate(m.generator, batch(cfg, 1), cfg)
    assert grad_norm(generator_grads(m, losses.colour_moments(ab, *target))) > 0
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg, colour=target)
    assert math.isfinite(stats["colour"]) and stats["colour"] > 0
    with pytest.raises(ValueError, match="colour moments"):
        train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)


def test_crop_contrast_compares_the_spread_of_contrasts_not_the_colours():
    torch.manual_seed(0)
    textured = torch.rand(6, 3, 16, 16) * 2 - 1
    # The same crops in another order and another mean colour each: nothing to pay.
    shifted = textured.flip(0) + torch.linspace(-0.5, 0.5, 6).view(6, 1, 1, 1)
    assert losses.crop_contrast(shifted, textured).item() == pytest.approx(0.0, abs=1e-10)
    # Washed-out translations pay, the more the flatter; the reference gets no gradient.
    half = losses.crop_contrast(textured * 0.5, textured).item()
    flat = losses.crop_contrast(textured * 0.1, textured).item()
    assert 0 < half < flat
    x, ref = (textured * 0.5).requires_grad_(), textured.clone().requires_grad_()
    losses.crop_contrast(x, ref).backward()
    assert x.grad.abs().sum() > 0 and ref.grad is None
    # Sets of unequal size are compared on quantiles: a doubled reference is the same one.
    assert losses.crop_contrast(textured * 0.5, textured.repeat(2, 1, 1, 1)).item() == \
        pytest.approx(half, rel=0.05)


def test_contrast_term_is_trained_and_logged():
    cfg = tiny(contrast_weight=2.0, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    assert math.isfinite(stats["contrast"]) and stats["contrast"] > 0


def test_crop_chroma_compares_colourfulness_not_hue_or_brightness():
    torch.manual_seed(0)
    base = torch.rand(6, 3, 16, 16) * 1.2 - 0.6
    grey = (base * torch.tensor(losses.LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    # Reordered, and brighter (a grey shift keeps every pixel's distance from grey).
    same = base.flip(0) + 0.2
    assert losses.crop_chroma(same, base).item() == pytest.approx(0.0, abs=1e-10)
    # More vivid translations pay, the more the more vivid; so do greyer ones.
    vivid = lambda f: grey + f * (base - grey)  # noqa: E731
    assert 0 < losses.crop_chroma(vivid(1.5), base).item() < \
        losses.crop_chroma(vivid(2.0), base).item()
    assert losses.crop_chroma(vivid(0.3), base).item() > 0
    x, ref = vivid(1.5).requires_grad_(), base.clone().requires_grad_()
    losses.crop_chroma(x, ref).backward()
    assert x.grad.abs().sum() > 0 and ref.grad is None


def test_chroma_term_is_trained_and_logged():
    cfg = tiny(chroma_weight=2.0, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    assert math.isfinite(stats["chroma"]) and stats["chroma"] > 0


def test_colour_gamut_costs_only_pixels_outside_and_pulls_them_straight_back():
    mean = torch.tensor([0.1, 0.0, -0.2])
    cov = torch.diag(torch.tensor([0.04, 0.04, 0.09]))
    flat = lambda *rgb: torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 8, 8)  # noqa: E731
    # 1.5 spreads out along red: inside a radius of 2, free.
    assert losses.colour_gamut(flat(0.4, 0.0, -0.2), mean, cov, 2.0).item() == 0
    # 4 spreads out along green: (4 − 2)² = 4; farther costs more.
    assert losses.colour_gamut(flat(0.1, 0.8, -0.2), mean, cov, 2.0).item() == \
        pytest.approx(4.0, rel=1e-5)
    assert losses.colour_gamut(flat(0.1, 0.9, -0.2), mean, cov, 2.0) > 4.0
    # Per pixel: half the pixels at 4 and half at 0 cost half, though their mean is inside.
    half = torch.cat([flat(0.1, 0.8, -0.2), flat(0.1, -0.8, -0.2)], dim=3)
    half[..., 8:] = mean.view(1, 3, 1, 1)
    assert losses.colour_gamut(half, mean, cov, 2.0).item() == pytest.approx(2.0, rel=1e-5)
    x = flat(0.1, 0.8, -0.2).clone().requires_grad_()
    losses.colour_gamut(x, mean, cov, 2.0).backward()
    g = x.grad.sum(dim=(0, 2, 3))  # the pull is back along green alone
    assert g[1] > 0 and g[0].abs() < 1e-6 and g[2].abs() < 1e-6


def test_gamut_term_is_trained_and_logged():
    cfg = tiny(gamut_weight=2.0, gamut_radius=0.01, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    colour = (torch.tensor([0.9, -0.9, 0.9]), torch.eye(3) * 0.01)
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg, colour=colour)
    assert math.isfinite(stats["gamut"]) and stats["gamut"] > 0
    with pytest.raises(ValueError, match="colour moments"):
        train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    with pytest.raises(ValueError, match="gamut_radius"):
        tiny(gamut_radius=0.0)


def test_grid_level_is_zero_without_a_frame_and_finds_one():
    torch.manual_seed(0)
    flat = torch.full((2, 3, 32, 48), 0.3)
    assert losses.grid_level(flat, 16).item() == pytest.approx(0.0, abs=1e-12)
    framed = flat.clone()
    framed[..., :, 15::16] += 0.2  # one column per tile brighter, in every channel
    value = losses.grid_level(framed, 16).item()
    # x: phase 15 is 0.2 − 0.2/16 above the mean, 15 phases 0.2/16 below, in 3 channels;
    # y: nothing; the loss averages the two directions.
    expected = 3 * ((0.2 - 0.2 / 16) ** 2 + 15 * (0.2 / 16) ** 2) / 2
    assert value == pytest.approx(expected, rel=1e-5)
    noisy = flat + 0.1 * torch.randn_like(flat)  # no grid structure: small
    assert losses.grid_level(noisy, 16).item() < 0.1 * value
    with pytest.raises(ValueError):
        losses.grid_level(flat, 20)


def test_grid_level_per_image_sees_frames_that_cancel_in_the_batch():
    flat = torch.full((2, 3, 32, 48), 0.3)
    framed = flat.clone()
    framed[0, :, :, 15::16] += 0.2  # a bright frame on the first crop ...
    framed[1, :, :, 15::16] -= 0.2  # ... and a dark one on the second
    assert losses.grid_level(framed, 16).item() == pytest.approx(0.0, abs=1e-10)
    expected = 3 * ((0.2 - 0.2 / 16) ** 2 + 15 * (0.2 / 16) ** 2) / 2  # as for one frame
    assert losses.grid_level(framed, 16, per_image=True).item() == pytest.approx(expected,
                                                                                rel=1e-5)
    same = flat.clone()
    same[..., 15::16] += 0.2  # the same frame everywhere: both ways agree
    assert losses.grid_level(same, 16, per_image=True).item() == pytest.approx(
        losses.grid_level(same, 16).item(), rel=1e-5)


def test_shift_gap_is_zero_for_a_painter_that_follows_the_photo_and_sees_a_grid():
    torch.manual_seed(0)
    crop = torch.rand(2, 3, 40, 40)
    side, dy, dx = 36, 1, 2
    follow = lambda x: x.flip(1) * 0.5  # noqa: E731  per pixel: moves with the photo
    y0, y1 = follow(crop[..., :side, :side]), follow(crop[..., dy:dy + side, dx:dx + side])
    assert losses.shift_gap(y0, y1, dy, dx).item() == pytest.approx(0.0, abs=1e-7)
    # A texture laid by the window's own 4-px grid does not move with the photo.
    grid = torch.zeros(side, side)
    grid[::4, ::4] = 1.0
    gap = losses.shift_gap(y0 + grid, y1 + grid, dy, dx)
    assert gap.item() == pytest.approx(2 / 16, rel=0.05)
    # A shift of whole grid cells keeps the grid on the same photo pixels.
    y4 = follow(crop[..., 4:4 + side, 4:4 + side])
    assert losses.shift_gap(y0 + grid, y4 + grid, 4, 4).item() == pytest.approx(0.0, abs=1e-7)


def test_shift_term_is_trained_and_logged():
    cfg = tiny(shift_weight=5.0, shift_crops=2, tile_size=16)
    m = build_models(cfg, torch.device("cpu"))
    torch.manual_seed(3)
    term = _shift_term(m.generator, batch(cfg, 1))
    grads = generator_grads(m, term)
    assert term.item() > 0 and grads[0].abs().sum() > 0 and grads[-2].abs().sum() > 0
    stats = train_step(m, batch(cfg, 1), batch(cfg, 2), cfg)
    assert math.isfinite(stats["shift"]) and stats["shift"] > 0
