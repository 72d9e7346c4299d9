"""`siamgan serve`: uploads, progress, results, errors, limits and clean-up, over real HTTP."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from siamgan import serve as S
from siamgan.cli import app
from siamgan.convert import ConvertOptions, convert
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.stylize import Stylizer
from siamgan.webqueue import JobSettings, ServeConfig, UploadError, safe_name
from siamgan.weights_io import save_weights


@pytest.fixture
def tiny(home) -> str:
    """A tiny style in the user's styles folder, so the page lists it."""
    cfg = GeneratorConfig(channels=4, res_blocks=0)
    torch.manual_seed(0)
    save_weights(home / "styles" / "tiny.safetensors", PatchGenerator(cfg).state_dict(),
                 {"kind": "style", "tile_size": 16, "generator": asdict(cfg),
                  "strokes": {"picture_side": 16, "detail": 0.25}})
    return "tiny"


@pytest.fixture
def server(tiny):
    """Start a server on a free port; call it with ServeConfig fields to change them."""
    started: list[ThreadingHTTPServer] = []

    def start(**fields) -> ThreadingHTTPServer:
        srv = S.make_server(ServeConfig(port=0, device="cpu", **fields))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        S.close(srv)


def request(srv, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def upload(srv, name: str, data: bytes, **query) -> tuple[int, dict]:
    from urllib.parse import urlencode
    status, _, body = request(srv, "POST", "/api/jobs?" + urlencode(
        {"name": name, "style": "tiny", **query}), data)
    return status, json.loads(body)


def wait(srv, job_id: str, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = json.loads(request(srv, "GET", "/api/jobs")[2])["jobs"]
        job = next(j for j in jobs if j["id"] == job_id)
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


def photo(fmt: str = "JPEG", size: tuple[int, int] = (40, 24), **save) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        buffer, fmt, **save)
    return buffer.getvalue()


def test_page_config_and_static_files(server):
    srv = server()
    status, headers, body = request(srv, "GET", "/")
    assert status == 200 and b"siamgan" in body and headers["Content-Type"].startswith("text/html")
    for name in ("app.js", "style.css"):
        assert request(srv, "GET", f"/static/{name}")[0] == 200
    assert request(srv, "GET", "/static/../serve.py")[0] == 404
    config = json.loads(request(srv, "GET", "/api/config")[2])
    tiny = next(s for s in config["styles"] if s["name"] == "tiny")
    assert tiny == {"name": "tiny", "description": "", "palette": None, "detail": 0.25}
    assert "vangogh" in [s["name"] for s in config["styles"]]
    assert config["max_upload_bytes"] == 100 * 2**20


def test_upload_progress_and_download_keep_stylize_rules(server):
    srv = server()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    status, job = upload(srv, "holiday.jpg", photo("JPEG", exif=exif.tobytes()),
                         scale="0.5", detail="0.5")
    assert status == 201 and job["state"] in ("queued", "running")
    job = wait(srv, job["id"])
    assert job["state"] == "done", job
    assert job["output"] == "holiday.jpg" and job["rows"] == job["height"] == 24
    status, headers, body = request(srv, "GET", f"/api/jobs/{job['id']}/result")
    assert status == 200
    assert headers["Content-Disposition"].startswith('attachment; filename="holiday.jpg"')
    with Image.open(io.BytesIO(body)) as im:
        assert (im.format, im.size) == ("JPEG", (40, 24))
        assert im.getexif()[0x010F] == "TestCam"
    for what in ("before", "after"):
        status, headers, _ = request(srv, "GET", f"/api/jobs/{job['id']}/{what}")
        assert (status, headers["Content-Type"]) == (200, "image/jpeg")


def test_formats_forced_and_kept_and_tiff_previewed_as_jpeg(server):
    srv = server()
    _, job = upload(srv, "scan.tif", photo("TIFF"))
    _, webp = upload(srv, "scan2.tif", photo("TIFF"), format="webp")
    job, webp = wait(srv, job["id"]), wait(srv, webp["id"])
    assert (job["output"], webp["output"]) == ("scan.tif", "scan2.webp")
    body = request(srv, "GET", f"/api/jobs/{job['id']}/result")[2]
    assert Image.open(io.BytesIO(body)).format == "TIFF"
    _, headers, preview = request(srv, "GET", f"/api/jobs/{job['id']}/before")
    assert headers["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(preview)).size == (
        40, 24)


def test_progress_is_reported_in_rows_as_the_photo_is_stylized(tmp_path):
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(tmp_path / "a.png")
    seen: list[tuple[int, int]] = []
    torch.manual_seed(0)
    stylizer = Stylizer(PatchGenerator(GeneratorConfig(4, 0)), tile_size=16)
    convert(stylizer, [tmp_path / "a.png"], tmp_path / "out",
            ConvertOptions(on_rows=lambda rows, h: seen.append((rows, h))))
    assert len(seen) > 1 and {h for _, h in seen} == {64}
    rows = [r for r, _ in seen]
    assert rows == sorted(rows) and rows[-1] == 64


def test_a_bad_file_fails_on_its_own_and_the_next_goes_on(server):
    srv = server()
    _, bad = upload(srv, "broken.jpg", b"this is not a photo")
    _, empty = upload(srv, "empty.png", b"")
    _, good = upload(srv, "fine.png", photo("PNG"))
    bad, empty, good = wait(srv, bad["id"]), wait(srv, empty["id"]), wait(srv, good["id"])
    assert bad["state"] == "failed" and "not an image in a supported format" in bad["error"]
    assert empty["state"] == "failed" and "empty file" in empty["error"]
    assert good["state"] == "done"
    assert request(srv, "GET", f"/api/jobs/{bad['id']}/result")[0] == 409


def test_size_and_pixel_limits_have_clear_messages(server):
    srv = server(max_upload_mb=0.01, max_pixels=500)
    status, data = upload(srv, "huge.png", bytes(20_000))
    assert status == 413
    assert data["error"] == ("huge.png is 0.0191 MB, more than the 0.01 MB limit; start "
                             "`siamgan serve --max-upload-mb N` to allow larger files")
    _, job = upload(srv, "big.png", photo("PNG", size=(40, 24)))
    job = wait(srv, job["id"])
    assert job["state"] == "failed" and "more than --max-pixels 500" in job["error"]


def test_bad_settings_and_unknown_styles_are_refused(server):
    srv = server()
    for query, message in [({"style": "nope"}, "unknown style 'nope'"),
                           ({"scale": "99"}, "scale must be between"),
                           ({"scale": "big"}, "scale must be a number"),
                           ({"format": "tif"}, "format must be one of"),
                           ({"style": "../../etc/passwd"}, "unknown style")]:
        status, data = upload(srv, "a.png", photo("PNG"), **query)
        assert status == 400 and message in data["error"], (query, data)
    with pytest.raises(UploadError, match="no style"):
        JobSettings.from_query({})


def test_other_sites_are_refused(server):
    srv = server()
    port = srv.server_address[1]
    assert request(srv, "GET", "/api/jobs", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert request(srv, "GET", "/api/jobs", headers={"Origin": "http://evil.example"})[0] == 403
    assert request(srv, "GET", "/api/jobs", headers={"Host": f"localhost:{port}"})[0] == 200


def test_uploads_stay_in_the_temp_folder_which_is_removed(server):
    srv = server()
    folder: Path = srv.jobs.folder
    _, job = upload(srv, "../../../escape.png", photo("PNG"))
    job = wait(srv, job["id"])
    assert job["state"] == "done" and job["name"] == "escape.png"
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in written} == {"escape.png"} and len(written) == 2
    assert all(folder in p.parents for p in written)
    status, _, _ = request(srv, "DELETE", f"/api/jobs/{job['id']}")
    assert status == 200 and not any(folder.rglob("*.png"))
    srv.shutdown()
    S.close(srv)
    assert not folder.exists()


def test_safe_names():
    assert safe_name("C:\\Users\\me\\IMG 1.jpg") == "IMG 1.jpg"
    assert safe_name("..") == "photo" and safe_name(".bashrc") == "bashrc"
    assert safe_name("a\x00b\n.png") == "ab.png"
    long = safe_name("é" * 300 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= 200
    assert safe_name("x" * 300) != safe_name("x" * 301)  # shortened, still distinct


def test_host_warning_and_url(monkeypatch, tiny):
    assert S.host_warning("127.0.0.1") is None and S.host_warning("localhost") is None
    assert S.host_warning("::1") is None
    assert "anyone who can reach this machine" in S.host_warning("0.0.0.0")

    def stop(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", stop)
    opened: list[str] = []
    monkeypatch.setattr(S.webbrowser, "open", opened.append)
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"])
    quiet = CliRunner().invoke(app, ["serve", "--port", "0", "--device", "cpu", "--open"])
    assert r.exit_code == 0, r.output
    assert "warning: listening on 0.0.0.0" in r.output
    assert "serving the page at http://127.0.0.1:" in r.output
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    assert len(opened) == 1 and opened[0] in quiet.output
    bad = CliRunner().invoke(app, ["serve", "--max-upload-mb", "0"])
    assert bad.exit_code == 2


def test_the_page_files_are_package_data():
    import tomllib
    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["siamgan"]
    page = [p for p in (root / "siamgan" / "web").iterdir() if p.is_file()]
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in page}
    for path in page:
        assert any(path.match(pattern) for pattern in patterns), path
