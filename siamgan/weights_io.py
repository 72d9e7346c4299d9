"""Release weights: a ``.safetensors`` file plus a JSON config beside it.

Styles are found by name in the package's ``weights/`` folder (shipped
styles) and in the user styles folder ``$SIAMGAN_HOME/styles`` (default
``$XDG_DATA_HOME/siamgan/styles``, i.e. ``~/.local/share/siamgan/styles``).
Pickled ``.pt``/``.pth`` files are refused: they can run code when loaded.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from . import __version__
from .runs import atomic_save, write_json

MAX_HEADER_BYTES = 16 * 1024 * 1024


class WeightsError(ValueError):
    """A weights file is missing, unsafe or does not match its config."""


def siamgan_home() -> Path:
    if "SIAMGAN_HOME" in os.environ:
        return Path(os.environ["SIAMGAN_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
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
    path = Path(path).with_suffix(".safetensors")
    config = {**config, "siamgan_version": __version__}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    data = save(tensors, metadata={"config": json.dumps(config)})
    atomic_save(path, lambda f: f.write(data))
    write_json(config_path(path), config)
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors file and its config; validate before building any model."""
    path = Path(path)
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
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: cannot read safetensors file: {e}") from e
    cfg_file = config_path(path)
    source = cfg_file if cfg_file.is_file() else f"{path} metadata"
    try:
        if cfg_file.is_file():
            config = json.loads(cfg_file.read_text())
        elif "config" in meta:
            config = json.loads(meta["config"])
        else:
            raise WeightsError(f"{path}: no config (expected {cfg_file.name} beside it)")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{source}: config is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise WeightsError(f"{source}: config must be a JSON object")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"{path}: non-finite values in {', '.join(bad[:5])}")
    return tensors, config


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


def find_style(name: str) -> Path:
    """Resolve a style name (or a path to a .safetensors file) to a weights file."""
    candidate = Path(name).expanduser()
    if candidate.suffix and candidate.is_file():
        return candidate
    for d in style_dirs():
        p = d / f"{name}.safetensors"
        if p.is_file():
            return p
    known = ", ".join(s["name"] for s in list_styles()) or "none"
    raise WeightsError(f"style {name!r} not found (known styles: {known})")


def list_styles() -> list[dict]:
    """Every style found, shipped ones first; a user style of the same name shadows nothing."""
    seen: dict[str, dict] = {}
    for d in style_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.safetensors")):
            cfg_file = config_path(p)
            try:
                cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
            except (OSError, json.JSONDecodeError):
                cfg = {}
            if cfg.get("kind", "style") != "style" or p.stem in seen:
                continue
            seen[p.stem] = {"name": p.stem, "path": str(p), "tile_size": cfg.get("tile_size"),
                            "description": cfg.get("description", "")}
    return list(seen.values())
