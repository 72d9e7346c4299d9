"""`siamgan serve` end to end: the real page in headless Chromium, driven by Playwright.

Chromium is Debian's package (`apt-get install chromium`, as `.ci/run` does); Playwright
only drives it and never downloads a browser. Without either the test is skipped, with
the reason. With ``SIAMGAN_SCREENSHOT=1`` it also paints ``examples/rocket.jpg`` with the
shipped ``vangogh`` style and saves the page to ``docs/images/serve.png`` (README).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.weights_io import save_weights

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = (os.environ.get("SIAMGAN_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
SCREENSHOT = os.environ.get("SIAMGAN_SCREENSHOT") == "1"
TIMEOUT_MS = 600_000 if SCREENSHOT else 120_000


@pytest.fixture
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Exception as e:  # a browser that cannot start here is no test result
            pytest.skip(f"chromium at {CHROMIUM} did not start: {str(e).splitlines()[0]}")
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path):
    """`siamgan serve` in a process of its own, with a tiny style; yields (url, its TMPDIR)."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    cfg = GeneratorConfig(channels=4, res_blocks=0)
    torch.manual_seed(0)
    save_weights(home / "styles" / "tiny.safetensors", PatchGenerator(cfg).state_dict(),
                 {"kind": "style", "tile_size": 16, "generator": asdict(cfg)})
    env = {**os.environ, "SIAMGAN_HOME": str(home), "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "siamgan", "serve", "--port", "0",
                             "--device", "cpu", "--max-upload-mb", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "serving the page at" in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(120)
    try:
        assert lines and "serving the page at" in lines[-1], "".join(lines)
        yield lines[-1].split(" at ")[1].split()[0], tmp
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not any(tmp.iterdir()), "the temporary folder was left behind"


def save_photo(path: Path, width: int, height: int) -> Path:
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    rgb = np.stack([np.broadcast_to(ramp, (height, width)),
                    np.broadcast_to(ramp[::-1], (height, width)),
                    np.full((height, width), 128.0)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(path, "JPEG", quality=90)
    return path


def test_the_page_paints_compares_downloads_and_reports_bad_files(browser, served, tmp_path):
    url, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    style, photo = "tiny", save_photo(tmp_path / "photo.jpg", 1600, 240)
    if SCREENSHOT:
        style, photo = "vangogh", ROOT / "examples" / "rocket.jpg"
    page.select_option("#style", style)
    page.set_input_files("#files", str(photo))
    card = page.locator(".card", has_text=photo.name)
    page.wait_for_selector(f".card[data-state=done]:has-text('{photo.name}')")
    size = Image.open(photo).size
    after = card.locator("img.after")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=after.element_handle())

    with page.expect_download() as download:
        card.locator("a.download").click()
    saved = tmp_path / "downloaded" / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == photo.name
    with Image.open(saved) as im:
        assert (im.format, im.size) == ("JPEG", size)

    card.locator("input.split").fill("30")
    assert "30%" in card.locator(".frame").get_attribute("style")
    fitted = after.bounding_box()["width"]
    card.locator("button.zoom").click()
    assert after.bounding_box()["width"] == pytest.approx(size[0], abs=1)
    if not SCREENSHOT:
        assert fitted < size[0]  # the 1600-px photo was fitted to the page before
    card.locator("button.zoom").click()
    card.locator("button.toggle").click()
    assert "before-only" in card.locator(".compare").get_attribute("class")
    card.locator("button.toggle").click()

    page.set_input_files("#files", files=[
        {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo at all"},
        {"name": "big.png", "mimeType": "image/png", "buffer": bytes(3 * 2**20 // 2)}])
    broken = page.locator(".card[data-state=failed]", has_text="broken.jpg")
    assert "not an image in a supported format" in broken.locator(".error").inner_text()
    big = page.locator(".card[data-state=failed]", has_text="big.png")
    assert "more than the 1 MB limit" in big.locator(".error").inner_text()
    assert page.locator(".card[data-state=done]").count() == 1

    if SCREENSHOT:
        page.locator(".card[data-state=failed] .remove").first.click()
        page.locator(".card[data-state=failed] .remove").first.click()
        page.wait_for_function("document.querySelectorAll('.card').length === 1")
        card.locator("input.split").fill("35")  # the rocket in the painted part
        page.mouse.move(0, 0)
        page.evaluate("window.scrollTo(0, 0)")
        out = ROOT / "docs" / "images" / "serve.png"
        page.screenshot(path=str(out), full_page=True)
        Image.open(io.BytesIO(out.read_bytes())).verify()
