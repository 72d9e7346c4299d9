"""Batch conversion: names, folders, formats, metadata, resuming, the CLI's exit codes."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from siamgan import convert as C
from siamgan.cli import app
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.stylize import Stylizer, TileConfig
from siamgan.weights_io import save_weights


class Negate(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def rgb(h: int = 12, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, data: np.ndarray | Image.Image, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(data) if isinstance(data, np.ndarray) else data
    im.save(path, format=fmt, **kw)
    return path


def run(inputs, out: Path, **opts) -> C.ConvertReport:
    return C.convert(Stylizer(Negate(), tile_size=16), inputs, out, C.ConvertOptions(**opts))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_folder_mirrored_recursively_keeping_name_format_size(tmp_path):
    src = tmp_path / "in"
    a = save(src / "a.png", rgb(12, 20))
    save(src / "sub" / "b.jpg", rgb(9, 7))
    save(src / "sub" / "deeper" / "c.webp", rgb(5, 6), lossless=True)
    (src / "notes.txt").write_text("not a picture")
    report = run([src], tmp_path / "out")
    out = tmp_path / "out"
    assert files(out) == ["a.png", "sub/b.jpg", "sub/deeper/c.webp"]
    for rel, fmt, size in [("a.png", "PNG", (20, 12)), ("sub/b.jpg", "JPEG", (7, 9)),
                           ("sub/deeper/c.webp", "WEBP", (6, 5))]:
        with Image.open(out / rel) as im:
            assert (im.format, im.size) == (fmt, size)
    np.testing.assert_array_equal(pixels(out / "a.png"), 255 - pixels(a))
    assert report.ignored == [str(src / "notes.txt")] and report.exit_code == 0


def test_globs_and_files_mirror_below_their_common_folder(tmp_path):
    save(tmp_path / "trip" / "x.png", rgb())
    save(tmp_path / "trip" / "y.png", rgb())
    save(tmp_path / "trip" / "z.jpg", rgb())
    save(tmp_path / "other" / "x.png", rgb(seed=1))
    run([str(tmp_path / "trip" / "*.png")], tmp_path / "o1")
    assert files(tmp_path / "o1") == ["x.png", "y.png"]
    # two files called x.png: mirrored, never one written over the other
    run([tmp_path / "trip" / "x.png", tmp_path / "other" / "x.png"], tmp_path / "o2")
    assert files(tmp_path / "o2") == ["other/x.png", "trip/x.png"]
    with pytest.raises(C.ConvertError, match="matches nothing"):
        run([str(tmp_path / "trip" / "*.gif")], tmp_path / "o3")


def test_single_file_to_named_output(tmp_path):
    src = save(tmp_path / "a.jpg", rgb())
    run([src], tmp_path / "result.png")
    with Image.open(tmp_path / "result.png") as im:
        assert im.format == "PNG"
    with pytest.raises(C.ConvertError, match="overwrite the input"):
        run([src], src, overwrite=True)
    with pytest.raises(C.ConvertError, match="contradicts"):
        run([src], tmp_path / "result.png", output_format="webp")


def test_format_and_quality(tmp_path):
    noisy = rgb(64, 64)
    src = save(tmp_path / "in" / "a.png", noisy)
    run([src], tmp_path / "lo", output_format="jpg", quality=10)
    run([src], tmp_path / "hi", output_format="jpg", quality=95)
    lo, hi = tmp_path / "lo" / "a.jpg", tmp_path / "hi" / "a.jpg"
    assert lo.stat().st_size < hi.stat().st_size
    run([src], tmp_path / "w", output_format="webp")
    with Image.open(tmp_path / "w" / "a.webp") as im:
        assert im.format == "WEBP"


def test_metadata_carried_over(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°
    exif[0x010F] = "TestCam"
    src = save(tmp_path / "in" / "p.jpg", rgb(10, 16), "JPEG", exif=exif.tobytes(),
               icc_profile=icc, dpi=(300, 300))
    for fmt in (None, "png", "webp"):
        report = run([src], tmp_path / f"out-{fmt}", output_format=fmt)
        out = Path(report.converted[0]["output"])
        with Image.open(out) as im:
            assert im.size == (10, 16)  # upright
            assert im.info.get("icc_profile") == icc
            assert im.getexif().get(0x010F) == "TestCam"
            assert 0x0112 not in im.getexif()
            if fmt != "webp":  # WebP has no DPI field
                assert np.allclose(im.info["dpi"], (300, 300), atol=0.1)


def test_alpha_kept_across_formats_and_flattened_for_jpeg(tmp_path):
    data = np.dstack([rgb(8, 8), np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))])
    src = save(tmp_path / "in" / "a.png", data)
    run([src], tmp_path / "webp", output_format="webp")
    with Image.open(tmp_path / "webp" / "a.webp") as im:
        assert im.mode == "RGBA"
    report = run([src], tmp_path / "jpg", output_format="jpg")
    assert "flattened onto white" in " ".join(report.converted[0]["warnings"])
    gif = save(tmp_path / "in2" / "g.gif", Image.fromarray(data, "RGBA"))
    run([gif], tmp_path / "gif")
    alphas = []
    for path in (gif, tmp_path / "gif" / "g.gif"):
        with Image.open(path) as im:
            alphas.append(np.asarray(im.convert("RGBA"))[..., 3])
    assert alphas[0].min() == 0 and alphas[0].max() == 255
    np.testing.assert_array_equal(alphas[1], alphas[0])


def test_skip_existing_and_overwrite(tmp_path):
    src = save(tmp_path / "in" / "a.png", rgb())
    out = tmp_path / "out" / "a.png"
    run([src.parent], tmp_path / "out")
    out.write_bytes(b"marker")
    report = run([src.parent], tmp_path / "out")
    assert len(report.skipped) == 1 and out.read_bytes() == b"marker"
    report = run([src.parent], tmp_path / "out", overwrite=True)
    assert len(report.converted) == 1 and out.read_bytes() != b"marker"


def test_inputs_are_never_overwritten_or_read_back(tmp_path):
    src = save(tmp_path / "in" / "a.png", rgb())
    before = src.read_bytes()
    with pytest.raises(C.ConvertError, match="is the input folder"):
        run([src.parent], src.parent, overwrite=True)
    inner = src.parent / "styled"
    for _ in range(2):  # the second run must not pick up styled/a.png as an input
        report = run([src.parent], inner, overwrite=True)
        assert [c["input"] for c in report.converted] == [str(src)]
    assert files(src.parent) == ["a.png", "styled/a.png"] and src.read_bytes() == before
    # an output folder that holds the inputs is refused before any work
    b = save(tmp_path / "in" / "b.png", rgb())
    with pytest.raises(C.ConvertError, match="holds the input"):
        run([src, b], src.parent, overwrite=True)
    assert src.read_bytes() == before


def test_name_collisions(tmp_path):
    src = tmp_path / "in"
    save(src / "a.jpg", rgb(seed=1))
    save(src / "a.png", rgb(seed=2))
    save(src / "s1" / "x.png", rgb(seed=3))
    save(src / "s2" / "x.png", rgb(seed=4))
    run([src], tmp_path / "keep")
    assert files(tmp_path / "keep") == ["a.jpg", "a.png", "s1/x.png", "s2/x.png"]
    report = run([src], tmp_path / "webp", output_format="webp")
    assert report.failed == []
    assert files(tmp_path / "webp") == ["a.jpg.webp", "a.png.webp", "s1/x.webp", "s2/x.webp"]
    # names that differ only in case would meet on a case-insensitive disk
    save(src / "A.png", rgb(seed=5))
    report = run([src], tmp_path / "case")
    assert {Path(f["input"]).name for f in report.failed} == {"A.png", "a.png"}
    assert "would all be written to" in report.failed[0]["reason"]


def test_decoding_overlaps_the_model_work(tmp_path, monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"{i}.png", rgb(seed=i))
    second_decoded = threading.Event()
    real_decode = C.decode

    def decode(path, max_pixels):
        result = real_decode(path, max_pixels)
        if path.name == "1.png":
            second_decoded.set()
        return result

    class Waiting(Negate):
        def forward(self, x):
            assert second_decoded.wait(10), "the next file was not decoded meanwhile"
            return -x

    monkeypatch.setattr(C, "decode", decode)
    report = C.convert(Stylizer(Waiting(), tile_size=16), [src], tmp_path / "out")
    assert len(report.converted) == 3


# --- the command line ---

@pytest.fixture()
def weights(tmp_path) -> Path:
    cfg = GeneratorConfig(channels=4, res_blocks=0)
    torch.manual_seed(0)
    return save_weights(tmp_path / "tiny.safetensors", PatchGenerator(cfg).state_dict(),
                        {"kind": "style", "tile_size": 16, "generator": asdict(cfg)})


def cli(*args: str):
    return CliRunner().invoke(app, ["stylize", *args, "--device", "cpu"])


def test_cli_exit_codes_summary_and_report(tmp_path, weights):
    src = tmp_path / "in"
    save(src / "good.png", rgb())
    report_file = tmp_path / "report.json"
    r = cli(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights),
            "--report", str(report_file))
    assert r.exit_code == 0, r.output
    assert "converted 1, skipped 0 (exist), failed 0" in r.output
    (src / "bad.jpg").write_text("nope")
    r = cli(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights),
            "--report", str(report_file))
    assert r.exit_code == 1
    assert f"failed: {src / 'bad.jpg'}: not an image" in r.output
    data = json.loads(report_file.read_text())
    assert [f["input"] for f in data["failed"]] == [str(src / "bad.jpg")]
    assert len(data["skipped"]) == 1 and data["exit_code"] == 1


@pytest.mark.parametrize("args, message", [
    (["IN", "-o", "OUT"], "exactly one of --style"),
    (["IN/missing.png", "-o", "OUT", "--weights", "W"], "no such file"),
    (["IN", "-o", "OUT", "--weights", "W", "--format", "gif"], "--format must be one of"),
    (["IN", "-o", "IN", "--weights", "W"], "is the input folder"),
    (["IN", "-o", "OUT", "--weights", "W", "--quality", "0"], "quality"),
])
def test_cli_usage_errors_exit_2(tmp_path, weights, args, message):
    save(tmp_path / "in" / "a.png", rgb())
    subst = {"IN": str(tmp_path / "in"), "OUT": str(tmp_path / "out"), "W": str(weights)}
    args = [a.replace("IN", subst["IN"]) if a.startswith("IN") else subst.get(a, a)
            for a in args]
    r = cli(*args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_cli_ctrl_c_exits_130(tmp_path, weights, monkeypatch):
    src = tmp_path / "in"
    for i in range(2):
        save(src / f"{i}.png", rgb(seed=i))

    def interrupt(self, *args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(Stylizer, "_run_tiles", interrupt)
    r = cli(str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert r.exit_code == 130 and "interrupted" in r.output


def test_help_states_the_animated_image_rule():
    r = CliRunner().invoke(app, ["stylize", "--help"], terminal_width=200)
    assert "only the first frame" in r.output


class CountingGenerator(torch.nn.Module):
    """A small random convolutional generator that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = PatchGenerator(GeneratorConfig(channels=4, res_blocks=1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def test_small_images_share_forward_passes_with_the_same_results(tmp_path):
    sizes = [(12, 20), (16, 16), (1, 9), (30, 17), (5, 40)]
    images = [rgb(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    gen = CountingGenerator()
    s = Stylizer(gen, tile_size=16)
    # scale 0.3: three rungs, the coarse ones in larger tiles, the coarsest painted twice
    # (shift averaging).
    for tiling in (TileConfig(batch_size=8), TileConfig(batch_size=8, overlap=4, scale=1.5),
                   TileConfig(batch_size=8, scale=0.3)):
        alone = [s.stylize_array(im, tiling) for im in images]
        gen.calls = 0
        together = s.stylize_arrays(images, tiling)
        tiles = sum(s.tile_count(*im.shape[:2], tiling) for im in images)
        assert gen.calls < len(images)
        if tiling.scale >= 1:  # one tile size: every pass full but the last
            assert gen.calls == -(-tiles // 8)
        for a, b in zip(alone, together):
            np.testing.assert_array_equal(a, b)

    src = tmp_path / "in"
    for i, im in enumerate(images):
        save(src / f"{i}.png", im)
    save(src / "big.png", rgb(70, 70, seed=9))  # 25 tiles: a batch of its own
    gen.calls = 0
    report = C.convert(s, [src], tmp_path / "out", C.ConvertOptions(tiling=TileConfig()))
    assert len(report.converted) == 6 and report.exit_code == 0
    assert gen.calls == 1 + 5  # the five small files (11 tiles) in one pass; big.png by band
    for i, im in enumerate(images):
        np.testing.assert_array_equal(pixels(tmp_path / "out" / f"{i}.png"),
                                      s.stylize_array(im))


def test_ctrl_c_during_a_shared_pass_leaves_its_files_pending(tmp_path, monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"{i}.png", rgb(seed=i))
    s = Stylizer(Negate(), tile_size=16)

    def interrupt(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(s, "stylize_arrays", interrupt)
    report = C.convert(s, [src], tmp_path / "out")
    assert report.interrupted and report.converted == []
    assert [Path(p).name for p in report.pending] == ["0.png", "1.png", "2.png"]
    assert files(tmp_path / "out") == []
    monkeypatch.undo()
    assert len(C.convert(s, [src], tmp_path / "out").converted) == 3
