"""Stylizers: a trained generator applied to images of any size, tile by tile.

:class:`Painter` holds everything but the generator: the stroke-scale rungs, the tiling
(:func:`siamgan.tiling.tiled_apply`, the one tiler), the composition and the palette,
all in NumPy. Its subclasses differ only in how they run a batch of tiles:
:class:`Stylizer` with the torch generator (the full install), and
:class:`siamgan.onnx_style.OnnxStylizer` with onnxruntime (the light install, no
torch). :func:`load_stylizer` picks one. torch is imported only when a torch
stylizer is made.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from . import pyramid
from .detail import DETAIL_LEVELS, match_detail
from .flow import lay_along_forms
from .images import resize
from .palette import Palette, check_strength, match_palette
from .tiling import BLENDS, NumpyTiles, shift_averaged, tile_starts, tiled_apply
from .weights_io import WeightsError, check_style_config, find_style

if TYPE_CHECKING:
    import torch

    from .models import PatchGenerator

STROKES = ("picture", "pixel")
"""How ``--scale`` is read: relative to the picture (the style's stroke scale) or to
the input's pixels (the input resized by it)."""

DEFAULT_STROKES = {"picture_side": 256, "detail": 0.5}
"""Stroke scale of a style that records none: its paintings were 256-px pictures."""

DEFAULT_OVERLAP = 1 / 8
"""How much neighbouring tiles cross-fade by default, as a share of the tile (rounded to
a multiple of 4 px: 8 px for 64-px tiles). On the Combo model's abutting tiles, flat
areas of large photos kept a faint seam (score 1.26 at pitch 64 on one of the 12
development photos); 8 px brings it to 1.23 (``docs/strokes.md``)."""

GRID_SHIFTS = ((0, 0), (2, 2))
"""With ``shift_average``: the shifts (px) of the passes averaged on a magnified rung,
half the generator's 4-px inner grid (two stride-2 convolutions) along the diagonal
(:func:`siamgan.tiling.shift_averaged`)."""

SHIFT_MAGNIFIED = 3.0
"""Rungs the output magnifies this many times or more get ``shift_average``: there the
generator's grid steps (4 px on the rung) would be 12 px or more in the output."""

COARSE_CONTEXT = 0.125
"""Coarse rungs keep each tile's centre, with this share of the pitch of real
surroundings on each side (8 px for 64-px tiles; ``--seamless`` uses 1/4): enough to
hide their seams, which the output magnifies, for 1.56× their tiles' work, not 2.25×."""

PRECISIONS = ("float32", "bfloat16")
"""How the generator computes; ``bfloat16``: see :func:`bfloat16_convolutions`."""

RUNTIMES = ("auto", "onnx", "torch")
"""What runs the generator: onnxruntime (a style's ``.onnx``), torch (its
``.safetensors``), or ``auto`` (see :func:`load_stylizer`)."""

FULL_INSTALL = "pip install 'siamgan[train]'"
"""What to install for everything beyond stylizing with ONNX models."""


def has_torch() -> bool:
    """Whether torch is installed (the full install), without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # an import hook that refuses it
        return False


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TileConfig:
    """How an image is tiled at inference.

    ``tile_size`` None means the style's own tile size (what it was trained
    at). ``overlap`` is in pixels; None (the default) means ⅛ of the tile
    (:data:`DEFAULT_OVERLAP`; ``seamless`` sets its own), and 0 abuts tiles exactly as
    the Combo model did in training. ``scale`` is the brush size: with ``strokes``
    ``"picture"`` (the default) 1 paints strokes as large, relative to the picture,
    as in the style's paintings, and smaller values give larger strokes
    (:mod:`siamgan.pyramid`: a coarse painting at that scale, plus finer rungs'
    detail weighted by ``detail``, None meaning the style's own); with
    ``"pixel"`` the input is simply resized by ``scale``, painted and resized back.
    The output always has the input's size. ``blend`` is how
    overlapping tiles combine (:func:`siamgan.tiling.blend_window`). ``seamless``
    keeps the tile pitch but runs tiles 1.5× as wide and keeps only their centres
    (``blend="crop"``): every kept pixel has a quarter tile of real surroundings,
    which hides the seams, for about 2.25× the model work (:meth:`Stylizer.layout`).
    ``match_detail`` (``"picture"`` strokes, styles that record ``photo_detail``) raises
    the coarsest rung's fine detail to the level of the photos the style learnt from,
    before it is painted (:func:`siamgan.detail.match_detail`).
    ``shift_average`` paints each rung that the output magnifies
    :data:`SHIFT_MAGNIFIED` times or more twice, the second time shifted by half the
    generator's inner grid, and averages them: slanted edges painted as small steps
    would otherwise be magnified into a staircase (:data:`GRID_SHIFTS`).
    ``photo_edges`` enlarges each such rung with the photo's edges (a guided
    upsampling, :func:`siamgan.pyramid.guided_coefficients`) instead of a bicubic
    one: the generator's steps along edges, magnified, are the rest of the staircase.
    ``flow`` lays the coarsest painting's fine texture, when the output magnifies it,
    along the photo's brightness contours (:func:`siamgan.flow.lay_along_forms`): short
    strokes that follow the forms instead of the generator's one diagonal dab.
    ``palette`` is the strength (0 to 1) of the palette match after the generator
    (:func:`siamgan.palette.match_palette`); None means the style's own default, and
    a style without a recorded palette gets none.
    """

    tile_size: int | None = None
    overlap: int | None = None
    scale: float = 1.0
    batch_size: int = 16
    blend: str = "feather"
    seamless: bool = False
    palette: float | None = None
    strokes: str = "picture"
    detail: float | None = None
    match_detail: bool = True
    shift_average: bool = True
    photo_edges: bool = True
    flow: bool = True

    def __post_init__(self) -> None:
        if self.strokes not in STROKES:
            raise ValueError(f"strokes must be one of {', '.join(STROKES)}")
        if self.detail is not None and not 0 <= self.detail <= 2:
            raise ValueError("detail must be between 0 and 2")
        if self.palette is not None:
            check_strength(self.palette)
        if self.tile_size is not None and (self.tile_size < 4 or self.tile_size % 4):
            raise ValueError("tile_size must be a positive multiple of 4")
        if self.overlap is not None and self.overlap < 0:
            raise ValueError("overlap must be ≥ 0")
        if not 0.01 <= self.scale <= 8:
            raise ValueError("scale must be between 0.01 and 8")
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}")
        if self.seamless and (self.overlap or self.blend != "feather"):
            raise ValueError("seamless sets the overlap and the blend itself")


def _to_bfloat16(module: torch.nn.Module, args: tuple) -> tuple:
    import torch

    return (args[0].to(torch.bfloat16), *args[1:])


def _to_float32(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out.float()


def bfloat16_convolutions(generator: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``generator`` whose bulk convolutions compute in bfloat16.

    Those are the convolutions after the encoder (after the last strided one)
    except the very last: for the default generator the residual blocks and
    the decoder, 86 % of the multiply-adds. Their weights are stored in bf16,
    their inputs rounded to it, and their outputs go back to float32 at once,
    so norms, activations and residual sums stay float32. The encoder stays
    float32 because rounding there is amplified by everything after it: on the
    trained vangogh style this keeps the output within 9 uint8 levels of
    float32 (mean 0.16), where bf16 autocast over everything was up to 72
    levels off (mean 0.56) at the same speed (``docs/performance.md``).
    """
    import torch

    gen = copy.deepcopy(generator)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    strided = [i for i, conv in enumerate(convs) if max(conv.stride) > 1]
    first = strided[-1] + 1 if strided else 1
    for conv in convs[first:-1]:
        conv.to(torch.bfloat16)
        conv.register_forward_pre_hook(_to_bfloat16)
        conv.register_forward_hook(_to_float32)
    return gen


def check_strokes(strokes: dict) -> dict:
    """A style's stroke scale, checked: ``picture_side`` 16–4096 px, ``detail`` 0–2,
    and, if present, ``photo_detail`` (:func:`siamgan.detail.match_detail`)."""
    if not isinstance(strokes, dict):
        raise TypeError("strokes must be an object")
    side, detail = strokes.get("picture_side", 256), strokes.get("detail", 0.5)
    if isinstance(side, bool) or not isinstance(side, int) or not 16 <= side <= 4096:
        raise ValueError(f"picture_side must be an integer from 16 to 4096, got {side!r}")
    if isinstance(detail, bool) or not isinstance(detail, int | float) or not 0 <= detail <= 2:
        raise ValueError(f"detail must be a number from 0 to 2, got {detail!r}")
    found = strokes.get("photo_detail")
    if found is not None and not (
            isinstance(found, list) and 1 <= len(found) <= DETAIL_LEVELS
            and all(isinstance(v, int | float) and not isinstance(v, bool)
                    and 0 <= v <= 1000 for v in found)):
        raise ValueError(f"photo_detail must be 1 to {DETAIL_LEVELS} numbers "
                         f"from 0 to 1000, got {found!r}")
    return strokes


def load_style(name_or_path: str | Path) -> tuple[PatchGenerator, dict, Path]:
    """A style's generator (weights loaded, CPU), its JSON config and its weights file."""
    from .models import GeneratorConfig, PatchGenerator
    from .weights_io import check_state, load_weights

    path = find_style(str(name_or_path))
    if path.suffix.lower() == ".onnx":
        raise WeightsError(f"{path}: an ONNX model runs with --runtime onnx only; torch "
                           "needs the style's .safetensors")
    tensors, config = load_weights(path)
    if config.get("kind", "style") != "style":
        raise WeightsError(f"{path}: holds a {config.get('kind')!r} model, not a style")
    check_style_config(config, path)  # bounds first: no model is built from a bad config
    gen = PatchGenerator(GeneratorConfig(**config["generator"]))
    check_state(path, gen, tensors)
    gen.load_state_dict(tensors)
    return gen, config, path


class Painter:
    """Stylize images with one generator, however it is run (:meth:`run_tiles`).

    ``config`` is the style's JSON config: its stroke scale and palette are used.
    Subclasses define :meth:`run_tiles`; everything else (rungs, tiling, composition,
    palette) is shared, so every runtime paints with the same arithmetic.
    """

    device: Any = None
    """Where the tiler works: None, the host (NumPy); a torch GPU: there (:class:`Stylizer`)."""

    def __init__(self, tile_size: int, config: dict | None = None) -> None:
        self.tile_size = tile_size
        self.config = config or {}
        self.strokes = {**DEFAULT_STROKES, **self.config.get("strokes", {})}
        self.noise = bool(self.config.get("generator", {}).get("noise", False))
        self.streaks = bool(self.config.get("generator", {}).get("streaks", False))
        found = self.config.get("palette")
        self.palette = Palette.from_dict(found) if found else None

    def run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """N×3×S×S float32 in [-1, 1] (N×4×S×S with the noise channel of a generator with
        a noise input) → the generator's output, N×3×S×S float32."""
        raise NotImplementedError

    def _tile_fn(self) -> tuple[Any, Any]:
        """(the tile function :func:`tiled_apply` runs, its device)."""
        return NumpyTiles(self.run_tiles), None

    def stylize_array(self, pixels: np.ndarray, tiling: TileConfig | None = None,
                      on_band=None) -> np.ndarray:
        """H×W×3 uint8 → H×W×3 uint8, stylized tile by tile (then the palette match)."""
        t = tiling or TileConfig()
        fn, device = self._tile_fn()
        return self._recolour(self._tiled(pixels, t, fn, on_band, device), t)

    def palette_strength(self, tiling: TileConfig | None = None) -> float:
        """The palette match's strength that ``tiling`` means for this style (0: none)."""
        if self.palette is None:
            return 0.0
        t = tiling or TileConfig()
        return self.palette.strength if t.palette is None else t.palette

    def _recolour(self, pixels: np.ndarray, t: TileConfig) -> np.ndarray:
        strength = self.palette_strength(t)
        if not strength:
            return pixels
        # The tiler's output is ours to overwrite (a resized one may be read-only).
        return match_palette(pixels, self.palette, strength, in_place=pixels.flags.writeable)

    def stylize_arrays(self, images: list[np.ndarray],
                       tiling: TileConfig | None = None) -> list[np.ndarray]:
        """Several images at once, their tiles sharing forward passes.

        For small images (fewer tiles than a batch) this means fewer, fuller passes.
        Each image is tiled twice: once to collect its tiles, once to put the
        model's outputs back in the same order. Tiles of one size share passes (the
        coarse rungs' tiles are larger than the full-size rung's). The results equal
        :meth:`stylize_array` image by image.
        """
        t = tiling or TileConfig()
        collected: list[np.ndarray] = []

        def collect(tiles: np.ndarray) -> np.ndarray:
            collected.append(tiles)
            return tiles[:, :3]  # a stand-in of the output's shape

        for pixels in images:
            self._tiled(pixels, t, NumpyTiles(collect))
        if not collected:
            return []
        painted: list[np.ndarray] = [np.empty(0)] * len(collected)
        for shape in dict.fromkeys(c.shape[1:] for c in collected):
            which = [i for i, c in enumerate(collected) if c.shape[1:] == shape]
            every = np.concatenate([collected[i] for i in which])
            outs = np.concatenate([self.run_tiles(every[i : i + t.batch_size])
                                   for i in range(0, len(every), t.batch_size)])
            ends = np.cumsum([len(collected[i]) for i in which])
            for i, out in zip(which, np.split(outs, ends[:-1])):
                painted[i] = out
        queue = iter(painted)
        return [self._recolour(self._tiled(pixels, t, NumpyTiles(lambda _: next(queue))), t)
                for pixels in images]

    def tile_count(self, height: int, width: int, tiling: TileConfig | None = None) -> int:
        """How many tiles an image of this size is cut into (all rungs together)."""
        t = tiling or TileConfig()
        count = 0
        for (h, w), layout in self.rungs(height, width, t):
            tile, overlap, _ = layout
            stride = tile - overlap
            for dy, dx in self.shifts(h, height, t):
                count += (len(tile_starts(h + dy, tile, stride))
                          * len(tile_starts(w + dx, tile, stride)))
        return count

    @staticmethod
    def shifts(rung_height: int, height: int, tiling: TileConfig
               ) -> tuple[tuple[int, int], ...]:
        """The passes a rung is painted in (:func:`siamgan.tiling.shift_averaged`): two,
        :data:`GRID_SHIFTS`, where the output magnifies it :data:`SHIFT_MAGNIFIED`× or
        more and ``shift_average`` is on; else one, unshifted. A noise input stays on the
        picture's pixels in both (``tiled_apply``'s ``origin``)."""
        if tiling.shift_average and rung_height * SHIFT_MAGNIFIED <= height:
            return GRID_SHIFTS
        return ((0, 0),)

    def detail(self, tiling: TileConfig | None = None) -> float:
        """Weight of the finer rungs' detail that ``tiling`` means for this style."""
        t = tiling or TileConfig()
        return float(self.strokes["detail"] if t.detail is None else t.detail)

    def rungs(self, height: int, width: int, tiling: TileConfig
              ) -> list[tuple[tuple[int, int], tuple[int, int, str]]]:
        """The sizes an image is painted at, coarsest first, each with its tiling layout.

        ``strokes="pixel"``: one, the input resized by ``scale``. ``"picture"``: the
        ladder of :func:`siamgan.pyramid.ladder`. Coarse rungs are magnified in the
        output, so a seam there would become a wide band: they always run seamless
        (their cost is small). The full-size rung uses ``tiling``'s own layout, and is
        skipped when the detail weight is 0.
        """
        t = tiling
        if t.strokes == "pixel":
            return [(pyramid.rung_size(height, width, t.scale), self.layout(t))]
        scales = pyramid.ladder(height, width, int(self.strokes["picture_side"]), t.scale)
        if len(scales) == 1:
            return [(pyramid.rung_size(height, width, scales[0]), self.layout(t))]
        if not self.detail(t):
            scales = scales[:1]
        pitch = t.tile_size or self.tile_size
        context = 4 * max(1, round(pitch * COARSE_CONTEXT / 4))  # px each side, multiple of 4
        coarse = (pitch + 2 * context, 2 * context, "crop")
        return [(pyramid.rung_size(height, width, s), self.layout(t) if s == 1.0 else coarse)
                for s in scales]

    def layout(self, tiling: TileConfig) -> tuple[int, int, str]:
        """The (tile, overlap, blend) that ``tiling`` means for this style."""
        pitch = tiling.tile_size or self.tile_size
        if tiling.seamless:
            tile = pitch + 4 * round(pitch / 8)  # 1.5 × pitch, a multiple of 4
            return tile, tile - pitch, "crop"
        overlap = (4 * round(pitch * DEFAULT_OVERLAP / 4) if tiling.overlap is None
                   else tiling.overlap)
        return pitch, min(overlap, pitch - 4), tiling.blend

    def _tiled(self, pixels: np.ndarray, t: TileConfig, run, on_band=None,
               device: Any = None) -> np.ndarray:
        """Paint every rung (:meth:`rungs`), then compose them at the input's size.

        ``on_band(done)`` reports progress as rows of the input: each rung's bands
        advance it in proportion to that rung's share of the tiles."""
        h, w = pixels.shape[:2]
        plan = self.rungs(h, w, t)
        areas = [rh * rw for (rh, rw), _ in plan]
        progress = _Progress(on_band, h, areas)
        # Each rung's input is shrunk from the next finer one, so the full-size picture
        # is resampled once (PIL holds a 4-byte-per-pixel copy while it does).
        inputs: list[np.ndarray] = []
        finer = pixels
        for rh, rw in reversed([size for size, _ in plan]):
            finer = finer if finer.shape[:2] == (rh, rw) else resize(finer, rw, rh)
            inputs.insert(0, finer)
        # The photo's brightness at each rung a magnified rung is enlarged from or to
        # (photo_edges), and at the coarsest (flow).
        magnified = [i for i, ((rh, _), _) in enumerate(plan)
                     if t.strokes == "picture" and rh * SHIFT_MAGNIFIED <= h]
        guides: list[np.ndarray | None] = [None] * len(plan)
        for j in {j for i in magnified for j in (i, i + 1) if i + 1 < len(plan)
                  } if t.photo_edges else ():
            guides[j] = pyramid.luma(inputs[j])
        flow_guide = None
        if t.flow and 0 in magnified:
            flow_guide = guides[0] if guides[0] is not None else pyramid.luma(inputs[0])
        target = self.strokes.get("photo_detail")
        if t.strokes == "picture" and t.match_detail and target:
            inputs[0] = match_detail(inputs[0], target)
        outs = []
        for i, ((rh, _), (tile, overlap, blend)) in enumerate(plan):
            paint = functools.partial(tiled_apply, fn=run, tile=tile, overlap=overlap,
                                      batch_size=t.batch_size, blend=blend, device=device,
                                      noise=i if self.noise else None,
                                      streaks=self.streaks)
            outs.append(shift_averaged(inputs[i], paint, self.shifts(rh, h, t),
                                       progress.rung(i, rh)))
            inputs[i] = None  # type: ignore[call-overload]
        if flow_guide is not None:
            outs[0] = lay_along_forms(outs[0], flow_guide)
        if len(outs) == 1:
            return resize(outs[0], w, h)
        if plan[-1][0] != (h, w):  # the full-size rung was skipped (no detail)
            return resize(outs[-1], w, h)
        # The rung enlarged last from a guided one is itself enlarged 2× or less: its
        # own grid's steps are snapped to the photo's edges before its detail is added.
        for k in range(1, len(outs) - 1):
            if guides[k] is not None and guides[k + 1] is None:
                outs[k] = pyramid.snap_to_photo(outs[k], guides[k])
        weights = pyramid.detail_weights(len(outs), self.detail(t))
        return pyramid.compose(outs, weights, guides=guides)

    def stylize(self, image: Image.Image, tiling: TileConfig | None = None) -> Image.Image:
        """Stylize a PIL image; alpha is kept, greyscale becomes RGB."""
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA", "PA") else None
        out = Image.fromarray(self.stylize_array(np.asarray(image.convert("RGB")), tiling))
        if alpha is not None:
            out.putalpha(alpha)
        return out


class Stylizer(Painter):
    """Stylize images with one torch generator (the full install).

    ``precision`` ``"bfloat16"`` computes most convolutions in bf16
    (:func:`bfloat16_convolutions`): about 1.5× faster than float32 on CPUs
    with AVX-512 BF16 or AMX, within a few uint8 levels of the float32 output
    (``docs/performance.md`` has it measured). ``channels_last`` (on by default) stores
    activations NHWC, the layout oneDNN's convolutions run fastest in; it
    changes no result beyond float rounding. ``compile`` wraps the generator in
    ``torch.compile`` (fused elementwise ops, ~10–30 % faster once warm) at the
    price of a compilation on first use (about a minute cold, seconds from
    the on-disk cache), so it pays off only for long batches. On the CPU the tiler
    runs in NumPy and hands the generator NumPy batches (shared memory, no copy); on a
    GPU the tiler runs there too, so the host only sends and receives images.

    >>> s = Stylizer.from_style("vangogh")          # doctest: +SKIP
    >>> painting = s.stylize(Image.open("photo.jpg"))  # doctest: +SKIP
    """

    def __init__(self, generator: torch.nn.Module, tile_size: int,
                 device: str | torch.device = "cpu", config: dict | None = None,
                 precision: str = "float32", channels_last: bool = True,
                 compile: bool = False) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
        super().__init__(tile_size, config)
        self.device = resolve_device(str(device))
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = generator.to(self.device, memory_format=self.memory_format).eval()
        model = bfloat16_convolutions(self.generator) if precision == "bfloat16" else self.generator
        # dynamic: the last batch of a band is smaller; one graph serves every batch size.
        self._forward = torch.compile(model, dynamic=True) if compile else model

    @classmethod
    def from_style(cls, name_or_path: str | Path, device: str = "auto",
                   precision: str = "float32", compile: bool = False) -> Stylizer:
        """Load a style by name (shipped or user) or from a ``.safetensors`` path."""
        gen, config, _ = load_style(name_or_path)
        return cls(gen, int(config["tile_size"]), device, config, precision=precision,
                   compile=compile)

    def _run_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            x = tiles.to(self.device).contiguous(memory_format=self.memory_format)
            return self._forward(x).float().to(tiles.device)

    def run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        return self._run_tiles(torch.from_numpy(np.ascontiguousarray(tiles))).numpy()

    def _tile_fn(self) -> tuple[Any, Any]:
        if self.device.type == "cpu":
            return super()._tile_fn()
        return self._run_tiles, self.device


def load_stylizer(name_or_path: str | Path, runtime: str = "auto", device: str = "auto",
                  precision: str = "float32", compile: bool = False) -> Painter:
    """A style's stylizer, run by ``runtime``.

    ``onnx``: onnxruntime on the CPU, with the ``.onnx`` model beside the style
    (``siamgan export`` writes one; shipped styles have theirs). ``torch``: the
    ``.safetensors`` weights (needs the full install), on any device and precision.
    ``auto``: onnx where it can give the same result (the style has an ``.onnx``, the
    device is the CPU, float32, no ``compile``) or where torch is not installed;
    torch otherwise.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    path = find_style(str(name_or_path))
    onnx_file = path.with_suffix(".onnx")
    if runtime == "auto":
        cpu = device == "cpu" or (device == "auto" and not _cuda_in_reach())
        plain = cpu and precision == "float32" and not compile
        usable = onnx_file.is_file() and importlib.util.find_spec("onnxruntime") is not None
        runtime = "onnx" if (usable and plain) or not has_torch() else "torch"
    if runtime == "onnx":
        if precision != "float32" or compile or device not in ("auto", "cpu"):
            raise ValueError("--runtime onnx runs float32 on the CPU: drop --precision, "
                             "--compile and --device, or use --runtime torch")
        from .onnx_style import OnnxStylizer

        return OnnxStylizer.from_style(path)
    if not has_torch():
        raise WeightsError(f"--runtime torch needs the full install: {FULL_INSTALL}")
    return Stylizer.from_style(path, device, precision, compile)


def on_host(stylizer: Painter) -> bool:
    """Whether ``stylizer`` runs on the CPU (its default batch is then small)."""
    return stylizer.device is None or stylizer.device.type == "cpu"


GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
"""On Linux, a GPU that ``torch.cuda`` could use shows one of these (NVIDIA's driver,
ROCm's, WSL's); without one, CUDA is out of reach and torch need not be imported."""


def _cuda_in_reach() -> bool:
    """Whether a CUDA device may be used, importing torch only where it might be.

    Importing torch costs about 1.8 s and 0.45 GiB of memory on this project's CPU
    machine, so a Linux host with no GPU driver is answered without it."""
    if not has_torch():
        return False
    if sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DRIVER_FILES)):
        return False
    import torch

    return torch.cuda.is_available()


class _Progress:
    """Turns each rung's ``on_band(rows)`` into rows of the input, in proportion to area."""

    def __init__(self, on_band, height: int, areas: list[int]) -> None:
        self.on_band, self.height = on_band, height
        total = sum(areas)
        self.starts = [sum(areas[:i]) / total for i in range(len(areas))]
        self.shares = [a / total for a in areas]

    def rung(self, i: int, rung_height: int):
        if self.on_band is None:
            return None

        def report(rows: int) -> None:
            done = self.starts[i] + self.shares[i] * rows / rung_height
            self.on_band(min(self.height, round(done * self.height)))

        return report
