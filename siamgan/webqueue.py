"""The work behind `siamgan serve`: uploads queue in a temporary folder, one stylized at a time.

Each upload is converted by :func:`siamgan.convert.convert`, exactly as `siamgan stylize`
would convert that one file into a folder: the same safe decoder (format allowlist,
pixel limit), the same output name, format and metadata, the same error messages.
Nothing is written outside the queue's temporary folder, which :meth:`JobQueue.close`
removes.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .convert import ConvertOptions, convert
from .imagefiles import DEFAULT_MAX_PIXELS, WRITE_FORMATS
from .paths import short_name
from .stylize import PRECISIONS, Painter, TileConfig, load_stylizer, on_host
from .weights_io import WeightsError, list_styles

CHUNK = 1 << 20
NAME_BYTES = 200
"""Longest upload name kept, in bytes: room for the helper files beside an output."""


class UploadError(ValueError):
    """An upload is refused (bad settings, too large); the message is shown on the page."""


class Cancelled(Exception):
    """Raised from the progress hook to stop a stylization when the server closes."""


@dataclass
class ServeConfig:
    """How `siamgan serve` runs; every field has a CLI option of the same name."""

    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port
    device: str = "auto"
    precision: str = "float32"
    batch_size: int | None = None  # tiles per forward pass; None: 16 on the CPU, 256 on a GPU
    max_upload_mb: float = 100.0  # larger uploads are refused before they are read
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused before decoding
    quality: int = 95  # JPEG/WebP quality of the results

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("--port must be between 0 and 65535")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("--batch-size must be ≥ 1")
        if self.max_upload_mb <= 0:
            raise ValueError("--max-upload-mb must be > 0")
        if self.max_pixels < 1:
            raise ValueError("--max-pixels must be ≥ 1")
        if not 1 <= self.quality <= 100:
            raise ValueError("--quality must be between 1 and 100")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class JobSettings:
    """What the page chose for one photo; None means the style's own default."""

    style: str
    scale: float = 1.0  # brush size, as `stylize --scale`
    palette: float | None = None
    detail: float | None = None
    format: str | None = None  # jpg | png | webp; None keeps the photo's format

    @classmethod
    def from_query(cls, query: dict[str, str]) -> JobSettings:
        """Settings from a request's query; :class:`UploadError` if a value is not valid."""
        def number(key: str) -> float | None:
            text = query.get(key, "")
            if text == "":
                return None
            try:
                return float(text)
            except ValueError:
                raise UploadError(f"{key} must be a number, got {text!r}") from None

        if not query.get("style"):
            raise UploadError("no style chosen")
        scale = number("scale")
        settings = cls(query["style"], 1.0 if scale is None else scale, number("palette"),
                       number("detail"), query.get("format") or None)
        if settings.format is not None and settings.format not in WRITE_FORMATS:
            raise UploadError(f"format must be one of {', '.join(WRITE_FORMATS)}")
        settings.tiling(16)  # TileConfig checks the ranges
        return settings

    def tiling(self, batch_size: int) -> TileConfig:
        try:
            return TileConfig(scale=self.scale, batch_size=batch_size, palette=self.palette,
                              detail=self.detail)
        except ValueError as e:
            raise UploadError(str(e)) from e


@dataclass
class WebJob:
    """One uploaded photo and what became of it."""

    id: str
    name: str  # the upload's file name, made safe
    settings: JobSettings
    folder: Path  # in/NAME is the upload, out/ the result
    state: str = "queued"  # queued | running | done | failed
    rows: int = 0  # rows stylized so far, of height
    height: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    output: Path | None = None
    seconds: float | None = None  # from the start of its stylization to the written result

    @property
    def source(self) -> Path:
        return self.folder / "in" / self.name

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "state": self.state, "rows": self.rows,
                "height": self.height, "error": self.error, "warnings": self.warnings,
                "output": self.output.name if self.output else None,
                "seconds": None if self.seconds is None else round(self.seconds, 2),
                "style": self.settings.style}


def safe_name(name: str) -> str:
    """The last part of an uploaded file's name, without control characters or leading dots,
    at most :data:`NAME_BYTES` long (a long stem is shortened, its suffix kept)."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".").strip() or "photo"
    suffix = Path(name).suffix if len(os.fsencode(Path(name).suffix)) <= 16 else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    return short_name(stem, NAME_BYTES - len(os.fsencode(suffix))) + suffix


class JobQueue:
    """Uploads stylized in order by one worker thread, in a temporary folder of their own.

    ``load(style)`` gives the stylizer for a style name (default: the style found by
    `siamgan styles`, on ``config.device``); each style is loaded once.
    """

    def __init__(self, config: ServeConfig,
                 load: Callable[[str], Painter] | None = None) -> None:
        self.config = config
        self.folder = Path(tempfile.mkdtemp(prefix="siamgan-serve-"))
        self.jobs: dict[str, WebJob] = {}
        self._load = load or (lambda style: load_stylizer(style, "auto", config.device,
                                                          config.precision))
        self._stylizers: dict[str, Painter] = {}
        self._lock = threading.Lock()
        self._todo: queue.Queue[WebJob | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._work, name="siamgan-serve", daemon=True)
        self._worker.start()

    def styles(self) -> list[dict]:
        return list_styles()

    def submit(self, name: str, body: BinaryIO, length: int, settings: JobSettings) -> WebJob:
        """Save an upload of ``length`` bytes and queue it; :class:`UploadError` if refused."""
        if length > self.config.max_upload_bytes:
            raise UploadError(too_large(name, length, self.config.max_upload_bytes))
        if settings.style not in {s["name"] for s in self.styles()}:
            raise UploadError(f"unknown style {settings.style!r}")
        job_id = str(next(self._ids))
        job = WebJob(job_id, safe_name(name), settings, self.folder / job_id)
        job.source.parent.mkdir(parents=True)
        left = length
        with open(job.source, "wb") as f:
            while left > 0:
                chunk = body.read(min(CHUNK, left))
                if not chunk:
                    shutil.rmtree(job.folder, ignore_errors=True)
                    raise UploadError(f"{job.name}: upload ended after {length - left} of "
                                      f"{length} bytes")
                f.write(chunk)
                left -= len(chunk)
        with self._lock:
            self.jobs[job_id] = job
        self._todo.put(job)
        return job

    def remove(self, job_id: str) -> bool:
        """Forget a job that is not running and delete its files; False if it is running."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.state == "running":
                return False
            del self.jobs[job_id]
        shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [job.to_dict() for job in self.jobs.values()]

    def get(self, job_id: str) -> WebJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker (a running stylization stops at its next band) and delete the
        temporary folder."""
        self._closed.set()
        self._todo.put(None)
        self._worker.join(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _work(self) -> None:
        while (job := self._todo.get()) is not None and not self._closed.is_set():
            with self._lock:
                if job.id not in self.jobs:
                    continue  # removed while queued
                job.state = "running"
            try:
                self._run(job)
            except Exception as e:  # a bug must not stop the queue
                job.error, job.state = f"{type(e).__name__}: {e}", "failed"

    def _stylizer(self, style: str) -> Painter:
        if style not in self._stylizers:
            self._stylizers[style] = self._load(style)
        return self._stylizers[style]

    def _run(self, job: WebJob) -> None:
        start = time.perf_counter()
        try:
            stylizer = self._stylizer(job.settings.style)
        except (WeightsError, OSError) as e:
            job.error, job.state = str(e), "failed"
            return
        batch = self.config.batch_size or (16 if on_host(stylizer) else 256)

        def progress(rows: int, height: int) -> None:
            if self._closed.is_set():
                raise Cancelled("the server is stopping")
            job.rows, job.height = rows, height

        options = ConvertOptions(output_format=job.settings.format,
                                 quality=self.config.quality, max_pixels=self.config.max_pixels,
                                 tiling=job.settings.tiling(batch), on_rows=progress)
        report = convert(stylizer, [job.source], job.folder / "out", options)
        if report.converted:
            entry = report.converted[0]
            job.output, job.warnings = Path(entry["output"]), entry["warnings"]
            job.seconds = time.perf_counter() - start
            job.state = "done"
        else:
            failed = report.failed[0] if report.failed else {"reason": report.summary()}
            job.error, job.state = failed["reason"], "failed"


def too_large(name: str, size: int, limit: int) -> str:
    """The message for an upload over the size limit."""
    return (f"{name} is {size / 2**20:.3g} MB, more than the {limit / 2**20:.3g} MB limit; "
            "start `siamgan serve --max-upload-mb N` to allow larger files")
