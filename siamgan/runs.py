"""Run folders shared by every trainer: atomic files, checkpoints, stats and plots.

``runs/NAME/`` holds ``config.json``, ``checkpoint.pt`` (plain types only,
loaded with ``weights_only=True``), ``stats.jsonl`` (one line per step),
``losses.png`` and ``samples/``.
"""

from __future__ import annotations

import errno
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
from PIL import Image, ImageDraw

from . import __version__
from .paths import PathError, check_name, check_outside, name_max, short_name

CHECKPOINT = "checkpoint.pt"


def temp_stem(folder: str | Path, name: str) -> str:
    """The part of a helper file's name that stands for ``name`` (a temp file, a claim):
    ``name`` itself, or a hashed short form where ``.NAME.PID.random.tmp`` would not fit
    the folder's name limit (a PID of up to 10 digits, 8 random characters)."""
    return short_name(name, name_max(folder) - len("..0123456789.abcdefgh.tmp"))


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Write to a temp file beside ``path``, fsync, then rename over it.

    A crash or Ctrl-C leaves either the old file or the new one, never half of
    one. The final file gets the permissions a normal new file would. The temp
    file is named ``.NAME.PID.random.tmp`` (NAME shortened by :func:`temp_stem` when
    that would be too long): after a hard kill, :func:`remove_stale_temps` can tell
    it from one still being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = temp_stem(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}.", suffix=".tmp",
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


def alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
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
    stems = None if names is None else {temp_stem(folder, n) for n in names}
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        stem = entry.name[1:-len(".tmp")]  # NAME.PID.random
        name, _, pid = stem.rpartition(".")[0].rpartition(".")
        wanted = stems is None or name in stems
        if wanted and pid.isdigit() and not alive(int(pid)) and entry.is_file():
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, ``timeout``, ``kill``), handled like Ctrl-C; exit 143."""


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal: 143 after SIGTERM, 130 after Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


@contextmanager
def terminate_as_interrupt():
    """While the block runs, SIGTERM raises :class:`Terminated` as Ctrl-C raises
    KeyboardInterrupt, so one ``except KeyboardInterrupt`` handles both. Outside the
    main thread signals cannot be caught, and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C or SIGTERM into a flag (``state["requested"]``) checked
    between steps.

    A trainer then checkpoints a whole step, never half of one; a second
    signal interrupts at once. A KeyboardInterrupt that leaves the block after a
    SIGTERM becomes :class:`Terminated` (exit 143). Outside the main thread
    signals cannot be caught, so the flag simply stays False.
    """
    state = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        if state["requested"]:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        state["requested"] = True
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    except KeyboardInterrupt as e:
        if received[:1] == [signal.SIGTERM] and not isinstance(e, Terminated):
            raise Terminated from e
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def check_writable(folder: str | Path, what: str, create: bool = True) -> None:
    """Raise :class:`PathError` saying why files cannot be written in ``folder``.

    A temp file is made and removed there, the folder created first; with
    ``create`` False a missing folder is not made: the probe goes to the nearest
    folder above it that exists, where it would be created, and leaves no trace.
    """
    folder = Path(folder)
    probe = folder
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if not probe.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(probe))
        fd, tmp = tempfile.mkstemp(prefix=".siamgan-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise PathError(f"cannot write to {what} {folder}: {e.strerror or e}"
                        + (f" ({probe})" if probe != folder else "")) from e


def prepare_run(runs_dir: str | Path, name: str, resume: bool, inputs: list,
                export_to: Path | None = None) -> Path:
    """The folder ``runs_dir/name`` of a training run, checked before any work.

    ``name`` must be a plain name; the run folder and the exported style
    (``export_to``) must stay off and out of the ``inputs``; both places must be
    writable. Without ``resume`` a run folder that holds anything, or an exported
    style of that name, is refused rather than replaced.
    """
    check_name(name)
    run = Path(runs_dir) / name
    check_outside(run, inputs, "the run folder")
    if export_to is not None:
        check_outside(export_to, inputs, "the exported style")
    if not resume:
        if run.exists() and (not run.is_dir() or any(run.iterdir())):
            raise PathError(f"run {run} already exists; continue it with --resume, "
                            "or choose another --name")
        if export_to is not None and export_to.exists():
            raise PathError(f"a style named {name!r} already exists ({export_to}); "
                            "choose another --name, or delete that style first")
    check_writable(runs_dir, "the runs folder", create=False)
    if export_to is not None:
        check_writable(export_to.parent, "the styles folder", create=False)
    return run


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
    import torch

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
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict:
    """Torch CPU (and CUDA, if used) RNG states, as tensors."""
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

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
