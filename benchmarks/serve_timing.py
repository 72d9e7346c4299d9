"""Time `siamgan serve` as a person meets it: the page's load time, and the time from
choosing a photo to its painting on the page.

    python -m benchmarks.serve_timing PHOTO [--style vangogh] [--device cpu] [--loads 5]

Starts `siamgan serve` in a process of its own, drives Debian's headless Chromium
(``/usr/bin/chromium``, or ``$SIAMGAN_CHROMIUM``) with Playwright, and prints JSON:

* ``page_load_s``: navigation start → the load event (HTML, CSS, JS), and → the page
  ready (its style list fetched and shown, ``body[data-ready]``), medians over
  ``--loads`` fresh pages;
* ``first_result_s``: the photo given to the file input → its card done (upload,
  decode, stylize, encode), and → the painting shown (the after image decoded);
* ``server_s``: the server's own time for the photo (stylize → written).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright


def start_server(style_args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "siamgan", "serve", "--port", "0",
                             *style_args], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "serving the page at" in line:
            return proc, line.split(" at ")[1].split()[0]
    raise SystemExit("siamgan serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--style", default="vangogh")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    chromium = os.environ.get("SIAMGAN_CHROMIUM") or shutil.which("chromium")
    proc, url = start_server(["--device", args.device])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            loads, ready = [], []
            for _ in range(args.loads):
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-ready]")
                timing = page.evaluate("""() => [
                    performance.getEntriesByType('navigation')[0].loadEventEnd,
                    Number(document.body.dataset.ready)]""")
                loads.append(timing[0] / 1000)
                ready.append(timing[1] / 1000)
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(900_000)
            page.goto(url)
            page.wait_for_selector("body[data-ready]")
            page.select_option("#style", args.style)
            start = time.perf_counter()
            page.set_input_files("#files", str(args.photo))
            page.wait_for_selector(".card[data-state=done]")
            done = time.perf_counter() - start
            page.wait_for_function("""() => { const i = document.querySelector(
                '.card[data-state=done] img.after'); return i.complete && i.naturalWidth; }""")
            shown = time.perf_counter() - start
            jobs = json.loads(page.evaluate("fetch('/api/jobs').then(r => r.text())"))["jobs"]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(60)
    print(json.dumps({
        "photo": str(args.photo), "style": args.style, "device": args.device,
        "page_load_s": {"load_event": round(statistics.median(loads), 3),
                        "ready": round(statistics.median(ready), 3)},
        "first_result_s": {"done": round(done, 2), "shown": round(shown, 2)},
        "server_s": jobs[0]["seconds"]}, indent=2))


if __name__ == "__main__":
    main()
