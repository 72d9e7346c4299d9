"""Input detail: band energies, the gains, matching a smooth picture to a style's photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from siamgan import detail
from siamgan.images import resize
from siamgan.stylize import Stylizer, TileConfig, check_strokes


def smooth_picture(seed: int = 0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Noise enlarged 8×: a picture with little fine detail, like a shrunk macro photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return resize(small, size[1], size[0])


def test_a_flat_picture_has_no_detail_and_noise_has_most_in_the_finest_band():
    assert detail.detail_energy(np.full((64, 64, 3), 99, np.uint8)) == [0.0, 0.0, 0.0]
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fine, mid, coarse = detail.detail_energy(noise)
    assert fine > 2 * mid > 0 and mid > coarse > 0
    assert len(detail.detail_bands(noise, 2)) == 2


def test_gains_only_raise_and_are_capped():
    assert detail.detail_gains([2.0, 8.0, 0.0], [4.0, 4.0, 4.0]) == [2.0, 1.0, 1.0]
    assert detail.detail_gains([1.0], [100.0], max_gain=3.0) == [3.0]


def test_matching_raises_a_smooth_picture_toward_the_target_and_keeps_its_colours():
    img = smooth_picture()
    before = detail.detail_energy(img)
    target = [2 * v for v in before]
    out = detail.match_detail(img, target)
    after = detail.detail_energy(out)
    assert out.shape == img.shape and out.dtype == np.uint8
    for b, a, t in zip(before, after, target):
        assert b * 1.3 < a < t * 1.5
    # The coarse picture (its colours) is left as it was.
    assert abs(out.astype(float).mean() - img.astype(float).mean()) < 1.0
    blocks = [x.astype(float).reshape(3, 32, 4, 32, 3).mean((1, 3)) for x in (img, out)]
    assert np.abs(blocks[0] - blocks[1]).mean() < 3  # 32-px block means


def test_a_picture_with_enough_detail_is_left_alone():
    img = smooth_picture(1)
    assert detail.match_detail(img, detail.detail_energy(img)) is img
    assert detail.match_detail(img, [0.1, 0.1, 0.1]) is img


def test_photo_detail_sees_large_photos_at_the_coarse_size():
    small = [smooth_picture(s, (64, 64)) for s in range(3)]
    energies = np.array([detail.detail_energy(im, detail.MATCHED_LEVELS) for im in small])
    assert detail.photo_detail(small, 256) == [round(float(v), 2)
                                               for v in np.median(energies, axis=0)]
    big = resize(small[0], 256, 256)  # 4× the side: shrunk back to 64² at picture_side 64
    assert detail.photo_detail([big], 64) == detail.photo_detail([resize(big, 64, 64)], 64)
    with pytest.raises(ValueError):
        detail.photo_detail([], 64)


def test_photo_detail_records_are_checked():
    assert check_strokes({"picture_side": 256, "photo_detail": [8.0, 6.0, 6.7]})
    assert check_strokes({"photo_detail": [0.0, 0.0, 0.0]})  # flat photos: nothing to add
    for bad in ([], [1.0, 2.0, 3.0, 4.0], [-1.0], [float("nan")], [True], "8",
                [1e4]):
        with pytest.raises(ValueError, match="photo_detail"):
            check_strokes({"picture_side": 256, "photo_detail": bad})


class Record(torch.nn.Module):
    """A stand-in generator that keeps every tile it is given."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x


def test_only_the_coarse_rung_of_a_picture_is_matched():
    img = smooth_picture(2, (192, 256))
    target = [3 * v for v in detail.detail_energy(resize(img, 64, 48))]
    config = {"strokes": {"picture_side": 56, "detail": 0.5, "photo_detail": target}}
    outs = {}
    for match in (True, False):
        gen = Record()
        s = Stylizer(gen, 16, config=config)
        # Neither flow nor photo edges: both redraw even a faithful painting's texture.
        outs[match] = s.stylize_array(img, TileConfig(match_detail=match, flow=False,
                                                      photo_edges=False))
        assert len(s.rungs(192, 256, TileConfig())) > 1
    # The generator is the identity: the output is the composed inputs. With matching,
    # the coarse rung (the whole-picture view) has more detail; without it, none is added.
    seen_small = [detail.detail_energy(resize(o, 64, 48))[0] for o in outs.values()]
    assert seen_small[0] > 1.3 * seen_small[1]
    assert np.abs(outs[False].astype(int) - img).mean() < 3
    plain = Stylizer(Record(), 16, config={"strokes": {"picture_side": 56, "detail": 0.5}})
    assert np.array_equal(plain.stylize_array(img, TileConfig(flow=False, photo_edges=False)),
                          outs[False])
    # Pixel strokes paint the photo as it is.
    gen = Record()
    s = Stylizer(gen, 16, config=config)
    assert np.array_equal(s.stylize_array(img, TileConfig(strokes="pixel")), img)


def test_photo_detail_command_records_it_in_a_style(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from siamgan.cli import app
    from siamgan.models import GeneratorConfig, PatchGenerator
    from siamgan.weights_io import load_weights, save_weights

    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(4, 1))
    src = save_weights(tmp_path / "tiny.safetensors", gen.state_dict(), {
        "kind": "style", "name": "tiny", "tile_size": 16,
        "strokes": {"picture_side": 48, "detail": 0.5},
        "generator": {"channels": 4, "res_blocks": 1, "norm": "pixel"}})
    photos = tmp_path / "photos"
    photos.mkdir()
    images = [smooth_picture(i, (64, 64)) for i in range(5)]
    for i, im in enumerate(images):
        Image.fromarray(im).save(photos / f"{i}.png")
    out = tmp_path / "styled.safetensors"
    r = CliRunner().invoke(app, ["photo-detail", "--photos", str(photos), "--style", str(src),
                                 "-o", str(out), "--holdout-every", "5"])
    assert r.exit_code == 0, r.output
    tensors, config = load_weights(out)
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(tensors[k], v)
    # Every 5th photo (the last) held out; each seen at 48² as the coarse rung would be.
    assert config["strokes"]["photo_detail"] == detail.photo_detail(images[:4], 48)
    assert config["strokes"]["picture_side"] == 48 and config["name"] == "styled"
    assert json.loads(out.with_suffix(".json").read_text())["strokes"] == config["strokes"]
    assert Stylizer.from_style(str(out), "cpu").strokes["photo_detail"]
    r = CliRunner().invoke(app, ["photo-detail", "--photos", str(tmp_path / "none"),
                                 "--style", str(src), "-o", str(out)])
    assert r.exit_code == 2
