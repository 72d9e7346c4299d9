"""The light install: ONNX export, the onnxruntime stylizer, and the CLI without torch.

The CLI tests run `siamgan` in a subprocess where an import hook refuses torch,
torchvision, safetensors, scikit-image and onnx, as the light install lacks them;
.ci/light_e2e.sh does the same in a venv of the light install alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamgan.onnx_style import OnnxStylizer, export_onnx
from siamgan.stylize import Stylizer, TileConfig, load_stylizer
from siamgan.weights_io import find_style

TOLERANCE = 1e-4
"""Largest |onnxruntime − torch| on the generator's output, in [-1, 1] (measured: 2e-6)."""

FULL_ONLY = ("torch", "torchvision", "safetensors", "skimage", "onnx")

LIGHT = f"""
import sys
class Light:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FULL_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Light())
from siamgan.cli import main
sys.argv = ["siamgan", *sys.argv[1:]]
try:
    main()
finally:
    assert not any(m.split(".")[0] in {FULL_ONLY!r} for m in sys.modules)
"""


def light(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`siamgan ARGS` as the light install runs it: torch and the rest not importable."""
    return subprocess.run([sys.executable, "-c", LIGHT, *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    img = np.stack([128 + 80 * np.sin(x / 13), 60 + 150 * y / h, 200 - 120 * x / w], -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    model, config = export_onnx("vangogh", tmp_path_factory.mktemp("onnx") / "vangogh-copy")
    assert json.loads(config.read_text())["tile_size"] == 64
    return model


@pytest.mark.parametrize("tile, batch", [(16, 1), (32, 3), (64, 5), (96, 2)])
def test_onnx_export_matches_torch_on_several_tile_sizes(exported, tile, batch):
    onnx = OnnxStylizer.from_style(exported, threads=1)
    torch_ = Stylizer.from_style("vangogh", "cpu")
    channels = 4 if onnx.noise else 3  # a noise input is a fourth channel
    tiles = np.random.default_rng(tile).uniform(-1, 1, (batch, channels, tile, tile))
    tiles = tiles.astype(np.float32)
    got, expected = onnx.run_tiles(tiles), torch_.run_tiles(tiles)
    assert got.shape == expected.shape == (batch, 3, tile, tile) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE


def test_shipped_onnx_is_the_shipped_safetensors(exported):
    shipped = OnnxStylizer.from_style(find_style("vangogh"), threads=1)
    assert shipped.model.name == "vangogh.onnx"
    channels = 4 if shipped.noise else 3
    tiles = np.random.default_rng(0).uniform(-1, 1, (2, channels, 64, 64)).astype(np.float32)
    fresh = OnnxStylizer.from_style(exported, threads=1)
    assert np.abs(shipped.run_tiles(tiles) - fresh.run_tiles(tiles)).max() <= TOLERANCE


@pytest.mark.parametrize("tiling", [TileConfig(), TileConfig(seamless=True, palette=0.5),
                                    TileConfig(strokes="pixel", scale=0.5, overlap=8),
                                    TileConfig(tile_size=48, detail=0.0)])
def test_onnx_and_torch_stylizers_give_the_same_pixels(tiling):
    pixels = photo(300, 410)
    onnx = load_stylizer("vangogh", "onnx")
    torch_ = load_stylizer("vangogh", "torch", "cpu")
    assert isinstance(onnx, OnnxStylizer) and isinstance(torch_, Stylizer)
    diff = np.abs(onnx.stylize_array(pixels, tiling).astype(int)
                  - torch_.stylize_array(pixels, tiling).astype(int))
    assert diff.max() <= 2


def test_runtime_auto_prefers_onnx_only_for_float32_on_the_cpu(tmp_path):
    assert isinstance(load_stylizer("vangogh", "auto", "cpu"), OnnxStylizer)
    assert isinstance(load_stylizer("vangogh", "auto", "cpu", "bfloat16"), Stylizer)
    with pytest.raises(ValueError, match="float32 on the CPU"):
        load_stylizer("vangogh", "onnx", "cpu", "bfloat16")


def test_cli_stylizes_without_torch(tmp_path):
    src = tmp_path / "photos" / "trip"
    src.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo(90 + 20 * i, 130, i)).save(src / f"p{i}.jpg", quality=92)
    out, report = tmp_path / "out", tmp_path / "report.json"
    done = light("stylize", str(tmp_path / "photos"), "-o", f"{out}/", "--style", "vangogh",
                 "--seamless", "--palette", "0.4", "--scale", "0.7", "--shard", "1/1",
                 "--report", str(report))
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert written == [Path("trip") / f"p{i}.jpg" for i in range(3)]
    assert len(json.loads(report.read_text())["converted"]) == 3
    again = light("stylize", str(tmp_path / "photos"), "-o", f"{out}/", "--style", "vangogh")
    assert again.returncode == 0 and "skipped 3" in again.stdout + again.stderr
    styles = light("styles")
    assert styles.returncode == 0 and "vangogh" in styles.stdout
    bad = light("stylize", str(src), "-o", f"{out}/", "--style", "vangogh", "--runtime", "torch")
    assert bad.returncode == 2 and "pip install 'siamgan[train]'" in bad.stderr


@pytest.mark.parametrize("args", [["train", "--a", "a", "--b", "b", "--name", "x"],
                                  ["polish", "--photos", "p", "--name", "x"],
                                  ["eval", "--paintings", "p", "--style", "vangogh"],
                                  ["export", "vangogh", "-o", "x"],
                                  ["palette", "--paintings", "p", "-s", "vangogh", "-o", "x"],
                                  ["photo-detail", "--photos", "p", "-s", "vangogh", "-o",
                                   "x"],
                                  ["dcgan", "sample"]])
def test_training_commands_say_what_to_install_without_a_traceback(args):
    done = light(*args)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: `siamgan {args[0]}` needs the "
        "full install (torch); install it with: pip install 'siamgan[train]'"]


def test_export_command_writes_a_model_the_light_runtime_reads(tmp_path):
    from typer.testing import CliRunner

    from siamgan.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["export", "vangogh", "-o", str(tmp_path / "mine")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "mine.onnx").is_file() and (tmp_path / "mine.json").is_file()
    Image.fromarray(photo(70, 90)).save(tmp_path / "in.png")
    styled = light("stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                   "--weights", str(tmp_path / "mine.onnx"))
    assert styled.returncode == 0, styled.stderr
    assert Image.open(tmp_path / "out.png").size == (90, 70)
    shipped = runner.invoke(app, ["export", "vangogh"])
    assert shipped.exit_code == 2 and "shipped style" in shipped.output


def test_a_user_style_without_onnx_or_json_is_one_line_in_the_light_install(tmp_path, home):
    import shutil

    styles = home / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    shutil.copy(find_style("vangogh"), styles / "mine.safetensors")  # no .json, no .onnx
    listed = light("styles")
    assert listed.returncode == 0 and "vangogh" in listed.stdout
    assert "mine.safetensors: no config beside it" in listed.stderr
    Image.fromarray(photo(40, 40)).save(tmp_path / "in.png")
    shutil.copy(find_style("vangogh").with_suffix(".json"), styles / "mine.json")
    done = light("stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "-s", "mine")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no ONNX model beside it" in done.stderr


def test_full_install_stylizes_on_onnx_without_importing_torch_where_no_gpu_driver_is(tmp_path):
    """With torch installed, `--device auto` on a Linux host with no GPU driver picks the
    ONNX runtime without importing torch (1.8 s and 0.45 GiB here) to ask for CUDA."""
    from siamgan.stylize import GPU_DRIVER_FILES

    if not sys.platform.startswith("linux") or any(map(Path.exists, map(Path,
                                                                          GPU_DRIVER_FILES))):
        pytest.skip("a GPU driver is present, or not Linux: torch must be asked")
    src = tmp_path / "in.png"
    Image.fromarray(photo(40, 56)).save(src)
    code = ("import sys; from siamgan.cli import main; "
            f"sys.argv = ['siamgan', 'stylize', {str(src)!r}, '-o', {str(tmp_path / 'o.png')!r},"
            " '--style', 'vangogh']\n"
            "try: main()\nexcept SystemExit as e: assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "o.png").is_file()


def test_a_noise_bilinear_style_paints_the_same_on_onnx_torch_and_in_batches(tmp_path):
    import torch

    from siamgan.models import GeneratorConfig, PatchGenerator
    from siamgan.weights_io import save_weights

    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(8, 1, skip=True, noise=True, upsample="bilinear"))
    with torch.no_grad():
        gen.net[0].weight[:, 3].normal_(0, 0.3)
        gen.skip.weight.normal_(0, 0.3)
    config = {"kind": "style", "name": "noisy", "tile_size": 32,
              "generator": {"channels": 8, "res_blocks": 1, "norm": "pixel",
                            "skip": True, "noise": True, "upsample": "bilinear"},
              "strokes": {"picture_side": 96, "detail": 0.5}}
    save_weights(tmp_path / "noisy.safetensors", gen.state_dict(), config)
    model, _ = export_onnx(tmp_path / "noisy.safetensors", tmp_path / "noisy")
    onnx, torch_ = OnnxStylizer.from_style(model, threads=1), Stylizer.from_style(
        tmp_path / "noisy.safetensors", "cpu")
    pictures = [photo(300, 410), photo(90, 70, 1)]
    painted = torch_.stylize_array(pictures[0])
    assert np.abs(onnx.stylize_array(pictures[0]).astype(int) - painted).max() <= 2
    np.testing.assert_array_equal(torch_.stylize_array(pictures[0]), painted)  # fixed noise
    batched = torch_.stylize_arrays(pictures)
    np.testing.assert_array_equal(batched[0], painted)
    np.testing.assert_array_equal(batched[1], torch_.stylize_array(pictures[1]))
