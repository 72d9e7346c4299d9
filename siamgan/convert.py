"""Batch conversion: files, folders and globs in, stylized files out, nothing lost.

:func:`plan` decides every output name before any work starts (mirrored
folders, collisions, inputs that must never be overwritten); :func:`convert`
runs the plan with decoding and encoding overlapping the model work, and
returns a :class:`ConvertReport`. Decoding, encoding and metadata live in
:mod:`siamgan.imagefiles`; what happens to each odd input is in
``docs/batch.md``.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from . import claims, runs
from .imagefiles import (
    DEFAULT_MAX_PIXELS,
    FORMAT_OF_SUFFIX,
    SUFFIXES,
    WRITE_FORMATS,
    Decoded,
    ImageFileError,
    decode,
    decode_bytes,
    encode,
    encode_bytes,
    not_regular,
    pixel_limit,
)
from .paths import PathError, check_outside, expand_user, is_within, real
from .runs import exit_status, remove_stale_temps, terminate_as_interrupt, write_json
from .stylize import Stylizer, TileConfig

STOP_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
"""Write errors that would fail every later file too: the batch stops."""

MIN_PAINTED_SIDE = 8
"""A picture shrunk below this many pixels (``--scale``) is painted nearly flat: warned."""


class ConvertError(ValueError):
    """The request itself cannot be carried out (a usage error: exit code 2)."""


@dataclass
class ConvertOptions:
    """How a batch is converted; every field has a CLI option of the same name."""

    output_format: str | None = None  # jpg | png | webp; None keeps each input's format
    quality: int = 95  # JPEG/WebP quality
    overwrite: bool = False  # redo outputs that exist
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused before decoding
    tiling: TileConfig | None = None
    progress: bool = False  # a tqdm bar over files
    log: Callable[[str], None] | None = None  # receives "failed: …"/"warning: …" lines
    shard: tuple[int, int] | None = None  # (K, N): convert only shard K of N (see shard())
    # (rows stylized, height) of the file being stylized, band by band; only for a file
    # stylized on its own (small files that share forward passes report nothing).
    on_rows: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        if self.output_format is not None and self.output_format not in WRITE_FORMATS:
            raise ConvertError(f"--format must be one of {', '.join(WRITE_FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise ConvertError("--quality must be between 1 and 100")
        if self.max_pixels < 1:
            raise ConvertError("--max-pixels must be ≥ 1")
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise ConvertError("--shard K/N needs 1 ≤ K ≤ N")


@dataclass
class Job:
    src: Path
    dst: Path
    format: str | None = None  # Pillow format to write; None: the input's own


@dataclass
class Plan:
    jobs: list[Job]
    root: Path  # the folder outputs are written under
    conflicts: dict[int, str] = field(default_factory=dict)  # job index → why it can't run
    ignored: list[Path] = field(default_factory=list)  # not images by name, in folders


@dataclass
class ConvertReport:
    """What happened to every input; ``pending`` were never attempted (Ctrl-C, disk full)."""

    converted: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)  # temp files of a killed earlier run
    interrupted: bool = False
    signal: int = signal.SIGINT  # what interrupted: SIGINT (Ctrl-C) or SIGTERM
    stopped: str | None = None
    megapixels: float = 0.0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM, 1 when any file failed, else 0."""
        return 128 + int(self.signal) if self.interrupted else 1 if self.failed else 0

    def summary(self) -> str:
        others = sum("another run" in s["reason"] for s in self.skipped)
        text = (f"converted {len(self.converted)}, skipped {len(self.skipped)} (exist"
                f"{f'; {others} by another run' if others else ''}), "
                f"failed {len(self.failed)}")
        if self.pending:
            text += f", not attempted {len(self.pending)}"
        if self.ignored:
            text += f"; ignored {len(self.ignored)} non-image file(s)"
        if self.cleaned:
            text += f"; removed {len(self.cleaned)} temp file(s) of a killed earlier run"
        if self.interrupted:
            by = "terminated (SIGTERM)" if self.signal == signal.SIGTERM else "interrupted"
            text += f"; {by}: rerun the same command to finish"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        return text

    def to_dict(self) -> dict:
        return {"converted": self.converted, "skipped": self.skipped, "failed": self.failed,
                "pending": self.pending, "ignored": self.ignored, "cleaned": self.cleaned,
                "interrupted": self.interrupted, "stopped": self.stopped,
                "megapixels": round(self.megapixels, 3), "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code}

    def write_json(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


def expand_inputs(inputs: Sequence[str | Path], exclude: Path | None = None) -> list[Path]:
    """Paths as given; a pattern that names no existing path is expanded as a glob.

    Matches inside ``exclude`` (the output folder) are dropped, as a folder's walk skips
    it: ``'trip/**/*.jpg' -o trip/styled`` never reads its own outputs back."""
    found: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = expand_user(item)
        if path.exists():
            found.append(path)
        elif any(c in str(item) for c in "*?["):
            matches = sorted(glob.glob(str(path), recursive=True))
            found += [Path(m) for m in matches if exclude is None or not is_within(m, exclude)]
            if not matches:
                missing.append(f"{item} (matches nothing)")
        else:
            missing.append(str(item))
    if missing:
        raise ConvertError(f"no such file or folder: {', '.join(missing)}")
    return found


def walk_folder(folder: Path, exclude: Path | None) -> tuple[list[Path], list[Path]]:
    """(image files by name, other files) under ``folder``, sorted, recursively.

    Hidden files and folders (temp files of interrupted writes among them) and
    ``exclude`` (an output folder inside the input) are never entered.
    Symbolic links to folders are not followed.
    """
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not _same(here / d, exclude))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            (images if path.suffix.lower() in FORMAT_OF_SUFFIX else others).append(path)
    return images, others


def _same(a: Path, b: Path | None) -> bool:
    """Whether two paths name the same file or folder (links and ``..`` included)."""
    if b is None:
        return False
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _key(path: Path) -> str:
    # Case-folded, so outputs stay distinct on case-insensitive disks too.
    return os.path.normcase(os.path.abspath(path)).casefold()


def _regular_or_folder(path: Path) -> str | None:
    """Why ``path`` can be neither read as an image nor walked as a folder, or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # the read reports it
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else not_regular(mode)


def plan(inputs: Sequence[Path], output: Path, output_format: str | None = None,
         folder_output: bool = False) -> Plan:
    """Pair every input file with its output path; raise :class:`ConvertError` on misuse.

    One folder is mirrored directly under ``output``; several inputs are
    mirrored below their common folder. One file with an output that has an
    image suffix (and is not a folder, nor ``folder_output``) is written to exactly
    that path. An output folder may lie inside an input folder (it is never read
    back) but must not be an input or hold one (:func:`siamgan.paths.check_outside`).
    """
    inputs = list(inputs)
    forced = WRITE_FORMATS[output_format] if output_format else None
    if len(inputs) == 1 and (why := _regular_or_folder(inputs[0])):
        raise ConvertError(f"{inputs[0]}: {why}; give image files or folders")
    single = len(inputs) == 1 and inputs[0].is_file() and not output.is_dir()
    if single and not folder_output and output.suffix.lower() in FORMAT_OF_SUFFIX:
        fmt = FORMAT_OF_SUFFIX[output.suffix.lower()]
        if forced and forced != fmt:
            raise ConvertError(f"--format {output_format} contradicts output name {output}")
        if _same(inputs[0], output):
            raise ConvertError(f"{output}: the output would overwrite the input")
        return Plan([Job(inputs[0], output, fmt)], output.parent)
    if single and not folder_output and output.suffix:
        raise ConvertError(
            f"-o {output}: one image needs an output named like an image "
            f"({', '.join(SUFFIXES.values())}); for a folder, end -o with '/'")
    folders = [p for p in inputs if p.is_dir()]
    for folder in folders:
        if _same(folder, output):
            raise ConvertError(f"{output}: the output folder is the input folder; "
                               "choose another -o so the originals are never overwritten")
    try:
        check_outside(output, inputs, "the output folder", inside_ok=True)
    except PathError as e:
        raise ConvertError(str(e)) from None
    mirror: list[tuple[Path, Path]] = []  # (file as the user names it, absolute mirror path)
    ignored: list[Path] = []
    for p in inputs:
        if p.is_dir():
            images, others = walk_folder(p, output)
            mirror += [(f, Path(os.path.abspath(f))) for f in images]
            ignored += others
        else:
            mirror.append((p, Path(os.path.abspath(p))))
    if not mirror:
        return Plan([], output, ignored=ignored)
    roots = [Path(os.path.abspath(f)) for f in folders]
    roots += [Path(os.path.abspath(p)).parent for p in inputs if not p.is_dir()]
    base = Path(os.path.commonpath(roots))
    seen: set[str] = set()
    jobs: list[Job] = []
    for src, absolute in mirror:
        if (k := os.path.realpath(src)) in seen:
            continue  # the same file reached twice (overlapping inputs)
        seen.add(k)
        dst = output / absolute.relative_to(base)
        if forced:
            dst = dst.with_suffix(SUFFIXES[forced])
        jobs.append(Job(src, dst, forced))
    return Plan(jobs, output, _conflicts(jobs, forced, output), ignored)


def _conflicts(jobs: list[Job], forced: str | None, root: Path) -> dict[int, str]:
    """Give colliding outputs distinct names, or say why a job must not run."""
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(_key(job.dst), []).append(i)
    if forced:  # a.jpg + a.png → a.webp twice: name them a.jpg.webp and a.png.webp
        for members in groups.values():
            if len(members) > 1:
                for i in members:
                    jobs[i].dst = jobs[i].dst.with_name(jobs[i].src.name + SUFFIXES[forced])
        groups = {}
        for i, job in enumerate(jobs):
            groups.setdefault(_key(job.dst), []).append(i)
    conflicts: dict[int, str] = {}
    for members in groups.values():
        if len(members) > 1:
            names = ", ".join(str(jobs[i].src) for i in members)
            for i in members:
                conflicts[i] = f"inputs {names} would all be written to {jobs[i].dst}; " \
                               "rename one of them"
    inputs = {os.path.realpath(job.src) for job in jobs}
    inside = real(root)
    for i, job in enumerate(jobs):
        if os.path.realpath(job.dst) in inputs:
            conflicts[i] = f"the output {job.dst} would overwrite an input; choose another -o"
        elif not (real(job.dst.parent) / job.dst.name).is_relative_to(inside):
            conflicts[i] = (f"the output {job.dst} would land outside {root} through a "
                            "linked folder; remove the link or choose another -o")
    return conflicts


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with 1 ≤ K ≤ N, or :class:`ConvertError`."""
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit()
            and 1 <= int(k) <= int(n)):
        raise ConvertError(f"--shard {text!r}: expected K/N with 1 ≤ K ≤ N, e.g. 2/8")
    return int(k), int(n)


def shard_of(relative_output: PurePath, n: int) -> int:
    """The shard (1…n) that converts this output path, given relative to the output folder.

    A hash of the path alone: the same on every machine, and a file keeps its
    shard when others are added to the library.
    """
    digest = hashlib.sha256(os.fsencode(relative_output.as_posix())).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def shard(jobs: Sequence[Job], root: Path, k: int, n: int) -> list[Job]:
    """The jobs of shard ``k`` of ``n``: every job is in exactly one of the n shards."""
    return [job for job in jobs if shard_of(job.dst.relative_to(root), n) == k]


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a temp file in it, or raise :class:`ConvertError`."""
    try:
        runs.check_writable(folder, "output folder")
    except PathError as e:
        raise ConvertError(str(e)) from e


def check_report(path: Path, inputs: Sequence[str | Path]) -> None:
    """Before any work: ``--report`` must be a writable file name, off every input.

    A name like an image's is refused: ``--report photos/a.jpg photos/b.jpg`` is a
    shell-order slip that would replace a photo with JSON.
    """
    if path.suffix.lower() in FORMAT_OF_SUFFIX:
        raise ConvertError(f"--report {path} is named like an image; the report is JSON "
                           "(did a photo end up right after --report?)")
    if path.is_dir():
        raise ConvertError(f"--report {path} is a folder; give a file name, e.g. report.json")
    try:
        named = [p for p in inputs if str(p) != "-"]
        check_outside(path, expand_inputs(named) if named else [], "--report", inside_ok=True)
        runs.check_writable(path.parent, "the report's folder", create=False)
    except PathError as e:
        raise ConvertError(str(e)) from e


def _free_gpu_cache() -> None:
    """Return cached GPU memory, if torch is in use at all (the light runtime has none)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def is_out_of_memory(e: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never imported just to name its error
    oom = getattr(torch, "OutOfMemoryError", MemoryError) if torch else MemoryError
    return isinstance(e, (oom, MemoryError)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def stylize_retrying(stylizer: Stylizer, rgb: np.ndarray, tiling: TileConfig | None,
                     on_band: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray, list[str]]:
    """Stylize; on out-of-memory redo the whole image with half as many tiles per batch.

    Each retry starts from scratch, so no tile of a failed attempt is ever kept.
    ``on_band(rows)`` reports progress within the image (:meth:`Stylizer.stylize_array`).
    """
    cfg = tiling or TileConfig()
    notes: list[str] = []
    while True:
        try:
            return stylizer.stylize_array(rgb, cfg, on_band=on_band), notes
        except Exception as e:
            if not is_out_of_memory(e):
                raise ImageFileError(f"stylizing failed: {type(e).__name__}: {e}") from e
            _free_gpu_cache()
            if cfg.batch_size == 1:
                raise ImageFileError("out of memory even with one tile per batch; try a "
                                     "smaller --tile, --scale below 1 or --device cpu") from e
            cfg = replace(cfg, batch_size=max(1, cfg.batch_size // 2))
            notes.append(f"out of memory; retried with {cfg.batch_size} tiles per batch")


def scale_notes(stylizer: Stylizer, height: int, width: int,
                tiling: TileConfig | None) -> list[str]:
    """A warning when ``--scale`` shrinks the picture to a few pixels before painting it."""
    t = tiling or TileConfig()
    (rung_h, rung_w), _ = stylizer.rungs(height, width, t)[0]
    if min(rung_h, rung_w) >= min(MIN_PAINTED_SIDE, height, width):
        return []
    return [f"painted at only {rung_w}×{rung_h} px (--scale {t.scale:g}): the output is "
            "close to one flat colour; use a larger --scale"]


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"cannot write: {e.strerror}"
    return f"{type(e).__name__}: {e}"


def convert(stylizer: Stylizer, inputs: Sequence[str | Path], output: str | Path,
            options: ConvertOptions | None = None) -> ConvertReport:
    """Stylize every input into ``output``; a bad file is reported, never fatal.

    Raises :class:`ConvertError` before any work for usage errors. Ctrl-C
    finishes the files already stylized, discards the current one and returns
    a report with ``interrupted`` set; rerunning skips what was written. With
    ``options.shard`` (K, N) only the files of shard K are looked at (:func:`shard`).
    SIGTERM is handled like Ctrl-C (``signal`` says which; exit status 143).
    Several runs on one output folder share the work through claim files
    (:mod:`siamgan.claims`). ``-`` as the only input or as ``output`` reads or writes
    one image through standard input or output (:func:`convert_stream`).
    """
    opts = options or ConvertOptions()
    if "-" in [str(p) for p in inputs] or str(output) == "-":
        return convert_stream(stylizer, inputs, output, opts)
    folder_output = str(output).endswith(("/", os.sep))
    output = expand_user(output)
    the_plan = plan(expand_inputs(inputs, output), output, opts.output_format, folder_output)
    report = ConvertReport(ignored=[str(p) for p in the_plan.ignored])
    todo: list[Job] = []
    k, n = opts.shard or (1, 1)
    mine: list[Job] = []  # the jobs of this shard: all of them without --shard
    for i, job in enumerate(the_plan.jobs):
        entry = {"input": str(job.src), "output": str(job.dst)}
        if shard_of(job.dst.relative_to(the_plan.root), n) != k:
            continue  # another worker's file
        mine.append(job)
        try:  # a name too long once its suffix changes (--format) fails here, alone
            is_dir, exists = job.dst.is_dir(), job.dst.exists()
        except OSError as e:
            _fail(report, opts, entry, f"cannot use the output path: {e.strerror}")
            continue
        if i in the_plan.conflicts:
            _fail(report, opts, entry, the_plan.conflicts[i])
        elif is_dir:
            _fail(report, opts, entry, "the output path is an existing folder")
        elif exists and not opts.overwrite:
            report.skipped.append({**entry, "reason": "output exists (--overwrite to redo)"})
        else:
            todo.append(job)
    if todo:
        check_writable(the_plan.root)
    report.cleaned = [str(p) for p in _remove_stale_temps(mine)]
    total = len(mine)
    bar = tqdm(total=total, unit="file", desc="stylize",
               disable=not opts.progress, dynamic_ncols=True)
    bar.update(total - len(todo))
    start = time.perf_counter()
    with terminate_as_interrupt(), pixel_limit(opts.max_pixels):
        _run(stylizer, todo, opts, report, bar, start)
    report.seconds = time.perf_counter() - start
    bar.close()
    return report


def _remove_stale_temps(jobs: list[Job]) -> list[Path]:
    """Temp files and claims that a killed run left beside these jobs' outputs."""
    folders: dict[Path, set[str]] = {}
    for job in jobs:
        folders.setdefault(job.dst.parent, set()).add(job.dst.name)
    return [p for folder, names in folders.items()
            for p in remove_stale_temps(folder, names) + claims.remove_stale(folder, names)]


def _fail(report: ConvertReport, opts: ConvertOptions, entry: dict, reason: str) -> None:
    report.failed.append({**entry, "reason": reason})
    if opts.log:
        opts.log(f"failed: {entry['input']}: {reason}")


def stylize_group(stylizer: Stylizer, images: list[np.ndarray], tiling: TileConfig | None,
                  on_band: Callable[[int], None] | None = None
                  ) -> list[tuple[np.ndarray | ImageFileError, list[str]]]:
    """Stylize several small images with shared forward passes; (output or error, notes) each.

    If the shared pass fails for any reason, every image is redone on its own
    (:func:`stylize_retrying`), so an error is pinned on the file that causes it.
    ``on_band`` reports progress within a lone image.
    """
    if len(images) > 1:
        try:
            return [(out, []) for out in stylizer.stylize_arrays(images, tiling)]
        except Exception:
            _free_gpu_cache()
    results: list[tuple[np.ndarray | ImageFileError, list[str]]] = []
    for rgb in images:
        try:
            results.append(stylize_retrying(stylizer, rgb, tiling,
                                            on_band if len(images) == 1 else None))
        except ImageFileError as e:
            results.append((e, []))
    return results


def _show(bar: tqdm, files: float) -> None:
    """Put the bar at ``files`` done (shares of files too); whole counts stay whole."""
    n = round(files, 2)
    bar.n = int(n) if n == int(n) else n
    bar.update(0)


def _written_meanwhile(dst: Path, overwrite: bool, since: float) -> bool:
    """Whether another run wrote ``dst`` after this one planned it."""
    try:
        written = dst.stat().st_mtime
    except OSError:
        return False
    return not overwrite or written >= since


def _run(stylizer: Stylizer, todo: list[Job], opts: ConvertOptions,
         report: ConvertReport, bar: tqdm, start: float) -> None:
    """Decode the next file and encode the previous ones while the model works.

    Consecutive images with fewer tiles than a batch are stylized together, up to
    one batch of tiles, so small files share forward passes. A file is claimed
    (:func:`siamgan.claims.take`) before it is read; one that another run holds, or
    has meanwhile written, is skipped. A lone image moves the bar band by band.
    """
    done: set[int] = set()
    held: set[int] = set()  # files this run has claimed and not yet finished
    credited: dict[int, float] = {}  # share of a file's bar step given during stylizing
    writing: list[tuple[int, Future, dict]] = []
    group: list[tuple[int, Job, Decoded, dict]] = []
    tiling = opts.tiling or TileConfig()
    since = time.time()
    before = bar.n  # files skipped before this run started

    def show() -> None:
        _show(bar, before + len(done) + sum(credited.values()))

    def advance(i: int) -> None:
        done.add(i)
        if i in held:
            claims.release(todo[i].dst)
            held.discard(i)
        credited.pop(i, None)
        show()

    def finish(i: int, future: Future, entry: dict) -> None:
        try:
            notes = future.result()
        except Exception as e:
            _fail(report, opts, entry, _os_reason(e))
            if isinstance(e, OSError) and e.errno in STOP_ERRNOS:
                report.stopped = f"{e.strerror} writing {entry['output']}"
        else:
            entry["warnings"] += notes
            report.converted.append(entry)
            report.megapixels += entry["megapixels"]
            for note in entry["warnings"]:
                if opts.log:
                    opts.log(f"warning: {entry['input']}: {note}")
        advance(i)
        rate = report.megapixels / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{rate:.2f} MP/s", refresh=False)

    def failed(i: int, entry: dict, reason: str) -> None:
        _fail(report, opts, entry, reason)
        advance(i)

    def band_progress(i: int, height: int) -> Callable[[int], None]:
        def on_band(rows: int) -> None:
            if opts.on_rows is not None:
                opts.on_rows(rows, height)
            share = min(rows / height, 0.99)
            if share > credited.get(i, 0.0):
                credited[i] = share
                show()
        return on_band

    def stylize_pending() -> None:
        t0 = time.perf_counter()
        lone = band_progress(group[0][0], group[0][2].rgb.shape[0]) if len(group) == 1 else None
        results = stylize_group(stylizer, [d.rgb for _, _, d, _ in group], opts.tiling, lone)
        seconds = (time.perf_counter() - t0) / len(group)
        for (i, job, decoded, entry), (out, notes) in zip(group, results):
            if isinstance(out, ImageFileError):
                failed(i, entry, str(out))
                continue
            entry.update(megapixels=round(decoded.megapixels, 6), seconds=round(seconds, 3),
                         warnings=decoded.warnings + notes)
            fmt = job.format or decoded.format
            writing.append((i, writer.submit(encode, job.dst, out, decoded, fmt, opts.quality),
                            entry))
        group.clear()
        while len(writing) > 1:  # at most one file waits to be written
            finish(*writing[0])
            writing.pop(0)

    def claim_next(jobs) -> tuple[int, Job] | None:
        """The next job this run may do, claimed; the others are skipped on the way."""
        for i, job in jobs:
            entry = {"input": str(job.src), "output": str(job.dst)}
            holder = claims.take(job.dst)
            if holder is None and not _written_meanwhile(job.dst, opts.overwrite, since):
                held.add(i)
                return i, job
            if holder is None:
                claims.release(job.dst)
            reason = (f"being converted by another run ({holder})" if holder
                      else "output written by another run meanwhile")
            report.skipped.append({**entry, "reason": reason})
            advance(i)
        return None

    # One reader and one writer thread: files are written in order, one at a time.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siamgan-read")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siamgan-write")
    jobs = iter(enumerate(todo))
    reading = None
    try:
        upcoming = claim_next(jobs)
        if upcoming is not None:
            reading = reader.submit(decode, upcoming[1].src, opts.max_pixels)
        while upcoming is not None:
            i, job = upcoming
            current, reading = reading, None
            upcoming = claim_next(jobs)
            if upcoming is not None:
                reading = reader.submit(decode, upcoming[1].src, opts.max_pixels)
            entry = {"input": str(job.src), "output": str(job.dst)}
            try:
                decoded: Decoded = current.result()
            except ImageFileError as e:
                failed(i, entry, str(e))
                continue
            decoded.warnings += scale_notes(stylizer, *decoded.rgb.shape[:2], tiling)
            tiles = stylizer.tile_count(*decoded.rgb.shape[:2], tiling)
            queued = sum(stylizer.tile_count(*d.rgb.shape[:2], tiling) for _, _, d, _ in group)
            if group and queued + tiles > tiling.batch_size:
                stylize_pending()
            group.append((i, job, decoded, entry))
            if tiles >= tiling.batch_size or reading is None:
                stylize_pending()
            if report.stopped:
                break
        else:
            if group:  # the last files were small, or the very last one was unreadable
                stylize_pending()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        report.interrupted = True  # the files of an unfinished group stay pending
        report.signal = exit_status(e) - 128
    finally:
        if reading is not None:
            reading.cancel()
        while writing:  # files already stylized are finished, even after Ctrl-C
            finish(*writing[0])
            writing.pop(0)
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
        for i in list(held):  # claimed, never finished: free for the next run
            claims.release(todo[i].dst)
    report.pending = [str(job.src) for i, job in enumerate(todo) if i not in done]


def convert_stream(stylizer: Stylizer, inputs: Sequence[str | Path], output: str | Path,
                   options: ConvertOptions | None = None, stdin: BinaryIO | None = None,
                   stdout: BinaryIO | None = None) -> ConvertReport:
    """One image through standard input and/or output, given as ``-``, as image tools allow.

    ``stylize - -o out.png``, ``stylize photo.jpg -o -`` or ``stylize - -o -``. Written
    to standard output, the image keeps the input's format unless
    ``options.output_format`` says otherwise. ``stdin``/``stdout`` default to the
    process's own (binary) streams.
    """
    opts = options or ConvertOptions()
    names = [str(p) for p in inputs]
    if len(names) != 1:
        raise ConvertError("- (standard input or output) works with one image only")
    src, dst = names[0], str(output)
    forced = WRITE_FORMATS[opts.output_format] if opts.output_format else None
    fmt, out = forced, None
    if dst != "-":
        out = expand_user(dst)
        fmt = FORMAT_OF_SUFFIX.get(out.suffix.lower())
        if fmt is None or out.is_dir():
            raise ConvertError(f"with - as the input, -o must name an image file or be -, "
                               f"got {dst}")
        if forced and forced != fmt:
            raise ConvertError(f"--format {opts.output_format} contradicts output name {out}")
    if src == "-":
        stdin = stdin or sys.stdin.buffer
        if stdin.isatty():
            raise ConvertError("- reads an image from standard input, which is a terminal; "
                               "pipe an image in (siamgan stylize - -o out.png < photo.jpg)")
    else:
        path = expand_user(src)
        if not path.exists():
            raise ConvertError(f"no such file or folder: {src}")
        if (why := _regular_or_folder(path)) or path.is_dir():
            raise ConvertError(f"{src}: {why or 'a folder'}; -o - takes one image file")
    report = ConvertReport()
    entry = {"input": src, "output": dst}
    if out is not None and out.exists() and not opts.overwrite:
        report.skipped.append({**entry, "reason": "output exists (--overwrite to redo)"})
        return report
    start = time.perf_counter()
    try:
        with terminate_as_interrupt(), pixel_limit(opts.max_pixels):
            decoded = (decode_bytes(stdin.read(), opts.max_pixels) if src == "-"
                       else decode(path, opts.max_pixels))
            decoded.warnings += scale_notes(stylizer, *decoded.rgb.shape[:2], opts.tiling)
            rgb, notes = stylize_retrying(stylizer, decoded.rgb, opts.tiling)
            if out is None:
                data, lost = encode_bytes(rgb, decoded, fmt or decoded.format, opts.quality)
                target = stdout or sys.stdout.buffer
                target.write(data)
                target.flush()
            else:
                lost = encode(out, rgb, decoded, fmt, opts.quality)
    except KeyboardInterrupt as e:
        report.interrupted, report.signal, report.pending = True, exit_status(e) - 128, [src]
    except ImageFileError as e:
        _fail(report, opts, entry, str(e))
    except OSError as e:
        _fail(report, opts, entry, _os_reason(e))
    else:
        entry.update(megapixels=round(decoded.megapixels, 6), warnings=decoded.warnings
                     + notes + lost, seconds=round(time.perf_counter() - start, 3))
        report.converted.append(entry)
        report.megapixels = decoded.megapixels
        for note in entry["warnings"]:
            if opts.log:
                opts.log(f"warning: {src}: {note}")
    report.seconds = time.perf_counter() - start
    return report
