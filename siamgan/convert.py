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
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

import numpy as np
import torch
from tqdm import tqdm

from .imagefiles import (
    DEFAULT_MAX_PIXELS,
    FORMAT_OF_SUFFIX,
    SUFFIXES,
    WRITE_FORMATS,
    Decoded,
    ImageFileError,
    decode,
    encode,
    pixel_limit,
)
from .runs import remove_stale_temps, write_json
from .stylize import Stylizer, TileConfig

STOP_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
"""Write errors that would fail every later file too: the batch stops."""


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
    stopped: str | None = None
    megapixels: float = 0.0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 1 when any file failed, else 0."""
        return 130 if self.interrupted else 1 if self.failed else 0

    def summary(self) -> str:
        text = (f"converted {len(self.converted)}, skipped {len(self.skipped)} (exist), "
                f"failed {len(self.failed)}")
        if self.pending:
            text += f", not attempted {len(self.pending)}"
        if self.ignored:
            text += f"; ignored {len(self.ignored)} non-image file(s)"
        if self.cleaned:
            text += f"; removed {len(self.cleaned)} temp file(s) of a killed earlier run"
        if self.interrupted:
            text += "; interrupted: rerun the same command to finish"
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Paths as given; a pattern that names no existing path is expanded as a glob."""
    found: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.exists():
            found.append(path)
        elif any(c in str(item) for c in "*?["):
            matches = sorted(glob.glob(str(path), recursive=True))
            found += [Path(m) for m in matches]
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


def plan(inputs: Sequence[Path], output: Path, output_format: str | None = None) -> Plan:
    """Pair every input file with its output path; raise :class:`ConvertError` on misuse.

    One folder is mirrored directly under ``output``; several inputs are
    mirrored below their common folder. One file with an output that has an
    image suffix (and is not a folder) is written to exactly that path.
    """
    inputs = list(inputs)
    forced = WRITE_FORMATS[output_format] if output_format else None
    if (len(inputs) == 1 and inputs[0].is_file() and not output.is_dir()
            and output.suffix.lower() in FORMAT_OF_SUFFIX):
        fmt = FORMAT_OF_SUFFIX[output.suffix.lower()]
        if forced and forced != fmt:
            raise ConvertError(f"--format {output_format} contradicts output name {output}")
        if _same(inputs[0], output):
            raise ConvertError(f"{output}: the output would overwrite the input")
        return Plan([Job(inputs[0], output, fmt)], output.parent)
    folders = [p for p in inputs if p.is_dir()]
    for folder in folders:
        if _same(folder, output):
            raise ConvertError(f"{output}: the output folder is the input folder; "
                               "choose another -o so the originals are never overwritten")
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
    return Plan(jobs, output, _conflicts(jobs, forced), ignored)


def _conflicts(jobs: list[Job], forced: str | None) -> dict[int, str]:
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
    for i, job in enumerate(jobs):
        if os.path.realpath(job.dst) in inputs:
            conflicts[i] = f"the output {job.dst} would overwrite an input; choose another -o"
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
    digest = hashlib.sha256(relative_output.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def shard(jobs: Sequence[Job], root: Path, k: int, n: int) -> list[Job]:
    """The jobs of shard ``k`` of ``n``: every job is in exactly one of the n shards."""
    return [job for job in jobs if shard_of(job.dst.relative_to(root), n) == k]


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a temp file in it, or raise :class:`ConvertError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".siamgan-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConvertError(f"cannot write to output folder {folder}: "
                           f"{e.strerror or e}") from e


def is_out_of_memory(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(e, (oom, MemoryError)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def stylize_retrying(stylizer: Stylizer, rgb: np.ndarray,
                     tiling: TileConfig | None) -> tuple[np.ndarray, list[str]]:
    """Stylize; on out-of-memory redo the whole image with half as many tiles per batch.

    Each retry starts from scratch, so no tile of a failed attempt is ever kept.
    """
    cfg = tiling or TileConfig()
    notes: list[str] = []
    while True:
        try:
            return stylizer.stylize_array(rgb, cfg), notes
        except Exception as e:
            if not is_out_of_memory(e):
                raise ImageFileError(f"stylizing failed: {type(e).__name__}: {e}") from e
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
            if cfg.batch_size == 1:
                raise ImageFileError("out of memory even with one tile per batch; try a "
                                     "smaller --tile, --scale below 1 or --device cpu") from e
            cfg = replace(cfg, batch_size=max(1, cfg.batch_size // 2))
            notes.append(f"out of memory; retried with {cfg.batch_size} tiles per batch")


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
    """
    opts = options or ConvertOptions()
    output = Path(output).expanduser()
    the_plan = plan(expand_inputs(inputs), output, opts.output_format)
    report = ConvertReport(ignored=[str(p) for p in the_plan.ignored])
    todo: list[Job] = []
    k, n = opts.shard or (1, 1)
    mine: list[Job] = []  # the jobs of this shard: all of them without --shard
    for i, job in enumerate(the_plan.jobs):
        entry = {"input": str(job.src), "output": str(job.dst)}
        if shard_of(job.dst.relative_to(the_plan.root), n) != k:
            continue  # another worker's file
        mine.append(job)
        if i in the_plan.conflicts:
            _fail(report, opts, entry, the_plan.conflicts[i])
        elif job.dst.is_dir():
            _fail(report, opts, entry, "the output path is an existing folder")
        elif job.dst.exists() and not opts.overwrite:
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
    with pixel_limit(opts.max_pixels):
        _run(stylizer, todo, opts, report, bar, start)
    report.seconds = time.perf_counter() - start
    bar.close()
    return report


def _remove_stale_temps(jobs: list[Job]) -> list[Path]:
    """Temp files that a killed run left beside these jobs' outputs (see atomic_write)."""
    folders: dict[Path, set[str]] = {}
    for job in jobs:
        folders.setdefault(job.dst.parent, set()).add(job.dst.name)
    return [p for folder, names in folders.items() for p in remove_stale_temps(folder, names)]


def _fail(report: ConvertReport, opts: ConvertOptions, entry: dict, reason: str) -> None:
    report.failed.append({**entry, "reason": reason})
    if opts.log:
        opts.log(f"failed: {entry['input']}: {reason}")


def stylize_group(stylizer: Stylizer, images: list[np.ndarray],
                  tiling: TileConfig | None) -> list[tuple[np.ndarray | ImageFileError, list[str]]]:
    """Stylize several small images with shared forward passes; (output or error, notes) each.

    If the shared pass fails for any reason, every image is redone on its own
    (:func:`stylize_retrying`), so an error is pinned on the file that causes it.
    """
    if len(images) > 1:
        try:
            return [(out, []) for out in stylizer.stylize_arrays(images, tiling)]
        except Exception:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
    results: list[tuple[np.ndarray | ImageFileError, list[str]]] = []
    for rgb in images:
        try:
            results.append(stylize_retrying(stylizer, rgb, tiling))
        except ImageFileError as e:
            results.append((e, []))
    return results


def _run(stylizer: Stylizer, todo: list[Job], opts: ConvertOptions,
         report: ConvertReport, bar: tqdm, start: float) -> None:
    """Decode the next file and encode the previous ones while the model works.

    Consecutive images with fewer tiles than a batch are stylized together, up to
    one batch of tiles, so small files share forward passes.
    """
    done: set[int] = set()
    writing: list[tuple[int, Future, dict]] = []
    group: list[tuple[int, Job, Decoded, dict]] = []
    tiling = opts.tiling or TileConfig()

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
        done.add(i)
        bar.update(1)
        rate = report.megapixels / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{rate:.2f} MP/s", refresh=False)

    def failed(i: int, entry: dict, reason: str) -> None:
        _fail(report, opts, entry, reason)
        done.add(i)
        bar.update(1)

    def stylize_pending() -> None:
        t0 = time.perf_counter()
        results = stylize_group(stylizer, [d.rgb for _, _, d, _ in group], opts.tiling)
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

    # One reader and one writer thread: files are written in order, one at a time.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siamgan-read")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siamgan-write")
    reading = reader.submit(decode, todo[0].src, opts.max_pixels) if todo else None
    try:
        for i, job in enumerate(todo):
            current, reading = reading, None
            if i + 1 < len(todo):
                reading = reader.submit(decode, todo[i + 1].src, opts.max_pixels)
            entry = {"input": str(job.src), "output": str(job.dst)}
            try:
                decoded: Decoded = current.result()
            except ImageFileError as e:
                failed(i, entry, str(e))
                continue
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
    except KeyboardInterrupt:
        report.interrupted = True  # the files of an unfinished group stay pending
    finally:
        if reading is not None:
            reading.cancel()
        while writing:  # files already stylized are finished, even after Ctrl-C
            finish(*writing[0])
            writing.pop(0)
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
    report.pending = [str(job.src) for i, job in enumerate(todo) if i not in done]
