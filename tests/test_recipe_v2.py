"""The v2 training terms: PatchNCE, D's patch critics and DiffAugment."""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict

import pytest
import torch
from helpers import folder

from siamgan import augment, losses
from siamgan.models import (
    DiscriminatorConfig,
    GeneratorConfig,
    PatchGenerator,
    PatchNCEHead,
    SiameseDiscriminator,
    encoder_features,
    encoder_widths,
    nce_layers,
    nce_positions,
)
from siamgan.runs import load_checkpoint

T = importlib.import_module("siamgan.train")


@pytest.fixture(autouse=True)
def _user_home(home):
    """Exports go to a temporary SIAMGAN_HOME."""


def test_patch_nce_is_low_when_each_query_matches_its_own_position():
    torch.manual_seed(0)
    key = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1)
    matched = losses.patch_nce(key.clone(), key, tau=0.07)
    shuffled = losses.patch_nce(key[:, torch.randperm(16)], key, tau=0.07)
    # One vector everywhere (a uniform texture): every position looks alike, chance level.
    same = losses.patch_nce(key[:, :1].expand(-1, 16, -1), key, tau=0.07)
    assert matched < 0.05
    assert shuffled > 1.0
    assert same > matched
    assert losses.patch_nce(key, key, tau=1.0) > matched  # a softer temperature, a looser fit


def test_patch_nce_does_not_differentiate_the_keys():
    q = torch.randn(1, 4, 3, requires_grad=True)
    k = torch.randn(1, 4, 3, requires_grad=True)
    losses.patch_nce(q, k).backward()
    assert q.grad is not None and k.grad is None


def test_encoder_features_follow_the_generator_depth():
    gen = PatchGenerator(GeneratorConfig(4, 1))
    assert nce_layers(gen.config) == (2, 5, 8, 9)
    assert nce_layers(GeneratorConfig(4, 0)) == (2, 5, 8)
    feats = encoder_features(gen, torch.zeros(2, 3, 16, 16))
    assert [tuple(f.shape[1:]) for f in feats] == [(4, 16, 16), (8, 8, 8), (16, 4, 4),
                                                    (16, 4, 4)]
    assert encoder_widths(gen) == [4, 8, 16, 16]


def test_nce_head_gives_unit_vectors_at_the_sampled_positions():
    torch.manual_seed(0)
    feats = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)]
    where = nce_positions(feats, 20)
    assert [len(w) for w in where] == [20, 9]  # no more than the map has
    assert len(set(where[0].tolist())) == 20
    out = PatchNCEHead([4, 8], dim=5)(feats, where)
    assert [tuple(o.shape) for o in out] == [(2, 20, 5), (2, 9, 5)]
    assert torch.allclose(out[0].norm(dim=-1), torch.ones(2, 20), atol=1e-5)


def test_patch_heads_score_maps_at_their_depths():
    d = SiameseDiscriminator(DiscriminatorConfig(latent_dim=8, channels=4, layers=3,
                                                 patch_heads=(1, 3)))
    vec, score, maps = d(torch.zeros(2, 3, 32, 32), patches=True)
    assert vec.shape == (2, 8) and score.shape == (2,)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 16, 16), (2, 1, 4, 4)]
    assert len(d(torch.zeros(2, 3, 32, 32))) == 2  # the seed interface is unchanged
    with pytest.raises(ValueError, match="patch_heads"):
        DiscriminatorConfig(layers=3, patch_heads=(4,))


def test_augment_shifts_and_cuts_alike_for_one_draw():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16) + 1  # no zeros of its own
    d = augment.draw(3, 16, "translation,cutout")
    a, b = augment.apply(x, d), augment.apply(x.clone(), d)
    assert torch.equal(a, b)
    zeros = (a == 0).all(dim=1).float().mean(dim=(1, 2))
    assert (zeros >= 0.25 - 1e-6).all()  # a quarter cut out, plus the shifted-in border
    only_shift = augment.draw(3, 16, "translation")
    shifted = augment.apply(x, only_shift)
    for i, (dy, dx) in enumerate(only_shift.shift.tolist()):
        ys, xs = slice(max(0, dy), 16 + min(0, dy)), slice(max(0, dx), 16 + min(0, dx))
        src = x[i, :, max(0, -dy): 16 - max(0, dy), max(0, -dx): 16 - max(0, dx)]
        assert torch.equal(shifted[i, :, ys, xs], src)
    with pytest.raises(ValueError, match="colour"):
        augment.parse_policy("translation,colour")


def test_augment_is_differentiable():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    augment.apply(x, augment.draw(2, 16, "translation,cutout")).sum().backward()
    assert x.grad is not None and 0 < x.grad.sum() < x.numel()


def tiny_v2(steps: int = 3, **kw) -> T.TrainConfig:
    return T.TrainConfig(
        tile_size=8, batch_size=2, steps=steps, device="cpu", sample_every=2,
        checkpoint_every=1, generator=GeneratorConfig(4, 1), nce_weight=10, nce_patches=16,
        patch_weight=1.0, augment="translation,cutout",
        discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2, patch_heads=(2,)),
        **kw)


def test_v2_terms_train_log_and_resume_bit_for_bit(tmp_path):
    a = folder(tmp_path / "a", 3, seed=1)
    b = folder(tmp_path / "b", 3, seed=2)
    T.train(tiny_v2(4), a, b, "whole", tmp_path / "runs", progress=False)
    T.train(tiny_v2(2), a, b, "split", tmp_path / "runs", progress=False)
    state = load_checkpoint(tmp_path / "runs" / "split")
    assert "nce" in state and "opt_nce" in state
    T.train(tiny_v2(4), a, b, "split", tmp_path / "runs", progress=False, resume=True)
    rows = {n: [json.loads(line) for line in
                (tmp_path / "runs" / n / "stats.jsonl").read_text().splitlines()]
            for n in ("whole", "split")}
    for key in ("nce", "patch_g", "patch_d", "loss_g", "loss_d"):
        assert [r[key] for r in rows["whole"]] == [r[key] for r in rows["split"]], key
    assert all(r["nce"] > 0 for r in rows["whole"])


def test_resume_builds_the_models_from_the_checkpoint_not_the_call(tmp_path):
    a = folder(tmp_path / "a", 3, seed=1)
    b = folder(tmp_path / "b", 3, seed=2)
    T.train(tiny_v2(2), a, b, "run", tmp_path / "runs", progress=False)
    plain = T.TrainConfig(steps=3, batch_size=2, tile_size=8, device="cpu",
                          generator=GeneratorConfig(4, 1),
                          discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2))
    # No patch heads or NCE in this call: the checkpoint's config decides the models.
    T.train(plain, a, b, "run", tmp_path / "runs", progress=False, resume=True,
            changes={"nce_weight": 0.5})
    state = load_checkpoint(tmp_path / "runs" / "run")
    assert state["step"] == 3 and state["config"]["nce_weight"] == 0.5
    assert list(state["config"]["discriminator"]["patch_heads"]) == [2]
    assert any(k.startswith("patch.") for k in state["discriminator"])


def test_a_change_to_a_field_the_checkpoint_predates_starts_from_its_default():
    saved = asdict(T.TrainConfig())
    del saved["contrast_weight"]  # a checkpoint written before the contrast term
    cfg, changed = T._resumed_config(saved, T.TrainConfig(), {"contrast_weight": 5.0})
    assert cfg.contrast_weight == 5.0 and changed == {"contrast_weight": [0.0, 5.0]}


def test_a_resumed_run_may_add_the_gamut_and_more_vivid_crops():
    saved = asdict(T.TrainConfig())
    for key in ("gamut_weight", "gamut_radius", "saturation_a"):
        del saved[key]  # a checkpoint written before them
    cfg, changed = T._resumed_config(saved, T.TrainConfig(), {
        "gamut_weight": 100.0, "saturation_a": 3.0})
    assert (cfg.gamut_weight, cfg.gamut_radius, cfg.saturation_a) == (100.0, 3.0, 3.0)
    assert changed == {"gamut_weight": [0.0, 100.0], "saturation_a": [2.0, 3.0]}
    with pytest.raises(ValueError, match="saturation_a"):
        T.TrainConfig(saturation_a=0.5)


def test_patch_weight_needs_patch_heads():
    with pytest.raises(ValueError, match="patch_heads"):
        T.TrainConfig(patch_weight=1.0)
    with pytest.raises(ValueError, match="augmentation"):
        T.TrainConfig(augment="flip")
