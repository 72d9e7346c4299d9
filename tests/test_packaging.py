"""The wheel must carry every subpackage and the shipped weights."""

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "siamgan").rglob("__init__.py")}
    assert found <= listed, f"missing from pyproject packages: {found - listed}"
    assert setup["package-dir"]["siamgan.weights"] == "weights"


def test_shipped_weights_have_configs_and_fit_the_size_limit():
    for weights in (ROOT / "weights").glob("*.safetensors"):
        assert weights.with_suffix(".json").is_file(), weights
        assert weights.stat().st_size <= 20 * 1024 * 1024, weights


def test_the_base_install_is_light_and_ships_every_style_as_onnx():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = {d.split(">")[0].split("=")[0].split("<")[0] for d in project["project"]["dependencies"]}
    assert base == {"pillow", "numpy", "tqdm", "typer", "onnxruntime"}
    assert "torch>=2.1,<=2.14.1" in project["project"]["optional-dependencies"]["train"]
    data = project["tool"]["setuptools"]["package-data"]["siamgan.weights"]
    assert "*.onnx" in data
    for config in (ROOT / "weights").glob("*.json"):
        if json.loads(config.read_text()).get("kind", "style") == "style":
            assert config.with_suffix(".onnx").is_file(), config
