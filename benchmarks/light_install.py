"""The light install against the full one, side by side in one run (issue 19's figures).

Builds a fresh venv of the light install (``pip install .``, no extras) and compares it
with the full install this script runs in: the venv's size, ``siamgan styles``'s wall
time, and ``siamgan stylize`` of a 4 MP photo (the light install's onnxruntime against
``--runtime torch``, float32 on the CPU), runs alternating, plus the largest pixel
difference between the two outputs. Prints one JSON object.

    .venv/bin/python benchmarks/light_install.py [--venv /tmp/siamgan-light] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()
               and not p.is_symlink()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "siamgan-light")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    light, full = args.venv / "bin" / "siamgan", Path(sys.prefix) / "bin" / "siamgan"
    shutil.rmtree(args.venv, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    subprocess.run([str(args.venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True,
                   stderr=subprocess.DEVNULL)
    build_s = time.perf_counter() - t
    torch_found = subprocess.run([str(args.venv / "bin" / "python"), "-c", "import torch"],
                                 capture_output=True).returncode == 0

    styles = {"light": [], "full": []}
    for _ in range(7):  # alternating, so load on the machine hits both alike
        styles["light"].append(wall([str(light), "styles"]))
        styles["full"].append(wall([str(full), "styles"]))

    work = Path(tempfile.mkdtemp())
    photo = work / "photo.jpg"
    Image.open(REPO / "examples" / "rocket.jpg").convert("RGB").resize(
        (2448, 1632), Image.Resampling.LANCZOS).save(photo, quality=95)  # 4.0 MP
    runs = {"light": [], "torch": []}
    for i in range(args.rounds):
        runs["light"].append(wall([str(light), "stylize", str(photo), "-o",
                                   str(work / f"light{i}.png"), "--style", "vangogh"]))
        runs["torch"].append(wall([str(full), "stylize", str(photo), "-o",
                                   str(work / f"torch{i}.png"), "--style", "vangogh",
                                   "--runtime", "torch", "--device", "cpu"]))
    a = np.asarray(Image.open(work / "light0.png")).astype(int)
    b = np.asarray(Image.open(work / "torch0.png")).astype(int)
    diff = np.abs(a - b)
    shutil.rmtree(work)
    print(json.dumps({
        "light_venv_mb": round(size_mb(args.venv), 1),
        "light_build_s": round(build_s, 1),
        "torch_importable_in_light": torch_found,
        "full_venv_mb": round(size_mb(Path(sys.prefix)), 1),
        "styles_s": {k: round(statistics.median(v), 3) for k, v in styles.items()},
        "stylize_4mp_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "stylize_4mp_median_s": {k: round(statistics.median(v), 2) for k, v in runs.items()},
        "max_pixel_diff": int(diff.max()),
        "pixels_differing": round(float((diff > 0).mean()), 5),
    }, indent=2))


if __name__ == "__main__":
    main()
