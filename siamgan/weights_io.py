"""Release weights: a ``.safetensors`` file plus a JSON config beside it.

Styles are found by name in the package's ``weights/`` folder (shipped
styles) and in the user styles folder ``$SIAMGAN_HOME/styles`` (default
``$XDG_DATA_HOME/siamgan/styles``, i.e. ``~/.local/share/siamgan/styles``).
Pickled ``.pt``/``.pth`` files are refused: they can run code when loaded.

A style's name is a plain name (:func:`siamgan.paths.check_name`). The names of
the shipped styles are reserved: a user style of the same name would never be
found, so training, polishing or exporting one under such a name is refused, and
``siamgan styles`` points out an old one that is hidden.
"""

from __future__ import annotations

import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .paths import PathError, check_name, expand_user
from .runs import atomic_save, write_json

if TYPE_CHECKING:  # torch and safetensors: imported only where weights are read or written
    import torch

MAX_HEADER_BYTES = 16 * 1024 * 1024
TILE_SIZES = (8, 1024)
"""Smallest and largest ``tile_size`` of a style (a multiple of 4)."""
GENERATOR_LIMITS = {"channels": (1, 128), "res_blocks": (0, 32)}
"""Bounds of a style's generator, checked before it is built (at most ~0.6 GB)."""


class WeightsError(ValueError):
    """A weights file is missing, unsafe or does not match its config."""


class ExportError(RuntimeError):
    """Training finished but its style could not be written to the styles folder."""


def siamgan_home() -> Path:
    if "SIAMGAN_HOME" in os.environ:
        value = os.environ["SIAMGAN_HOME"]
        try:
            return Path(value).expanduser()
        except RuntimeError as e:  # ~user of an unknown user
            raise WeightsError(f"SIAMGAN_HOME={value!r}: cannot expand "
                               f"{value.split('/')[0]!r} (no such user); "
                               "set it to a plain path") from e
    try:
        data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    except RuntimeError as e:
        raise WeightsError("no home folder to keep styles in; set SIAMGAN_HOME") from e
    return Path(data) / "siamgan"


def user_styles_dir() -> Path:
    return siamgan_home() / "styles"


def shipped_weights_dir() -> Path:
    """The package's weights folder (``weights/`` in the repo, installed with the package)."""
    try:
        return Path(str(resources.files("siamgan.weights")))
    except (ModuleNotFoundError, TypeError):  # running from a checkout that is not installed
        return Path(__file__).resolve().parent.parent / "weights"


def style_dirs() -> list[Path]:
    return [shipped_weights_dir(), user_styles_dir()]


def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_weights(path: str | Path, state: dict[str, torch.Tensor], config: dict) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` config, both atomically."""
    from safetensors.torch import save

    path = Path(path).with_suffix(".safetensors")
    config = {**config, "siamgan_version": __version__}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    data = save(tensors, metadata={"config": json.dumps(config)})
    atomic_save(path, lambda f: f.write(data))
    write_json(config_path(path), config)
    return path


def _check_file(path: Path) -> None:
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl", ".bin"):
        raise WeightsError(
            f"{path}: pickled weights are refused because loading them can run code; "
            "export a style with `siamgan train` (safetensors + JSON) instead"
        )
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or int.from_bytes(head, "little") > MAX_HEADER_BYTES:
        raise WeightsError(f"{path}: not a safetensors file (or its header is too large)")


def _safetensor_error() -> type[Exception]:
    """safetensors' error class, or one never raised when safetensors is not installed."""
    try:
        from safetensors import SafetensorError
    except ImportError:
        return OSError
    return SafetensorError


def read_config(path: str | Path) -> dict:
    """A weights file's JSON config (``.json`` beside it, else the file's metadata)."""
    path = Path(path)
    cfg_file = config_path(path)
    source = cfg_file if cfg_file.is_file() else f"{path} metadata"
    try:
        if cfg_file.is_file():
            config = json.loads(cfg_file.read_bytes())
        else:
            if path.suffix.lower() == ".onnx":
                raise WeightsError(f"{path}: no config (expected {cfg_file.name} beside it)")
            _check_file(path)
            try:
                from safetensors import safe_open
            except ImportError:
                raise WeightsError(f"{path}: no config beside it ({cfg_file.name}), and "
                                   "reading the one inside needs the full install: "
                                   "pip install 'siamgan[train]'") from None
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if "config" not in meta:
                raise WeightsError(f"{path}: no config (expected {cfg_file.name} beside it)")
            config = json.loads(meta["config"])
    except (_safetensor_error(), OSError) as e:
        raise WeightsError(f"{source}: cannot read config: {e}") from e
    except (ValueError, RecursionError) as e:  # JSON, UTF-8 and nesting errors
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{source}: config is not valid JSON: "
                           f"{type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(config, dict):
        raise WeightsError(f"{source}: config must be a JSON object")
    return config


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file and its config; validate before building any model."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_file(path)
    config = read_config(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: cannot read safetensors file: {e}") from e
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path}: non-finite values in {', '.join(bad[:5])}")
    return tensors, config


def _integer(value, low: int, high: int, what: str, multiple: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high \
            or value % multiple:
        each = f", a multiple of {multiple}" if multiple > 1 else ""
        raise ValueError(f"{what} must be an integer from {low} to {high}{each}, "
                         f"got {value!r}")
    return value


def _numbers(value, count: int, what: str, low: float = -math.inf,
             high: float = math.inf, positive: bool = False) -> None:
    if not (isinstance(value, list) and len(value) == count and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and low <= v <= high and (v > 0 or not positive) for v in value)):
        bound = (" > 0" if positive else f" from {low:g} to {high:g}" if high < math.inf
                 else "")
        raise ValueError(f"{what} must be {count} finite number(s){bound}, got {value!r}")


def check_style_config(config: dict, source: str | Path) -> dict:
    """The one check of a style's config, before any model is built.

    ``tile_size``, the generator's size (:data:`GENERATOR_LIMITS`), the palette
    (finite Lab statistics, strength 0–1) and the stroke scale; a problem is a
    :class:`WeightsError` naming the file and the field, in one line.
    """
    from .stylize import check_strokes  # stylize imports this module

    try:
        _integer(config.get("tile_size"), *TILE_SIZES, "tile_size", multiple=4)
        gen = config.get("generator")
        if not isinstance(gen, dict):
            raise ValueError(f"generator must be an object, got {gen!r}")
        if unknown := set(gen) - {"channels", "res_blocks", "norm", "skip", "noise",
                                "upsample", "streaks"}:
            raise ValueError(f"generator has unknown fields {sorted(unknown)}")
        for key, (low, high) in GENERATOR_LIMITS.items():
            _integer(gen.get(key, {"channels": 32, "res_blocks": 4}[key]), low, high,
                     f"generator.{key}")
        for key in ("skip", "noise", "streaks"):
            if not isinstance(gen.get(key, False), bool):
                raise ValueError(f"generator.{key} must be true or false, got {gen.get(key)!r}")
        if gen.get("streaks") and not gen.get("noise"):
            raise ValueError("generator.streaks needs generator.noise")
        if gen.get("upsample", "nearest") not in ("nearest", "bilinear"):
            raise ValueError(f"generator.upsample must be nearest or bilinear, "
                             f"got {gen.get('upsample')!r}")
        if gen.get("norm", "pixel") not in ("pixel", "none", "instance"):
            raise ValueError(f"generator.norm must be pixel, none or instance, "
                             f"got {gen.get('norm')!r}")
        if "palette" in config:
            palette = config["palette"]
            if not isinstance(palette, dict):
                raise ValueError(f"palette must be an object, got {palette!r}")
            _numbers(palette.get("lab_mean"), 3, "palette.lab_mean")
            _numbers(palette.get("lab_std"), 3, "palette.lab_std", positive=True)
            _numbers([palette.get("strength", 0.0)], 1, "palette.strength", 0.0, 1.0)
        if "strokes" in config:
            check_strokes(config["strokes"])
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{source}: bad style config: {e}") from e
    return config


def check_state(path: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Say exactly which tensors are missing, unexpected or of the wrong shape."""
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k}: shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        raise WeightsError(f"{path}: weights do not match config: " + "; ".join(problems[:5]))


STYLE_SUFFIXES = (".safetensors", ".onnx")
"""A style's weights: safetensors (torch) or an ONNX model (``siamgan export``; the light
runtime). A style may have both, side by side with one JSON config."""


def style_files(folder: Path) -> list[Path]:
    """The styles' weights files in ``folder``: each ``.safetensors``, and each ``.onnx``
    with no ``.safetensors`` beside it (the one file names the style)."""
    found = sorted(folder.glob("*.safetensors"))
    stems = {p.stem for p in found}
    return found + sorted(p for p in folder.glob("*.onnx") if p.stem not in stems)


def find_style(name: str) -> Path:
    """Resolve a style name (or a path to a .safetensors or .onnx file) to a weights file.

    A shipped style's name always means the shipped style (see the module's notes).
    """
    candidate = expand_user(name)
    if candidate.suffix and candidate.is_file():
        return candidate
    try:
        check_name(name, "style")
    except PathError:
        raise WeightsError(f"{name!r}: no such weights file, and not a style name") from None
    for d in style_dirs():
        for suffix in STYLE_SUFFIXES:
            p = d / f"{name}{suffix}"
            if p.is_file():
                return p
    known = ", ".join(s["name"] for s in list_styles()) or "none"
    raise WeightsError(f"style {name!r} not found (known styles: {known})")


def shipped_names() -> set[str]:
    """Names of the styles shipped with the package: reserved for them."""
    folder = shipped_weights_dir()
    return {p.stem for p in style_files(folder)} if folder.is_dir() else set()


def export_path(name: str) -> Path:
    """Where a style ``name`` is exported to; the name checked first.

    A shipped style's name is refused: the user's style would never be found by it.
    """
    check_name(name)
    if name in shipped_names():
        raise PathError(f"--name {name!r} is the name of a shipped style, which would "
                        f"hide yours; choose another name, e.g. {name}-mine")
    return user_styles_dir() / f"{name}.safetensors"


def export_style(name: str, state: dict[str, torch.Tensor], config: dict, run_dir: Path) -> Path:
    """Write a trained style to the styles folder; if that fails, say where it is safe."""
    try:
        return save_weights(export_path(name), state, config)
    except OSError as e:
        raise ExportError(f"cannot export style {name!r} to {user_styles_dir()}: "
                          f"{e.strerror or e}; the trained weights are safe in "
                          f"{Path(run_dir) / (name + '.safetensors')}") from e


def scan_styles() -> tuple[list[dict], list[str]]:
    """(every usable style, shipped ones first; a warning line for each file skipped).

    A style whose config cannot be read or is invalid is skipped with a warning, and
    so is a user style named like a shipped one (the shipped one is always found first).
    """
    seen: dict[str, dict] = {}
    problems: list[str] = []
    for d in style_dirs():
        if not d.is_dir():
            continue
        for p in style_files(d):
            try:
                cfg = read_config(p)
                if cfg.get("kind", "style") != "style":
                    continue
                check_style_config(cfg, config_path(p) if config_path(p).is_file() else p)
            except WeightsError as e:
                problems.append(f"{e} (skipped)")
                continue
            if p.stem in seen:
                problems.append(f"{p}: hidden by the shipped style {p.stem!r}; rename it "
                                "(both files) to use it by name, or pass its path")
                continue
            seen[p.stem] = {"name": p.stem, "path": str(p), "tile_size": cfg.get("tile_size"),
                            "description": cfg.get("description", "")}
    return list(seen.values()), problems


def list_styles() -> list[dict]:
    """Every usable style, shipped ones first (:func:`scan_styles` without its warnings)."""
    return scan_styles()[0]
