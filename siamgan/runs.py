"""Run folders shared by every trainer: atomic files, checkpoints, stats and plots.

``runs/NAME/`` holds ``config.json``, ``checkpoint.pt`` (plain types only,
loaded with ``weights_only=True``), ``stats.jsonl`` (one line per step),
``losses.png`` and ``samples/``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import __version__

CHECKPOINT = "checkpoint.pt"


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Write to a temp file beside ``path``, fsync, then rename over it.

    A crash or Ctrl-C leaves either the old file or the new one, never half of
    one. The final file gets the permissions a normal new file would. The temp
    file is named ``.NAME.PID.random.tmp``: after a hard kill,
    :func:`remove_stale_temps` can tell it from one still being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | Path, names: set[str] | None = None) -> list[Path]:
    """Delete temp files that :func:`atomic_write` left in ``folder`` (for ``names`` only,
    when given) when its process was killed; those of running processes are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        stem = entry.name[1:-len(".tmp")]  # NAME.PID.random
        name, _, pid = stem.rpartition(".")[0].rpartition(".")
        wanted = names is None or name in names
        if wanted and pid.isdigit() and not _alive(int(pid)) and entry.is_file():
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


@contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C into a flag (``state["requested"]``) checked between steps.

    A trainer then checkpoints a whole step, never half of one; a second
    Ctrl-C interrupts at once. Outside the main thread signals cannot be
    caught, so the flag simply stays False.
    """
    state = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame) -> None:
        if state["requested"]:
            raise KeyboardInterrupt
        state["requested"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def atomic_save(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> None:
    """Atomically write a file through ``writer(file_object)``."""
    with atomic_write(path) as f:
        writer(f)


class TrainingDiverged(RuntimeError):
    """A loss became NaN/Inf; the last good checkpoint is kept."""


def check_finite(stats: dict[str, float], step: int, run_dir: str | Path) -> None:
    """Raise :class:`TrainingDiverged` naming the losses that are NaN/Inf at ``step``."""
    bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(f"non-finite loss at step {step}: {bad}; "
                               f"the last good checkpoint in {run_dir} is kept")


def due(count: int, every: int, last: int) -> bool:
    """Whether a periodic event (sample sheet, checkpoint) falls on step or epoch ``count``:
    every ``every`` of them, and always at the ``last``."""
    return count % every == 0 or count == last


def write_json(path: str | Path, data: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def save_image(path: str | Path, pixels: np.ndarray) -> None:
    atomic_save(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def save_checkpoint(run_dir: str | Path, state: dict) -> None:
    """Save a training state made of tensors and plain Python types only."""
    state = {**state, "version": __version__}
    atomic_save(Path(run_dir) / CHECKPOINT, lambda f: torch.save(state, f))


def load_checkpoint(run_dir: str | Path) -> dict:
    """Load the checkpoint of a run; never unpickles arbitrary objects.

    Temp files that a killed process left in the run folder are removed first.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    remove_stale_temps(run_dir)
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict:
    """Torch CPU (and CUDA, if used) RNG states, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StatsLog:
    """Append-only JSONL of per-step statistics; survives restarts (truncates on resume)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "stats.jsonl"

    def truncate_after(self, step: int) -> None:
        """Drop lines past ``step`` (written after the checkpoint we resume from)."""
        if not self.path.exists():
            return
        keep = [ln for ln in self.read() if ln.get("step", 0) <= step]
        with atomic_write(self.path, "w") as f:
            f.writelines(json.dumps(ln) + "\n" for ln in keep)

    def append(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
            (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def plot_losses(rows: list[dict], keys: list[str], path: str | Path,
                size: tuple[int, int] = (800, 420), smooth: int = 25) -> None:
    """Line plot of ``keys`` against step (moving average), drawn with Pillow."""
    w, h = size
    left, right, top, bottom = 60, 150, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    steps = np.array([r["step"] for r in rows], dtype=float)
    series = {}
    for k in keys:
        v = np.array([r.get(k, math.nan) for r in rows], dtype=float)
        if len(v) >= smooth:
            # Trailing mean over the last `smooth` steps (a centred "same" convolution
            # would pull both ends of every curve towards zero).
            c = np.concatenate([[0.0], np.cumsum(v)])
            n = np.minimum(np.arange(1, len(v) + 1), smooth)
            v = (c[1:] - c[np.arange(1, len(v) + 1) - n]) / n
        series[k] = v
    finite = np.concatenate([v[np.isfinite(v)] for v in series.values()] or [np.zeros(1)])
    if len(steps) < 2 or finite.size == 0:
        save_image(path, np.asarray(img))
        return
    lo, hi = float(np.percentile(finite, 1)), float(np.percentile(finite, 99))
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = steps.min(), max(steps.max(), steps.min() + 1)

    def px(s: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
        xs = left + (s - x0) / (x1 - x0) * (w - left - right)
        ys = top + (1 - (np.clip(v, lo, hi) - lo) / (hi - lo)) * (h - top - bottom)
        return [(float(a), float(b)) for a, b, c in zip(xs, ys, v) if np.isfinite(c)]

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for frac in (0, 0.5, 1):
        y = top + (1 - frac) * (h - top - bottom)
        draw.text((5, y - 6), f"{lo + frac * (hi - lo):.3g}", fill="black")
    draw.text((left, h - bottom + 8), f"step {int(x0)}", fill="black")
    draw.text((w - right - 70, h - bottom + 8), f"step {int(x1)}", fill="black")
    for i, (k, v) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = px(steps, v)
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        draw.text((w - right + 10, top + 16 * i), k, fill=colour)
    save_image(path, np.asarray(img))
