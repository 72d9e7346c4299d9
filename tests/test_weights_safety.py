"""Weight files: pickles are refused unread, broken safetensors say what is wrong."""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from siamgan.cli import app
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.runs import load_checkpoint
from siamgan.stylize import Stylizer
from siamgan.weights_io import WeightsError, load_weights, save_weights

CFG = GeneratorConfig(channels=4, res_blocks=0)


def style_config(cfg: GeneratorConfig = CFG) -> dict:
    return {"kind": "style", "tile_size": 16, "generator": asdict(cfg)}


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return PatchGenerator(CFG).state_dict()


class Trap:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"net.0.weight": Trap(marker)}))
    return path


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.ckpt"])
def test_pickled_weights_refused_with_hint_never_unpickled(tmp_path, name):
    marker = tmp_path / "pwned"
    path = evil_pickle(tmp_path / name, marker)
    with pytest.raises(WeightsError, match="pickled weights are refused.*safetensors"):
        Stylizer.from_style(str(path), device="cpu")
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_is_refused_unread(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    disguised = evil_pickle(tmp_path / "evil.safetensors", marker)
    (tmp_path / "evil.json").write_text(json.dumps(style_config()))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something tried to unpickle the weights")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(disguised)
    zipped = tmp_path / "zip.safetensors"  # what torch.save writes: a zip archive
    torch.save(tiny_state(), zipped, _use_new_zipfile_serialization=True)
    (tmp_path / "zip.json").write_text(json.dumps(style_config()))
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(zipped)
    assert not marker.exists()


def test_cli_refuses_pickled_weights_with_exit_2(tmp_path):
    marker = tmp_path / "pwned"
    weights = evil_pickle(tmp_path / "model.pt", marker)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    r = CliRunner().invoke(app, ["stylize", str(tmp_path / "a.png"), "-o",
                                 str(tmp_path / "out"), "--weights", str(weights),
                                 "--device", "cpu"])
    assert r.exit_code == 2
    assert "pickled weights are refused" in r.output and "siamgan train" in r.output
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_resume_checkpoint_never_unpickles_objects(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "trap": Trap(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def test_valid_style_loads(tmp_path):
    path = save_weights(tmp_path / "ok.safetensors", tiny_state(), style_config())
    s = Stylizer.from_style(str(path), device="cpu")
    assert s.tile_size == 16


def test_missing_tensor_named(tmp_path):
    state = tiny_state()
    del state["net.0.weight"]
    path = save_weights(tmp_path / "m.safetensors", state, style_config())
    with pytest.raises(WeightsError, match=r"m\.safetensors.*missing net\.0\.weight"):
        Stylizer.from_style(str(path), device="cpu")


def test_wrong_shape_named(tmp_path):
    path = save_weights(tmp_path / "s.safetensors", tiny_state(),
                        style_config(GeneratorConfig(channels=8, res_blocks=0)))
    with pytest.raises(WeightsError, match=r"net\.0\.weight: shape \(4, 3, 7, 7\), "
                                           r"expected \(8, 3, 7, 7\)"):
        Stylizer.from_style(str(path), device="cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_named(tmp_path, bad):
    state = tiny_state()
    state["net.0.bias"][1] = bad
    path = save_weights(tmp_path / "n.safetensors", state, style_config())
    with pytest.raises(WeightsError, match=r"non-finite values in net\.0\.bias"):
        Stylizer.from_style(str(path), device="cpu")


def test_oversized_header_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(WeightsError, match="header is too large"):
        load_weights(path)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 50) + b"{not json" + b" " * 41)
    (tmp_path / "bad.json").write_text(json.dumps(style_config()))
    with pytest.raises(WeightsError, match="cannot read safetensors"):
        load_weights(path)
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(path)


def test_config_problems_named(tmp_path):
    path = tmp_path / "c.safetensors"
    save_file(tiny_state(), path)  # no config in the metadata, none beside it
    with pytest.raises(WeightsError, match="no config"):
        load_weights(path)
    (tmp_path / "c.json").write_text("{broken")
    with pytest.raises(WeightsError, match=r"c\.json.*not valid JSON"):
        load_weights(path)
    (tmp_path / "c.json").write_text(json.dumps({**style_config(), "generator": {"x": 1}}))
    with pytest.raises(WeightsError, match="bad style config: generator"):
        Stylizer.from_style(str(path), device="cpu")


def test_config_without_tile_size_named(tmp_path):
    cfg = style_config()
    del cfg["tile_size"]
    path = save_weights(tmp_path / "t.safetensors", tiny_state(), cfg)
    with pytest.raises(WeightsError, match="tile_size"):
        Stylizer.from_style(str(path), device="cpu")
