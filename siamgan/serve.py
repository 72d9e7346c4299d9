"""`siamgan serve`: a local web page to stylize photos, on the standard library's HTTP server.

The page (``siamgan/web/``: plain HTML, CSS and JavaScript, no CDN) uploads each photo
with ``POST /api/jobs``, polls ``GET /api/jobs`` for progress, shows before and after
from ``/api/jobs/ID/before`` and ``/after``, and downloads ``/api/jobs/ID/result``. The
work itself is :class:`siamgan.webqueue.JobQueue`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from PIL import Image

from .imagefiles import READ_FORMATS, decode, pixel_limit
from .webqueue import JobQueue, JobSettings, ServeConfig, UploadError, too_large

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                   "GIF": "image/gif", "BMP": "image/bmp"}
"""Formats a browser shows as they are; a TIFF is shown through a JPEG preview."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_warning(host: str) -> str | None:
    """What to say when the server listens on an address other machines may reach."""
    if is_loopback(host):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine on the network "
            "can use the page, upload photos and download the results (there is no password)")


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def static_file(name: str) -> bytes:
    return resources.files("siamgan").joinpath("web", name).read_bytes()


def preview(path: Path, max_pixels: int) -> tuple[bytes, str]:
    """An image the browser can show: the file itself when it can, else a JPEG of it."""
    with pixel_limit(max_pixels), open(path, "rb") as f, Image.open(f, formats=READ_FORMATS) as im:
        fmt = im.format
    if fmt in BROWSER_FORMATS:
        return path.read_bytes(), BROWSER_FORMATS[fmt]
    with pixel_limit(max_pixels):
        decoded = decode(path, max_pixels)
    buffer = io.BytesIO()
    Image.fromarray(decoded.rgb).save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), "image/jpeg"


def attachment(name: str) -> str:
    """A Content-Disposition header that keeps a non-ASCII file name."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def make_handler(jobs: JobQueue) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``jobs``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "siamgan"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # the page polls: stay quiet
            pass

        def send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_json(self, status: int, data: dict) -> None:
            self.send(status, json.dumps(data).encode(), "application/json")

        def error(self, status: int, message: str) -> None:
            self.send_json(status, {"error": message})

        def allowed(self) -> bool:
            """Refuse other sites' pages: a foreign Host (DNS rebinding) or Origin."""
            host = self.server.server_address[0]
            if not is_loopback(host):
                return True
            port = self.server.server_address[1]
            names = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", host)}
            origin = self.headers.get("Origin")
            if self.headers.get("Host") not in names or (
                    origin is not None and urlsplit(origin).netloc not in names):
                self.error(HTTPStatus.FORBIDDEN, "requests from other sites are refused")
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if not self.allowed():
                return
            path = urlsplit(self.path).path
            parts = path.strip("/").split("/")
            if path == "/":
                self.send(HTTPStatus.OK, static_file("index.html"), STATIC["index.html"])
            elif len(parts) == 2 and parts[0] == "static" and parts[1] in STATIC:
                self.send(HTTPStatus.OK, static_file(parts[1]), STATIC[parts[1]])
            elif path == "/api/config":
                self.send_json(HTTPStatus.OK, {
                    "styles": [style_info(s) for s in jobs.styles()],
                    "max_upload_bytes": jobs.config.max_upload_bytes})
            elif path == "/api/jobs":
                self.send_json(HTTPStatus.OK, {"jobs": jobs.snapshot()})
            elif len(parts) == 4 and parts[:2] == ["api", "jobs"]:
                self.job_file(parts[2], parts[3])
            else:
                self.error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

        do_HEAD = do_GET

        def job_file(self, job_id: str, what: str) -> None:
            job = jobs.get(job_id)
            if job is None or what not in ("before", "after", "result"):
                self.error(HTTPStatus.NOT_FOUND, "no such photo")
            elif job.state != "done" or job.output is None:
                self.error(HTTPStatus.CONFLICT, f"{job.name} is {job.state}, not done")
            elif what == "result":
                body = job.output.read_bytes()
                self.send(HTTPStatus.OK, body, "application/octet-stream",
                          {"Content-Disposition": attachment(job.output.name)})
            else:
                path = job.source if what == "before" else job.output
                self.send(HTTPStatus.OK, *preview(path, jobs.config.max_pixels))

        def do_POST(self) -> None:  # noqa: N802
            if not self.allowed():
                return
            split = urlsplit(self.path)
            if split.path != "/api/jobs":
                self.error(HTTPStatus.NOT_FOUND, f"no such page: {split.path}")
                return
            query = dict(parse_qsl(split.query))
            name = query.get("name", "photo")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.error(HTTPStatus.LENGTH_REQUIRED, "the upload must give its length")
                return
            if length > jobs.config.max_upload_bytes:
                # Not read: the connection is closed instead.
                self.close_connection = True
                self.error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           too_large(name, length, jobs.config.max_upload_bytes))
                return
            try:
                job = jobs.submit(name, self.rfile, length, JobSettings.from_query(query))
            except UploadError as e:
                self.close_connection = True  # the body may be left unread
                self.error(HTTPStatus.BAD_REQUEST, str(e))
                return
            self.send_json(HTTPStatus.CREATED, job.to_dict())

        def do_DELETE(self) -> None:  # noqa: N802
            if not self.allowed():
                return
            parts = urlsplit(self.path).path.strip("/").split("/")
            if len(parts) != 3 or parts[:2] != ["api", "jobs"]:
                self.error(HTTPStatus.NOT_FOUND, "no such page")
            elif jobs.remove(parts[2]):
                self.send_json(HTTPStatus.OK, {"removed": parts[2]})
            else:
                self.error(HTTPStatus.CONFLICT, "no such photo, or it is being stylized")

    return Handler


def style_info(style: dict) -> dict:
    """What the page needs of a style: its name and its defaults."""
    try:
        config = json.loads(Path(style["path"]).with_suffix(".json").read_text())
    except (OSError, ValueError):
        config = {}
    palette = config.get("palette")
    strokes = config.get("strokes") or {}
    return {"name": style["name"], "description": style.get("description", ""),
            "palette": palette.get("strength") if isinstance(palette, dict) else None,
            "detail": strokes.get("detail", 0.5)}


def make_server(config: ServeConfig, jobs: JobQueue | None = None) -> ThreadingHTTPServer:
    """A server bound to ``config.host:config.port`` (OSError if it cannot listen).

    Its ``jobs`` attribute is the queue; :func:`close` stops both.
    """
    jobs = jobs or JobQueue(config)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((config.host.strip("[]"), config.port), make_handler(jobs))
    except OSError:
        jobs.close()
        raise
    server.jobs = jobs  # type: ignore[attr-defined]
    return server


def close(server: ThreadingHTTPServer) -> None:
    """Close the socket, stop the queue and delete its temporary folder."""
    server.server_close()
    server.jobs.close()  # type: ignore[attr-defined]


def serve(config: ServeConfig, open_browser: bool = False,
          echo: Callable[[str], None] = print) -> None:
    """Serve the page until Ctrl-C (or SIGTERM turned into SystemExit), then clean up."""
    server = make_server(config)
    try:
        if warning := host_warning(config.host):
            echo(warning)
        url = url_of(server)
        echo(f"siamgan is serving the page at {url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        close(server)
