"""Styles as ONNX models: written by ``siamgan export``, run by onnxruntime without torch.

A style's ONNX model maps ``tiles`` (N×3×H×W float32 in [-1, 1]) to ``paintings``, the
same shape; the batch and both spatial sizes are dynamic, so one file serves every
``--tile``, ``--seamless`` and stroke-scale rung. Its JSON config sits beside it, as
beside a ``.safetensors`` file. :class:`OnnxStylizer` is a
:class:`siamgan.stylize.Painter`: the same tiler, composition and palette as the torch
stylizer, with onnxruntime running the tile batches.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .runs import atomic_save, write_json
from .stylize import Painter
from .weights_io import WeightsError, check_style_config, config_path, read_config

OPSET = 17
INPUT, OUTPUT = "tiles", "paintings"


class OnnxStylizer(Painter):
    """Stylize with a style's ONNX model on the CPU (onnxruntime; no torch).

    ``threads`` is onnxruntime's intra-op thread count (None: one per core).
    """

    def __init__(self, model: str | Path, tile_size: int, config: dict | None = None,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise WeightsError("onnxruntime is not installed: pip install onnxruntime "
                               "(it comes with siamgan)") from e
        super().__init__(tile_size, config)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(model), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own classes for bad files
            raise WeightsError(f"{model}: not a usable ONNX model: {str(e)[:200]}") from e
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT]:
            raise WeightsError(f"{model}: expected one input named {INPUT!r}, got {names}")
        self.model = Path(model)

    @classmethod
    def from_style(cls, path: str | Path, threads: int | None = None) -> OnnxStylizer:
        """The style whose weights file (``.safetensors`` or ``.onnx``) is ``path``."""
        path = Path(path)
        model = path.with_suffix(".onnx")
        if not model.is_file():
            raise WeightsError(f"{path}: no ONNX model beside it ({model.name}); write one "
                               f"with `siamgan export` on the full install")
        config = read_config(model)
        if config.get("kind", "style") != "style":
            raise WeightsError(f"{path}: holds a {config.get('kind')!r} model, not a style")
        check_style_config(config, config_path(model))
        return cls(model, int(config["tile_size"]), config, threads)

    def run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(tiles, dtype=np.float32)
        return self.session.run([OUTPUT], {INPUT: x})[0]


def export_onnx(style: str | Path, output: str | Path) -> tuple[Path, Path]:
    """Write ``style`` (a name or weights file) as ``output``'s ``.onnx`` model and ``.json``
    config, both atomically; return their paths. Needs torch (the full install)."""
    import torch

    from .stylize import load_style

    gen, config, _ = load_style(style)
    tile = int(config["tile_size"])
    buffer = io.BytesIO()
    # The tracer warns that the generator's size check becomes a constant: the config
    # allows only tile sizes that pass it.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            gen.eval(), (torch.zeros(2, 4 if gen.config.noise else 3, tile, tile),), buffer,
            input_names=[INPUT],
            output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
            dynamic_axes={name: {0: "batch", 2: "height", 3: "width"}
                          for name in (INPUT, OUTPUT)})
    model = Path(output).with_suffix(".onnx")
    atomic_save(model, lambda f: f.write(buffer.getvalue()))
    cfg_file = config_path(model)
    write_json(cfg_file, {**config, "name": model.stem})
    return model, cfg_file
