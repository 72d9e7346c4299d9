"""Tiling as pure functions: cutting images into S×S tiles and putting them back.

Two users:

* the Combo model (training) cuts 2S×2S crops into four tiles and reassembles
  them (:func:`split_grid` / :func:`merge_grid`);
* inference (:func:`tiled_apply`) walks an image of any size one *band* of tile
  rows at a time, so memory is bounded by ``tile_size × width``, never by the
  image area. The padded image is never materialised: band rows and columns are
  gathered through reflected indices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import pyramid
from .flow import STREAK_MARGIN, streak_noise
from .images import model_range_array, pixels_from_array, quantize, to_model_range

if TYPE_CHECKING:  # the training half of this module needs torch; inference does not
    import torch

NOISE_SCALE = 3**0.5
"""Half-width of a generator's uniform noise input: unit variance."""

TileFn = Callable[["torch.Tensor"], "torch.Tensor"]
"""Maps a batch of tiles (N×3×S×S, float32 in [-1, 1]) to the same shape, on the same
device (the CPU, or :func:`tiled_apply`'s ``device``)."""


class TileRunner:
    """One way to run a batch of tiles, on NumPy arrays: N×3×S×S float32 in [-1, 1] in,
    the same shape out. :func:`tiled_apply` hands such a runner NumPy arrays (and a plain
    function torch tensors); :class:`siamgan.stylize.TorchRunner` runs a torch generator,
    :class:`siamgan.runtime.OnnxRunner` an ONNX model. Subclasses define ``__call__``."""

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NumpyTiles(TileRunner):
    """A plain function on NumPy tile batches, as a :class:`TileRunner`."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.fn(tiles)


def split_grid(x: torch.Tensor, tile: int) -> torch.Tensor:
    """B×C×(r·S)×(c·S) → (B·r·c)×C×S×S, tiles in row-major order per image."""
    b, ch, h, w = x.shape
    if h % tile or w % tile:
        raise ValueError(f"{h}×{w} is not a whole number of {tile}-pixel tiles")
    r, c = h // tile, w // tile
    x = x.reshape(b, ch, r, tile, c, tile).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * r * c, ch, tile, tile)


def merge_grid(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`split_grid`: (B·r·c)×C×S×S → B×C×(r·S)×(c·S)."""
    n, ch, s, s2 = tiles.shape
    if n % (rows * cols):
        raise ValueError(f"{n} tiles do not make whole {rows}×{cols} grids")
    b = n // (rows * cols)
    x = tiles.reshape(b, rows, cols, ch, s, s2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, ch, rows * s, cols * s2)


def combo(generator: TileFn, crops: torch.Tensor, tile: int) -> torch.Tensor:
    """The Combo model: cut each crop into tiles, translate every tile, reassemble.

    A discriminator that sees only the reassembled images punishes any seam
    between tiles, which is what makes tiled inference seamless.
    """
    rows, cols = crops.shape[-2] // tile, crops.shape[-1] // tile
    return merge_grid(generator(split_grid(crops, tile)), rows, cols)


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions into [0, n) by mirror reflection (edge not repeated)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx)


def noise_field(rows: np.ndarray, cols: np.ndarray, seed: int = 0) -> np.ndarray:
    """The noise channel of a generator with a noise input at picture pixels ``rows`` ×
    ``cols``: a len(rows)×len(cols) float32 array, uniform with unit variance.

    Each value is a hash of its pixel's position and ``seed`` (MurmurHash3's
    finaliser), not a draw: every tile and band that holds a pixel gives it the same
    value, so tiles agree where they overlap, and a picture always paints the same.
    """
    r = np.asarray(rows, np.int64).astype(np.uint32)[:, None] * np.uint32(0x9E3779B1)
    c = np.asarray(cols, np.int64).astype(np.uint32)[None, :] * np.uint32(0x85EBCA77)
    v = r ^ c ^ np.uint32((seed * 0xC2B2AE3D + 0x27D4EB2F) & 0xFFFFFFFF)
    v ^= v >> np.uint32(16)
    v *= np.uint32(0x85EBCA6B)
    v ^= v >> np.uint32(13)
    v *= np.uint32(0xC2B2AE35)
    v ^= v >> np.uint32(16)
    unit = (v >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)  # [0, 1)
    return ((unit * 2 - 1) * NOISE_SCALE).astype(np.float32)


def _streak_band(pixels: np.ndarray, y: int, tile: int, padded_w: int, seed: int,
                 origin: tuple[int, int]) -> np.ndarray:
    """The streaked noise field of the band of rows ``y … y + tile`` (tile×padded_w):
    :func:`noise_field` laid along the picture's contours, read with a margin."""
    h, w = pixels.shape[:2]
    m = STREAK_MARGIN
    rows = reflect_index(np.arange(y - m, y + tile + m), h)
    cols = reflect_index(np.arange(-m, padded_w + m), w)
    guide = pyramid.luma(pixels[rows][:, cols]).astype(np.float32)
    field = streak_noise(guide, noise_field(rows - origin[0], cols - origin[1], seed))
    return field[m:-m, m:-m]


def shift_averaged(pixels: np.ndarray, paint: Callable[..., np.ndarray],
                   shifts: Sequence[tuple[int, int]],
                   on_band: Callable[[int], None] | None = None) -> np.ndarray:
    """The mean of ``paint`` over copies of an H×W×3 uint8 picture shifted down and right
    by each ``(dy, dx)`` px (its edge rows and columns repeated), each result shifted
    back; H×W×3 uint8.

    A generator that works on a coarser grid inside (:class:`siamgan.models.PatchGenerator`
    on a 4-px one) lays slanted edges along that grid as small steps; where the output
    is magnified they become a staircase. Shifted by half the grid, the steps fall
    elsewhere, and the mean smooths them. ``paint(picture, on_band=..., origin=...)``
    paints one copy (:func:`tiled_apply` with its other arguments bound; ``origin`` is
    the shift, so a noise input stays on the picture's pixels and only G's grid moves);
    ``on_band`` follows the last one only. One shift ``(0, 0)`` paints the picture
    itself, with no float copy.
    """
    if not shifts:
        raise ValueError("at least one shift")
    if list(shifts) == [(0, 0)]:
        return paint(pixels, on_band=on_band)
    h, w = pixels.shape[:2]
    total = np.zeros(pixels.shape, np.float32)
    for i, (dy, dx) in enumerate(shifts):
        shifted = np.pad(pixels, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
        last = i == len(shifts) - 1
        painted = paint(shifted, on_band=on_band if last else None, origin=(dy, dx))
        total += painted[dy:dy + h, dx:dx + w]
    return np.clip(np.round(total / len(shifts)), 0, 255).astype(np.uint8)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start positions of tiles of size ``tile`` every ``stride`` covering ``length``."""
    count = 1 if length <= tile else 1 + -(-(length - tile) // stride)
    return [i * stride for i in range(count)]


BLENDS = ("feather", "crop")
"""How overlapping tiles are combined; see :func:`blend_window`."""


def blend_window(tile: int, overlap: int, blend: str = "feather", first: bool = False,
                 last: bool = False) -> np.ndarray:
    """1-D weights of a tile's pixels where tiles overlap, never 0.

    ``feather``: a linear ramp over ``overlap`` pixels at each end, so neighbours
    cross-fade. ``crop``: each pixel comes from the tile whose centre holds it; the
    ``overlap`` pixels shared with a neighbour are split between them, half each
    (Real-ESRGAN's tile padding), so every kept pixel had ``overlap/2`` pixels of
    real surroundings on each side. The ``first`` and ``last`` tiles of a row or
    column also keep their outer margin, which no other tile covers as well.
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if overlap <= 0:
        return np.ones(tile, np.float32)
    t = np.arange(tile, dtype=np.float32) + 0.5
    if blend == "crop":
        lo, hi = overlap // 2, tile - (overlap - overlap // 2)
        keep = ((t > lo) | first) & ((t < hi) | last)
        return np.where(keep, 1.0, 1e-6).astype(np.float32)
    ramp = np.minimum(t / overlap, (tile - t) / overlap)
    return np.clip(ramp, 0.0, 1.0).astype(np.float32)


class _NumpyArrays:
    """The tiler's array operations on the host, in NumPy."""

    def __init__(self) -> None:
        self.zeros = lambda *shape: np.zeros(shape, np.float32)
        self.index = lambda a: a
        self.stack, self.cat = np.stack, np.concatenate
        self.window = lambda w: w

    def source(self, pixels: np.ndarray) -> np.ndarray:
        return pixels

    def model_range(self, band: np.ndarray) -> np.ndarray:
        return model_range_array(band)

    def emit(self, values: np.ndarray) -> np.ndarray:
        return pixels_from_array(values)

    def result(self, out: np.ndarray) -> np.ndarray:
        return out


class _TorchArrays:
    """The same operations in torch, on ``device`` (for torch tile functions and GPUs)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.dev = dev = torch.device(device or "cpu")
        self.host = device is None
        self.zeros = lambda *shape: torch.zeros(shape, device=dev)
        self.index = (lambda a: a) if self.host else (lambda a: torch.as_tensor(a, device=dev))
        self.stack, self.cat = torch.stack, torch.cat
        self.window = lambda w: torch.from_numpy(w).to(dev)
        self._torch = torch

    def source(self, pixels: np.ndarray) -> Any:
        return pixels if self.host else self._torch.tensor(pixels, device=self.dev)

    def model_range(self, band: Any) -> Any:
        return to_model_range(band)  # looked up here, so tests can watch it

    def emit(self, values: Any) -> Any:
        return quantize(values.detach().cpu()).numpy() if self.host else quantize(values)

    def result(self, out: Any) -> np.ndarray:
        return out if self.host else out.cpu().numpy()


def _batches(tiles: Any, batch_size: int) -> Iterator[Any]:
    for i in range(0, tiles.shape[0], batch_size):
        yield tiles[i : i + batch_size]


def tiled_apply(
    pixels: np.ndarray,
    fn: TileRunner | TileFn,
    tile: int,
    overlap: int = 0,
    batch_size: int = 16,
    on_band: Callable[[int], None] | None = None,
    blend: str = "feather",
    device: torch.device | str | None = None,
    noise: int | None = None,
    origin: tuple[int, int] = (0, 0),
    streaks: bool = False,
) -> np.ndarray:
    """Run ``fn`` over an H×W×3 uint8 image tile by tile; return H×W×3 uint8.

    The image is reflect-padded (virtually) to whole tiles. With ``overlap > 0``
    neighbouring tiles overlap by that many pixels and are combined as ``blend``
    says (:func:`blend_window`); with ``overlap == 0`` tiles abut exactly as in training.
    Only one band of tile rows is ever held as float32.
    ``on_band(rows_done)`` is called after each band, for progress bars.

    ``fn`` is a :class:`TileRunner` (NumPy batches: the tiling runs in NumPy, with no
    torch) or a plain function on torch tensors (the tiling runs in torch). With a
    ``device`` (a GPU; torch functions only), the uint8 image is copied there once and
    the bands are gathered, blended and rounded there, so the host only sends the
    image and receives the result; the float32 memory is still one band. The
    arithmetic is written once, below, and is the same operation by operation
    whichever array library runs it.

    ``noise``, for a generator with a noise input: each tile gets a fourth channel,
    :func:`noise_field` of its pixels' positions with this seed (N×4×S×S in, N×3×S×S
    out), counted from ``origin`` (row, column): a copy of a picture shifted down and
    right by ``origin`` (:func:`shift_averaged`) sees the noise where the picture does.
    With ``streaks`` that field is laid along the picture's contours
    (:func:`siamgan.flow.streak_noise`), a band at a time with
    :data:`~siamgan.flow.STREAK_MARGIN` px of context, so every band equals the whole.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError("tiled_apply expects an H×W×3 uint8 array")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile}), got {overlap}")
    if isinstance(fn, TileRunner):
        if device is not None:
            raise ValueError("a TileRunner runs on the host; pass no device")
        xp: Any = _NumpyArrays()
    else:
        xp = _TorchArrays(device)
    h, w = pixels.shape[:2]
    stride = tile - overlap
    ys, xs = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
    padded_w = xs[-1] + tile
    src = xp.source(pixels)
    col_index = reflect_index(np.arange(padded_w), w)
    cols = xp.index(col_index)

    def window(i: int, n: int) -> Any:  # of tile i of n along one axis
        return xp.window(blend_window(tile, overlap, blend, i == 0, i == n - 1))

    win_x = [window(j, len(xs)) for j in range(len(xs))]
    col_weight = xp.zeros(padded_w)
    for x, wx in zip(xs, win_x):
        col_weight[x : x + tile] += wx

    out = None
    # Accumulators for the band being finished: values and weights of tile rows
    # that overlap it. They hold `tile` rows, shifted up by `stride` per band.
    acc = xp.zeros(3, tile, padded_w)
    acc_w = xp.zeros(tile, 1)
    for i, y in enumerate(ys):
        row_index = reflect_index(np.arange(y, y + tile), h)
        rows = xp.index(row_index)
        band = xp.model_range(src[rows][:, cols])  # 3×S×padded_w
        if noise is not None:
            field = (_streak_band(pixels, y, tile, padded_w, noise, origin) if streaks else
                     noise_field(row_index - origin[0], col_index - origin[1], noise))[None]
            band = xp.cat([band, xp.window(field)])
        tiles = xp.stack([band[:, :, x : x + tile] for x in xs])
        outs = xp.cat([fn(b) for b in _batches(tiles, batch_size)])
        expected = (len(xs), 3, tile, tile)
        if tuple(outs.shape) != expected:
            raise RuntimeError(f"tile function returned {tuple(outs.shape)}, "
                               f"expected {expected}")
        wy = window(i, len(ys))[:, None]
        for x, wx, o in zip(xs, win_x, outs):
            acc[:, :, x : x + tile] += o * (wy * wx)
        acc_w += wy
        last = i == len(ys) - 1
        done = tile if last else stride
        top, bottom = y, min(y + done, h)
        if bottom > top:
            n = bottom - top
            blended = xp.emit((acc[:, :n] / (acc_w[:n] * col_weight))[:, :, :w])
            if out is None:  # same kind of array as emit gives (host or device)
                out = (np.empty_like(pixels) if isinstance(blended, np.ndarray)
                       else xp._torch.empty_like(src))
            out[top:bottom] = blended
        acc = xp.cat([acc[:, done:], xp.zeros(3, done, padded_w)], 1)
        acc_w = xp.cat([acc_w[done:], xp.zeros(done, 1)])
        if on_band is not None:
            on_band(bottom)
        if bottom >= h:
            break
    return xp.result(out)
