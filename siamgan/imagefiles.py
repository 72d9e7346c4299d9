"""Reading and writing image files for batch conversion, metadata included.

Decoding turns any supported file into an upright H×W×3 uint8 array plus an
optional alpha plane and the metadata worth carrying over (EXIF without its
orientation tag, an RGB ICC profile, DPI). Encoding writes a stylized array
back, atomically, in the requested format.

What happens to each kind of input is documented in ``docs/batch.md``.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from .runs import atomic_write

READ_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
"""The only Pillow plugins ever tried on an input (never EPS/PostScript or others)."""

WRITE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
"""Values of ``--format`` and the Pillow format each one writes."""

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp",
            "TIFF": ".tif", "GIF": ".gif"}
FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG",
                    ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                    ".gif": "GIF"}

DEFAULT_MAX_PIXELS = 200_000_000
ORIENTATION = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003
# Descriptive tags kept from a TIFF's own tags (its strip/layout tags must not travel).
_TIFF_DESCRIPTIVE = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)


class ImageFileError(Exception):
    """A file cannot be converted; the message says why (the caller adds the path)."""


@dataclass
class Decoded:
    """An input image, upright, ready for the stylizer."""

    rgb: np.ndarray  # H×W×3 uint8
    alpha: np.ndarray | None  # H×W uint8, or None when the image is opaque
    format: str  # Pillow format actually found in the file's content
    exif: bytes | None = None
    icc: bytes | None = None  # only an RGB profile; others are applied or dropped
    dpi: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def megapixels(self) -> float:
        return self.rgb.shape[0] * self.rgb.shape[1] / 1e6


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open images up to ``max_pixels`` while the block runs, then restore.

    Pillow itself refuses images above twice its limit; :func:`decode` refuses
    anything above the limit with a clearer message, before decoding.
    """
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open_regular(path: str, flags: int) -> int:
    """``open``'s opener: a regular file only, opened without blocking.

    A FIFO or a device named like an image would block the read (or never end);
    ``O_NONBLOCK`` makes the open itself return at once, and anything that is not
    a regular file is refused before a single byte is read.
    """
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageFileError(not_regular(mode))
    return fd


def not_regular(mode: int) -> str:
    """Why a file of this ``st_mode`` is never read as an image."""
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return f"{kind}, not a regular file; never opened"


@contextmanager
def _reasons() -> Iterator[None]:
    """Turn any error while decoding into an :class:`ImageFileError` saying why."""
    try:
        yield
    except ImageFileError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageFileError(f"refused before decoding: {e}; raise --max-pixels "
                             "if you trust this file") from e
    except PermissionError as e:
        raise ImageFileError(f"permission denied: {e.strerror or e}") from e
    except IsADirectoryError as e:
        raise ImageFileError("is a folder, not an image file") from e
    except MemoryError as e:
        raise ImageFileError("out of memory while decoding") from e
    except Exception as e:  # every decoder error is this file's problem only
        raise ImageFileError(f"corrupt or truncated image: {type(e).__name__}: {e}") from e


def decode(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read ``path``; raise :class:`ImageFileError` saying what is wrong with it."""
    with _reasons():
        with open(path, "rb", opener=_open_regular) as f:
            if f.seek(0, io.SEEK_END) == 0:
                raise ImageFileError("empty file (0 bytes)")
            f.seek(0)
            return _decode_open(f, path, max_pixels)


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 name: str = "-") -> Decoded:
    """Like :func:`decode`, for an image already read (standard input)."""
    if not data:
        raise ImageFileError("empty input (0 bytes)")
    with _reasons():
        return _decode_open(io.BytesIO(data), Path(name), max_pixels)


def _decode_open(f, path: Path, max_pixels: int) -> Decoded:
    try:
        im = Image.open(f, formats=READ_FORMATS)
    except Image.UnidentifiedImageError as e:
        raise ImageFileError(
            f"not an image in a supported format ({', '.join(READ_FORMATS)})") from e
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageFileError(
                f"declares {w}×{h} = {w * h / 1e6:.0f} megapixels, more than --max-pixels "
                f"{max_pixels}; refused before decoding (raise --max-pixels if you trust it)")
        fmt = "JPEG" if im.format == "MPO" else im.format
        notes = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            im.seek(0)
            notes.append(f"{frames} frames: only the first frame was stylized")
        expected = FORMAT_OF_SUFFIX.get(path.suffix.lower())
        if expected is not None and expected != fmt:
            notes.append(f"content is {fmt} although the name says {path.suffix}; "
                         f"written as {fmt} like the input")
        im.load()
        exif = im.getexif()
        orientation = exif.get(ORIENTATION, 1)
        upright = ImageOps.exif_transpose(im) if orientation in range(2, 9) else im
        rgb, alpha, mode_notes = to_rgb(upright)
        icc = im.info.get("icc_profile") or None
        if icc is not None and _icc_space(icc) != b"RGB ":
            icc = None  # a grey or CMYK profile cannot describe the RGB output
        dpi = im.info.get("dpi")
        if dpi is not None and orientation in (5, 6, 7, 8):
            dpi = (dpi[1], dpi[0])
        return Decoded(rgb, alpha, fmt, _exif_bytes(exif, fmt, rgb.shape), icc,
                       dpi, notes + mode_notes)


def _icc_space(icc: bytes) -> bytes:
    return icc[16:20] if len(icc) >= 20 else b""


def _exif_bytes(exif: Image.Exif, fmt: str, shape: tuple[int, ...]) -> bytes | None:
    """EXIF to write: orientation cleared (it is applied), dimensions updated."""
    if not exif:
        return None
    if fmt == "TIFF":  # a TIFF's tags describe its own layout; keep the descriptive ones
        clean = Image.Exif()
        for tag in _TIFF_DESCRIPTIVE:
            if tag in exif:
                clean[tag] = exif[tag]
        for ifd in (_EXIF_IFD, _GPS_IFD):
            if ifd in exif and exif.get_ifd(ifd):
                clean[ifd] = dict(exif.get_ifd(ifd))
        exif = clean
    exif.pop(ORIENTATION, None)
    if _EXIF_IFD in exif:
        sub = exif.get_ifd(_EXIF_IFD)
        if _PIXEL_X in sub or _PIXEL_Y in sub:
            sub[_PIXEL_X], sub[_PIXEL_Y] = shape[1], shape[0]
    try:
        return exif.tobytes() if exif else None
    except Exception:  # a malformed tag must not cost the picture; drop EXIF instead
        return None


def to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Any supported mode → (H×W×3 uint8, H×W uint8 alpha or None, notes)."""
    mode, notes = im.mode, []
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = scale_to_uint8(np.asarray(im), mode)
        return np.repeat(grey[..., None], 3, axis=2), None, notes
    if mode == "CMYK":
        return _cmyk_to_rgb(im, notes), None, notes
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), notes
    try:
        return np.asarray(im.convert("RGB")), None, notes
    except ValueError as e:
        raise ImageFileError(f"unsupported colour mode {mode}") from e


def scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit and float greyscale to 0–255 instead of clipping.

    16-bit modes use their full range (0–65535 → 0–255). Mode ``I`` is read
    as 16-bit when every value fits 0–65535 (how Pillow hands out 16-bit
    data), otherwise min–max. Mode ``F`` maps 0–1 to 0–255 when every finite
    value lies in 0–1, otherwise min–max. NaN becomes 0.
    """
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    v = np.where(finite, v, np.nan)
    lo = float(np.nanmin(v)) if finite.any() else 0.0
    hi = float(np.nanmax(v)) if finite.any() else 0.0
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        lo, hi = 0.0, 65535.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    scaled = np.nan_to_num((v - lo) / span * 255.0, nan=0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    icc = im.info.get("icc_profile")
    if icc and _icc_space(icc) == b"CMYK":
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            return np.asarray(ImageCms.profileToProfile(im, src, srgb, outputMode="RGB"))
        except (ImageCms.PyCMSError, OSError, ValueError) as e:
            notes.append(f"CMYK ICC profile unusable ({e}); converted without it")
    else:
        notes.append("CMYK without an ICC profile: colours converted naively")
    return np.asarray(im.convert("RGB"))


def encode(path: Path, rgb: np.ndarray, decoded: Decoded, fmt: str,
           quality: int = 95) -> list[str]:
    """Write ``rgb`` (+ the input's alpha and metadata) to ``path`` atomically.

    Returns notes about anything that could not be kept (alpha in JPEG/BMP).
    """
    image, kwargs, notes = _prepare(rgb, decoded, fmt, quality)
    with atomic_write(path) as f:
        image.save(f, format=fmt, **kwargs)
    return notes


def encode_bytes(rgb: np.ndarray, decoded: Decoded, fmt: str,
                 quality: int = 95) -> tuple[bytes, list[str]]:
    """Like :func:`encode`, into memory (for standard output)."""
    image, kwargs, notes = _prepare(rgb, decoded, fmt, quality)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue(), notes


def _prepare(rgb: np.ndarray, decoded: Decoded, fmt: str,
             quality: int) -> tuple[Image.Image, dict, list[str]]:
    """The image to save, Pillow's options for ``fmt``, and notes on what was lost."""
    notes: list[str] = []
    image = Image.fromarray(rgb, "RGB")
    alpha = decoded.alpha
    if alpha is not None and alpha.min() == 255:
        alpha = None  # fully opaque: nothing to keep
    if alpha is not None and fmt in ("JPEG", "BMP"):
        white = Image.new("RGB", image.size, (255, 255, 255))
        image = Image.composite(image, white, Image.fromarray(alpha, "L"))
        notes.append(f"{fmt} cannot hold transparency: flattened onto white")
        alpha = None
    kwargs: dict = {}
    if fmt == "GIF":
        image = _to_gif(image, alpha, kwargs)
    elif alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    if decoded.icc:
        kwargs["icc_profile"] = decoded.icc
    if decoded.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["exif"] = decoded.exif
    if decoded.dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        kwargs["dpi"] = tuple(float(d) for d in decoded.dpi)
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if fmt == "TIFF":
        kwargs["compression"] = "tiff_lzw"
    return image, kwargs, notes


def _to_gif(image: Image.Image, alpha: np.ndarray | None, kwargs: dict) -> Image.Image:
    """Quantize to a palette; transparent pixels (alpha < 128) get their own index."""
    if alpha is None:
        return image.quantize(256)
    pal = image.quantize(255)
    idx = np.asarray(pal).copy()
    idx[alpha < 128] = 255
    out = Image.fromarray(idx, "P")
    out.putpalette(pal.getpalette()[: 255 * 3] + [0, 0, 0])
    kwargs["transparency"] = 255
    return out
