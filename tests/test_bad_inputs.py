"""Every odd input and fault of a batch conversion, each ending in a clear outcome.

The stylizer negates pixels (255 − x), so a correct output is known exactly
and can be told apart from a copy of the input.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from skimage import color

from siamgan import convert as C
from siamgan import imagefiles
from siamgan.stylize import Stylizer, TileConfig


class Negate(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def stylizer(generator: torch.nn.Module | None = None) -> Stylizer:
    return Stylizer(generator or Negate(), tile_size=16)


def rgb(h: int = 12, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, im: Image.Image, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kw)
    return path


def run(inputs, out: Path, gen=None, **opts) -> C.ConvertReport:
    return C.convert(stylizer(gen), [Path(p) for p in inputs], out, C.ConvertOptions(**opts))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def failure(report: C.ConvertReport, name: str) -> str:
    reasons = [f["reason"] for f in report.failed if Path(f["input"]).name == name]
    assert len(reasons) == 1, report.failed
    return reasons[0]


def leftovers(folder: Path) -> list[Path]:
    """Temp files an interrupted write could leave behind."""
    return [p for p in folder.rglob(".*") if p.is_file()]


# --- unreadable files: each fails alone, with its reason, the others are converted ---

@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("text.jpg", b"this is not a picture\n" * 20, "not an image"),
    ("ps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
])
def test_unreadable_file_fails_alone(tmp_path, name, content, reason):
    src = tmp_path / "in"
    save(src / "good.png", Image.fromarray(rgb()))
    (src / name).write_bytes(content)
    report = run([src], tmp_path / "out")
    assert reason in failure(report, name)
    assert report.exit_code == 1
    assert [Path(c["input"]).name for c in report.converted] == ["good.png"]
    assert not (tmp_path / "out" / name).exists()


def test_postscript_is_never_handed_to_ghostscript(tmp_path, monkeypatch):
    import subprocess

    def forbidden(*args, **kwargs):
        raise AssertionError("an external program was started")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    path = tmp_path / "in" / "doc.eps"
    path.parent.mkdir()
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    report = run([path], tmp_path / "out")
    assert "not an image in a supported format" in failure(report, "doc.eps")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_halfway(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buf, format=fmt)
    path = tmp_path / "in" / f"cut.{fmt.lower()}"
    path.parent.mkdir()
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    report = run([path.parent], tmp_path / "out")
    assert "corrupt or truncated" in failure(report, path.name)
    assert not (tmp_path / "out" / path.name).exists()


def test_folder_named_like_an_image_is_walked_not_read(tmp_path):
    src = tmp_path / "in"
    (src / "empty.jpg").mkdir(parents=True)
    save(src / "album.png" / "inner.png", Image.fromarray(rgb()))
    report = run([src], tmp_path / "out")
    assert report.failed == []
    assert (tmp_path / "out" / "album.png" / "inner.png").is_file()
    # named explicitly, such a folder is still a folder
    report = run([src / "album.png"], tmp_path / "out2")
    assert (tmp_path / "out2" / "inner.png").is_file()


def test_content_not_matching_extension_is_read_by_content(tmp_path):
    data = rgb()
    path = save(tmp_path / "in" / "really_png.jpg", Image.fromarray(data), "PNG")
    report = run([path.parent], tmp_path / "out")
    out = tmp_path / "out" / "really_png.jpg"
    with Image.open(out) as im:
        assert im.format == "PNG"  # the input's format, kept (no JPEG loss)
    np.testing.assert_array_equal(pixels(out), 255 - data)
    assert any("content is PNG" in w for w in report.converted[0]["warnings"])


# --- decompression bombs ---

def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG that claims a huge greyscale image."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "in" / "bomb.png"
    path.parent.mkdir()
    path.write_bytes(png_declaring(40_000, 40_000))  # 1.6 gigapixels
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self))
    limit_before = Image.MAX_IMAGE_PIXELS
    report = run([path], tmp_path / "out")
    reason = failure(report, "bomb.png")
    assert "--max-pixels" in reason and "refused before decoding" in reason
    assert loads == []
    assert Image.MAX_IMAGE_PIXELS == limit_before  # set only while converting


def test_max_pixels_refuses_and_override_allows(tmp_path):
    path = save(tmp_path / "in" / "big.png", Image.new("L", (600, 500), 7))
    report = run([path], tmp_path / "out", max_pixels=200_000)
    assert "600×500" in failure(report, "big.png")
    report = run([path], tmp_path / "out", max_pixels=100_000)  # Pillow's own guard fires
    assert "refused before decoding" in failure(report, "big.png")
    assert "--max-pixels" in failure(report, "big.png")
    report = run([path], tmp_path / "out", max_pixels=1_000_000,
                 tiling=TileConfig(tile_size=128))
    assert report.failed == [] and len(report.converted) == 1
    assert pixels(tmp_path / "out" / "big.png").shape == (500, 600, 3)


# --- orientation, colour modes, bit depths ---

@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied_and_cleared(tmp_path, orientation):
    im = Image.fromarray(rgb(10, 16))
    exif = Image.Exif()
    exif[imagefiles.ORIENTATION] = orientation
    exif[0x010F] = "TestCam"
    path = save(tmp_path / "in" / "o.png", im, exif=exif.tobytes())
    run([path], tmp_path / "out")
    with Image.open(path) as original:
        upright = np.asarray(ImageOps.exif_transpose(original))
    out = tmp_path / "out" / "o.png"
    np.testing.assert_array_equal(pixels(out), 255 - upright)
    with Image.open(out) as im:
        assert imagefiles.ORIENTATION not in im.getexif()
        assert im.getexif()[0x010F] == "TestCam"
    if orientation != 3:
        assert pixels(out).shape[:2] == (16, 10)


def grey_ramp(h: int = 6, w: int = 7) -> np.ndarray:
    return np.linspace(0, 1, h * w).reshape(h, w)


def _mode_cases():
    g = (grey_ramp() * 255).round().astype(np.uint8)
    a = g[::-1].copy()
    pal = Image.fromarray(g).convert("P")
    pal_t = pal.copy()
    pal_t.info["transparency"] = int(np.asarray(pal)[0, 0])
    return {
        "1": (Image.fromarray(g > 127), np.where(g > 127, 255, 0), None),
        "L": (Image.fromarray(g), g, None),
        "LA": (Image.merge("LA", [Image.fromarray(g), Image.fromarray(a)]), g, a),
        "P": (pal, np.asarray(pal.convert("L")), None),
        "P+transparency": (pal_t, np.asarray(pal_t.convert("RGBA"))[..., 0],
                           np.asarray(pal_t.convert("RGBA"))[..., 3]),
        "RGBA": (Image.merge("RGBA", [Image.fromarray(g)] * 3 + [Image.fromarray(a)]), g, a),
    }


@pytest.mark.parametrize("case", list(_mode_cases()))
def test_colour_modes(tmp_path, case):
    im, grey, alpha = _mode_cases()[case]
    path = save(tmp_path / "in" / "m.png", im,
                transparency=im.info["transparency"] if "transparency" in im.info else None)
    report = run([path], tmp_path / "out")
    assert report.failed == []
    out = pixels(tmp_path / "out" / "m.png")
    np.testing.assert_array_equal(out[..., :3], 255 - np.repeat(grey[..., None], 3, 2))
    if alpha is None:
        assert out.shape[2] == 3
    else:
        np.testing.assert_array_equal(out[..., 3], alpha)  # alpha kept, not stylized


@pytest.mark.parametrize("mode, values, fmt, expected", [
    # 16-bit: the type's full range, so the brightest value stays white, mid stays mid
    ("I;16", (grey_ramp() * 65535).astype(np.uint16), "PNG", grey_ramp() * 255),
    ("I", (grey_ramp() * 65535).astype(np.int32), "TIFF", grey_ramp() * 255),
    ("I", (grey_ramp() * 4e6 - 1e6).astype(np.int32), "TIFF", grey_ramp() * 255),  # min–max
    ("F", grey_ramp().astype(np.float32), "TIFF", grey_ramp() * 255),
    ("F", (grey_ramp() * 900 - 100).astype(np.float32), "TIFF", grey_ramp() * 255),
])
def test_high_bit_depth_is_scaled_not_clipped(tmp_path, mode, values, fmt, expected):
    im = Image.fromarray(values)
    path = save(tmp_path / "in" / f"deep.{fmt.lower()}", im, fmt)
    with Image.open(path) as check:
        assert check.mode == mode
    run([path], tmp_path / "out")
    out = pixels(tmp_path / "out" / path.name).astype(int)
    want = 255 - np.round(expected).astype(int)
    assert np.abs(out[..., 0] - want).max() <= 1
    assert out[..., 0].min() <= 1 and out[..., 0].max() >= 254  # full range, not clipped


def cmyk_profile() -> bytes:
    """A minimal ICC v2 CMYK input profile (A2B0 lut16 → Lab) in which cyan
    absorbs *blue* and yellow absorbs *red*: easy to tell from a naive conversion."""
    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))
    grid = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    rgb_ = [(1 - y) * (1 - k), (1 - m) * (1 - k), (1 - c) * (1 - k)]
                    lab = color.rgb2lab(np.array([[rgb_]], float), illuminant="D50")[0, 0]
                    grid += [lab[0] * 652.8, (lab[1] + 128) * 256, (lab[2] + 128) * 256]
    grid = [min(max(round(v), 0), 65535) for v in grid]
    lut = b"mft2" + b"\0" * 4 + bytes([4, 3, 2, 0])
    lut += b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1)) + struct.pack(">HH", 2, 2)
    lut += struct.pack(">8H", *[0, 65535] * 4) + struct.pack(f">{len(grid)}H", *grid)
    lut += struct.pack(">6H", *[0, 65535] * 3)
    text = b"test cmyk\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 79
    white = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + b"\0" * 4 + white), (b"A2B0", lut)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0])
              + b"scnrCMYKLab " + b"\0" * 12 + b"acsp" + b"\0" * 28 + white + b"\0" * 4)
    return header.ljust(128, b"\0") + table + data


def test_cmyk_goes_through_its_icc_profile(tmp_path):
    im = Image.new("CMYK", (8, 6), (255, 0, 0, 0))  # pure cyan
    path = save(tmp_path / "in" / "cmyk.jpg", im, "JPEG", icc_profile=cmyk_profile(),
                quality=100)
    report = run([path], tmp_path / "out", output_format="png")
    assert report.failed == []
    r, g, b = (255 - pixels(tmp_path / "out" / "cmyk.png")[3, 4].astype(int))
    assert r > 200 and b < 100  # through the profile; a naive conversion gives (0, 255, 255)
    with Image.open(tmp_path / "out" / "cmyk.png") as out:
        assert out.mode == "RGB" and "icc_profile" not in out.info  # not the CMYK profile


def test_cmyk_without_profile_is_converted_with_a_warning(tmp_path):
    path = save(tmp_path / "in" / "cmyk.tif", Image.new("CMYK", (8, 6), (255, 0, 0, 0)))
    report = run([path], tmp_path / "out")
    r, g, b = 255 - pixels(tmp_path / "out" / "cmyk.tif")[0, 0].astype(int)
    assert (r, g, b) == (0, 255, 255)
    assert any("without an ICC profile" in w for w in report.converted[0]["warnings"])


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_first_frame_and_warning(tmp_path, fmt):
    frames = [Image.new("RGB", (8, 8), (0, 40 * i, 200)) for i in range(3)]
    path = tmp_path / "in" / f"anim.{fmt.lower()}"
    path.parent.mkdir()
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], lossless=True)
    report = run([path], tmp_path / "out")
    assert "only the first frame" in " ".join(report.converted[0]["warnings"])
    with Image.open(tmp_path / "out" / path.name) as out:
        assert getattr(out, "n_frames", 1) == 1
        first = np.asarray(out.convert("RGB"))[4, 4].astype(int)
    assert np.abs(first - (255 - np.array([0, 0, 200]))).max() <= 8


@pytest.mark.parametrize("h, w", [(1, 1), (1, 9), (9, 1), (17, 23), (5, 6)])
def test_tiny_and_odd_sizes(tmp_path, h, w):
    data = rgb(h, w)
    path = save(tmp_path / "in" / "s.png", Image.fromarray(data))
    report = run([path], tmp_path / "out")  # tile 16: most are smaller than a tile
    assert report.failed == []
    np.testing.assert_array_equal(pixels(tmp_path / "out" / "s.png"), 255 - data)


# --- faults while writing ---

def _three(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    src = tmp_path / "in"
    data = [rgb(seed=i) for i in range(3)]
    for i, d in enumerate(data):
        save(src / f"{i}.png", Image.fromarray(d))
    return src, data


def test_read_only_output_folder_is_a_usage_error(tmp_path, monkeypatch):
    src, _ = _three(tmp_path)
    out = tmp_path / "out"
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir).resolve().is_relative_to(out.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    with pytest.raises(C.ConvertError, match="cannot write to output folder .*Permission"):
        run([src], out)
    # a read-only subfolder fails its own files only
    save(src / "sub" / "3.png", Image.fromarray(rgb()))
    out = tmp_path / "out2" / "sub"
    report = run([src], tmp_path / "out2")
    assert "cannot write: Permission denied" in failure(report, "3.png")
    assert len(report.converted) == 3 and not report.stopped


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder_for_real(tmp_path):
    src, _ = _three(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(C.ConvertError, match="cannot write"):
            run([src], out)
    finally:
        out.chmod(0o755)


KILLED_MID_WRITE = """
import os, signal, sys
from siamgan.runs import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"half an image")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temp_files_of_a_killed_run_are_removed_on_the_next_run(tmp_path):
    src = tmp_path / "in"
    data = rgb(seed=3)
    save(src / "a.png", Image.fromarray(data))
    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(out / "a.png")])
    assert killed.returncode == -signal.SIGKILL
    stale = leftovers(out)
    assert len(stale) == 1 and not (out / "a.png").exists()
    live = out / f".a.png.{os.getpid()}.abcdefgh.tmp"  # a write still in progress
    live.write_bytes(b"")
    report = run([src], out)
    assert report.cleaned == [str(stale[0])] and "removed 1 temp file" in report.summary()
    assert leftovers(out) == [live]
    np.testing.assert_array_equal(pixels(out / "a.png"), 255 - data)


def test_disk_full_stops_cleanly_and_rerun_finishes(tmp_path, monkeypatch):
    src, data = _three(tmp_path)
    out = tmp_path / "out"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    report = run([src], out)
    assert "No space left on device" in failure(report, "1.png")
    assert report.stopped and report.exit_code == 1
    assert not (out / "1.png").exists() and leftovers(out) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = run([src], out)
    assert len(again.skipped) + len(again.converted) == 3 and again.failed == []
    for i, d in enumerate(data):
        np.testing.assert_array_equal(pixels(out / f"{i}.png"), 255 - d)


def test_permission_denied_on_one_input(tmp_path, monkeypatch):
    src, _ = _three(tmp_path)
    real_open = open

    def guarded(path, *args, **kw):
        if Path(path).name == "1.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(imagefiles, "open", guarded, raising=False)
    report = run([src], tmp_path / "out")
    assert "permission denied" in failure(report, "1.png")
    assert sorted(Path(c["input"]).name for c in report.converted) == ["0.png", "2.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied_for_real(tmp_path):
    src, _ = _three(tmp_path)
    (src / "1.png").chmod(0)
    report = run([src], tmp_path / "out")
    assert "permission denied" in failure(report, "1.png")


class FlakyGenerator(torch.nn.Module):
    """Negates, but raises out-of-memory on chosen calls (or on all-black tiles)."""

    def __init__(self, fail_calls=(), on_black=False, error=RuntimeError):
        super().__init__()
        self.calls, self.fail_calls, self.on_black, self.error = 0, set(fail_calls), on_black, error

    def forward(self, x):
        self.calls += 1
        black_tile = bool((x == -1).flatten(1).all(1).any())
        if self.calls in self.fail_calls or (self.on_black and black_tile):
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return -x


@pytest.mark.parametrize("error", [RuntimeError, torch.cuda.OutOfMemoryError])
def test_out_of_memory_on_one_tile_is_retried_cleanly(tmp_path, error):
    data = rgb(40, 40)
    path = save(tmp_path / "in" / "a.png", Image.fromarray(data))
    gen = FlakyGenerator(fail_calls={2}, error=error)
    report = run([path], tmp_path / "out", gen, tiling=TileConfig(batch_size=2))
    assert report.failed == []
    assert "retried with 1 tiles" in " ".join(report.converted[0]["warnings"])
    np.testing.assert_array_equal(pixels(tmp_path / "out" / "a.png"), 255 - data)


def test_out_of_memory_that_persists_fails_only_that_file(tmp_path):
    src, data = _three(tmp_path)
    save(src / "black.png", Image.new("RGB", (20, 12)))
    report = run([src], tmp_path / "out", FlakyGenerator(on_black=True),
                 tiling=TileConfig(batch_size=4))
    assert "out of memory even with one tile" in failure(report, "black.png")
    assert not (tmp_path / "out" / "black.png").exists()
    for i, d in enumerate(data):
        np.testing.assert_array_equal(pixels(tmp_path / "out" / f"{i}.png"), 255 - d)


def test_ctrl_c_mid_batch_then_rerun_redoes_nothing(tmp_path, monkeypatch):
    src, data = _three(tmp_path)
    out = tmp_path / "out"
    s = stylizer()
    one_by_one = C.ConvertOptions(tiling=TileConfig(batch_size=1))  # no shared passes
    real, calls = s.stylize_array, []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(s, "stylize_array", interrupted)
    report = C.convert(s, [src], out, one_by_one)
    assert report.interrupted and report.exit_code == 130
    assert sorted(p.name for p in out.iterdir()) == ["0.png"]  # nothing half-written
    assert report.pending == [str(src / "1.png"), str(src / "2.png")]
    monkeypatch.undo()
    again = C.convert(s, [src], out)
    assert [Path(x["input"]).name for x in again.skipped] == ["0.png"]
    assert [Path(x["input"]).name for x in again.converted] == ["1.png", "2.png"]
    for i, d in enumerate(data):
        np.testing.assert_array_equal(pixels(out / f"{i}.png"), 255 - d)
