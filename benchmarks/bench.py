"""siamgan against CycleGAN's resnet_9blocks and Johnson's TransformerNet: speed, memory, limit.

    python -m benchmarks.bench [--sizes 1,4,12,50] [--threads 2] [--time-cap 300]
                               [--json out.json] [--smoke] [--tune] [--device cuda]

Every measurement runs in a child process of its own (``--child SPEC``), so the
peak RSS it reports (``VmHWM``, reset once the input exists) belongs to that
case alone. Peers run over the whole image in one forward pass, float32 NCHW,
as their users run them; siamgan runs through :class:`siamgan.stylize.Stylizer`
(``tiled_apply``), and the whole command through the real ``siamgan stylize``
CLI (decode JPEG → stylize → encode JPEG, in-process after imports).

A case that would not fit is reported, never dropped: the parent predicts its
memory (measured RSS at the previous size scaled by area, else an activation
count) and its time (the previous size's rate) and skips it with the reason;
the child also runs under an address-space limit and a timeout.

``--device cuda`` measures the same table on a GPU (:mod:`benchmarks.bench_gpu`).

``--tune`` measures siamgan's speed options instead (layout, precision, tile
batch, threads, optionally ``--tune-compile``) and bf16's error against
float32 on real photos. ``--smoke`` runs everything tiny in seconds (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "vangogh2photo"
SHIPPED = REPO / "weights" / "vangogh.safetensors"
EXAMPLE = REPO / "examples" / "rocket.jpg"
MODELS = ("siamgan", "cyclegan-resnet9", "transformernet")
RESULT = "BENCH-RESULT "
SMOKE_MP = 0.05


# --- machine and memory ----------------------------------------------------------


def proc_status() -> dict[str, int]:
    """``Vm*`` fields of /proc/self/status in bytes (empty off Linux)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set since start (or since :func:`reset_peak_rss`)."""
    hwm = proc_status().get("VmHWM")
    if hwm is None:  # ru_maxrss is in kB on Linux
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return hwm / 2**20


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so setup is not counted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def limit_memory(limit_bytes: int) -> None:
    """Let this process allocate about ``limit_bytes`` more than it holds now, then fail."""
    status = proc_status()
    if limit_bytes > 0 and "VmSize" in status:
        extra = max(limit_bytes - status.get("VmRSS", 0), 256 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (status["VmSize"] + extra, resource.RLIM_INFINITY))


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds every process on the machine has used, those this process and its
    finished children used); their difference over a span is what others took."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, sum(r.ru_utime + r.ru_stime for r in own)


def others_cores(start: tuple[float, float], seconds: float) -> float:
    """Cores that other processes kept busy, on average, since ``start``."""
    busy, own = cpu_seconds()
    return max(0.0, (busy - start[0]) - (own - start[1])) / max(seconds, 1e-9)


def meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def machine(threads: int) -> dict:
    cpu, flags = platform.processor(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(ln.split(":", 1)[1].strip() for ln in text.splitlines()
                   if ln.startswith("model name"))
        flags = next(ln for ln in text.splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        pass
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads,
            "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
            "torch": torch.__version__, "python": platform.python_version(),
            "mem_total_gb": round(meminfo("MemTotal") / 2**30, 1),
            "load_avg_1min_at_start": os.getloadavg()[0]}


# --- inputs and models -----------------------------------------------------------


def size_for(megapixels: float) -> tuple[int, int]:
    """Width and height (multiples of 4, aspect 3:2) of about ``megapixels``."""
    width = round((megapixels * 1e6 * 1.5) ** 0.5 / 4) * 4
    return width, round(width / 1.5 / 4) * 4


def photos() -> list[Path]:
    folder = DATA / "photo"
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


def make_photo(width: int, height: int, index: int = 0, fallback: Path | None = None):
    """A real photo resized up to width×height (from the data set, else ``fallback`` if
    given), or a synthetic one."""
    import numpy as np
    from PIL import Image
    found = photos() or ([fallback] if fallback and fallback.is_file() else [])
    if found:
        with Image.open(found[index % len(found)]) as im:
            small = im.convert("RGB")
    else:
        rng = np.random.default_rng(index)
        y, x = np.mgrid[0:256, 0:256] / 255.0
        base = np.stack([x, y, 1 - x * y], -1) * 200 + rng.normal(0, 20, (256, 256, 3))
        small = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    return np.asarray(small.resize((width, height), Image.Resampling.BICUBIC))


def build_model(name: str, smoke: bool = False):
    """A model by name at its published size (tiny in smoke mode), seeded random weights."""
    import torch

    from benchmarks.reference_models import ResnetGenerator, TransformerNet
    from siamgan.models import GeneratorConfig, PatchGenerator
    torch.manual_seed(0)
    if name == "siamgan":
        return PatchGenerator(GeneratorConfig(4, 1) if smoke else GeneratorConfig())
    if name == "cyclegan-resnet9":
        return ResnetGenerator(4, 1) if smoke else ResnetGenerator()
    if name == "transformernet":
        return TransformerNet(4, 1) if smoke else TransformerNet()
    raise ValueError(f"unknown model {name!r}")


def siamgan_generator(smoke: bool = False):
    """(generator, where its weights come from): the shipped style if present, else random."""
    if SHIPPED.is_file() and not smoke:
        from siamgan.stylize import Stylizer
        return Stylizer.from_style(str(SHIPPED), "cpu").generator, str(SHIPPED.relative_to(REPO))
    return build_model("siamgan", smoke), "random"


def style_file(folder: Path, smoke: bool) -> Path:
    """The shipped style if there is one, else random default weights saved as a style."""
    from dataclasses import asdict

    from siamgan.weights_io import save_weights
    if SHIPPED.is_file() and not smoke:
        return SHIPPED
    gen = build_model("siamgan", smoke)
    return save_weights(folder / "bench.safetensors", gen.state_dict(),
                        {"kind": "style", "name": "bench", "tile_size": 64,
                         "generator": asdict(gen.config)})


def macs_per_pixel(model, side: int = 64) -> float:
    """Multiply-adds of every convolution per input pixel (biases, norms, activations excluded)."""
    import torch
    from torch import nn
    total = 0

    def count(m, inputs, out) -> None:
        nonlocal total
        kernel = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):  # every input value meets out_channels kernels
            total += inputs[0].numel() * m.out_channels // m.groups * kernel
        else:
            total += out.numel() * m.in_channels // m.groups * kernel
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    hooks = [m.register_forward_hook(count) for m in convs]
    with torch.inference_mode():
        model(torch.zeros(1, 3, side, side))
    for h in hooks:
        h.remove()
    return total / side**2


def activation_bytes_per_pixel(model, side: int = 64) -> float:
    """Largest (input + output) of any layer, in bytes per image pixel: a peak-memory floor."""
    import torch
    worst = 0

    def see(m, inputs, out) -> None:
        nonlocal worst
        if len(list(m.children())) == 0 and inputs and torch.is_tensor(inputs[0]):
            worst = max(worst, (inputs[0].numel() + out.numel()) * out.element_size())
    hooks = [m.register_forward_hook(see) for m in model.modules()]
    with torch.inference_mode():
        model(torch.zeros(1, 3, side, side))
    for h in hooks:
        h.remove()
    return worst / side**2


# --- cases, run in child processes -------------------------------------------------


def _timed(fn, min_time: float, max_reps: int = 5) -> dict:
    """Best wall time of ``fn`` over repetitions that together last about ``min_time``."""
    walls, cpus = [], []
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if sum(walls) >= min_time or len(walls) >= max_reps:
            break
    best = min(range(len(walls)), key=walls.__getitem__)
    return {"seconds": walls[best], "cpu_seconds": cpus[best], "reps": len(walls)}


def case_matmul(spec: dict) -> dict:
    import torch
    n = 512 if spec["smoke"] else 4096
    out = {"n": n}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n, dtype=getattr(torch, dtype))
        b = torch.randn(n, n, dtype=getattr(torch, dtype))
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b), 0, 1)["seconds"] for _ in range(3))  # noqa: B023
        out[f"{dtype}_gflops"] = 2 * n**3 / best / 1e9
    return out


def case_model(spec: dict) -> dict:
    """One model over one image size: throughput and peak RSS."""
    import torch

    from siamgan.images import to_model_range, to_pixels
    from siamgan.stylize import Stylizer, TileConfig
    w, h = spec["width"], spec["height"]
    pixels = make_photo(w, h)
    if spec["model"] == "siamgan":
        model, weights = siamgan_generator(spec["smoke"])
        stylizer = Stylizer(model, 64, "cpu", precision=spec["precision"])
        tiling = TileConfig(batch_size=spec["batch_size"])

        def run():
            return stylizer.stylize_array(pixels, tiling)
        stylizer.stylize_array(pixels[:256, :512], tiling)  # warm-up: oneDNN primitives
    else:
        model, weights = build_model(spec["model"], spec["smoke"]).eval(), "random"

        @torch.inference_mode()
        def run():  # the whole image in one forward, as the peers' users run them
            return to_pixels(model(to_model_range(pixels)[None])[0])
        with torch.inference_mode():
            model(torch.zeros(1, 3, 64, 64))
    base = proc_status().get("VmRSS", 0) / 2**20
    limit_memory(spec["mem_limit"])
    reset_peak_rss()
    out = _timed(run, spec["min_time"])
    return {**out, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base, "weights": weights}


def case_command(spec: dict) -> dict:
    """The real ``siamgan stylize`` on one JPEG: decode → stylize → encode."""
    from PIL import Image

    from siamgan.cli import app
    with tempfile.TemporaryDirectory(prefix="siamgan-bench-") as folder:
        tmp = Path(folder)
        src, dst, report = tmp / "photo.jpg", tmp / "out" / "photo.jpg", tmp / "report.json"
        Image.fromarray(make_photo(spec["width"], spec["height"])).save(src, quality=95)
        args = ["stylize", str(src), "-o", str(dst), "--device", "cpu",
                "--weights", str(style_file(tmp, spec["smoke"])),
                "--batch-size", str(spec["batch_size"]), "--report", str(report)]
        if spec["precision"] != "float32":
            args += ["--precision", spec["precision"]]
        base = proc_status().get("VmRSS", 0) / 2**20
        limit_memory(spec["mem_limit"])
        reset_peak_rss()
        t0 = time.perf_counter()
        try:
            code = app(args, standalone_mode=False)
        except SystemExit as e:
            code = e.code
        seconds = time.perf_counter() - t0
        done = json.loads(report.read_text())
    if code or not done["converted"]:
        raise RuntimeError(f"stylize exited {code}: {done['failed']}")
    return {"seconds": seconds, "model_seconds": done["converted"][0]["seconds"],
            "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base}


def case_train(spec: dict) -> dict:
    """A few steps of the default recipe (tiny in smoke mode); timings from stats.jsonl."""
    with tempfile.TemporaryDirectory(prefix="siamgan-bench-train-") as folder:
        return _train_in(Path(folder), spec)


def _train_in(tmp: Path, spec: dict) -> dict:
    import torch

    from siamgan.models import DiscriminatorConfig, GeneratorConfig
    from siamgan.train import TrainConfig, train
    if spec["smoke"] or not DATA.is_dir():
        from PIL import Image
        width, height = spec.get("synthetic_size", (96, 64))
        for domain in ("a", "b"):
            (tmp / domain).mkdir()
            for i in range(3):
                Image.fromarray(make_photo(width, height, i)).save(tmp / domain / f"{i}.png")
        a, b = tmp / "a", tmp / "b"
    else:
        a, b = DATA / "photo", DATA / "vangogh"
    tiny = dict(tile_size=8, batch_size=2, generator=GeneratorConfig(4, 1),
                discriminator=DiscriminatorConfig(8, 4, 2)) if spec["smoke"] else {}
    cfg = TrainConfig(steps=spec["steps"], sample_every=10**9, checkpoint_every=10**9,
                      device=spec.get("device", "cpu"), **tiny)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    train(cfg, a, b, "bench", tmp / "runs", export=False, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in (tmp / "runs" / "bench" / "stats.jsonl").open()]
    timed = rows[spec.get("warm_steps", 1):] or rows  # the first steps pay one-off start-up
    step_s = sum(r["step_s"] for r in timed)
    return {"steps": len(rows), "batch_size": cfg.batch_size, "tile_size": cfg.tile_size,
            "steps_per_s": len(timed) / step_s, "data_wait_share": sum(r["data_s"] for r in timed)
            / step_s, "wall_seconds_incl_loading": wall, "peak_rss_mb": peak_rss_mb()}


def run_case(spec: dict) -> dict:
    """Run one case here; an allocation failure or any error is a result, not a crash."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(spec["threads"])
    cases = {"matmul": case_matmul, "model": case_model, "command": case_command,
             "train": case_train, "tune": tune}
    try:
        return {"status": "ok", **cases[spec["kind"]](spec)}
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        oom = isinstance(e, MemoryError) or "alloc" in text.lower() or "memory" in text.lower()
        return {"status": "out of memory" if oom else "error", "error": text[:300]}
    finally:
        torch.set_num_threads(threads)


# --- the parent ----------------------------------------------------------------


def run_in_process(spec: dict, timeout: float) -> dict:
    """:func:`run_child` without the child: fast, for smoke runs; peak RSS then includes
    whatever this process already held, and neither limit applies."""
    start, t0 = cpu_seconds(), time.perf_counter()
    result = run_case({**spec, "mem_limit": 0})
    return {**result, "other_load_cores": others_cores(start, time.perf_counter() - t0)}


def run_child(spec: dict, timeout: float) -> dict:
    """Run one case in a fresh ``python -m benchmarks.bench --child`` process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "benchmarks.bench", "--child", json.dumps(spec)]
    start, t0 = cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "over time cap", "error": f"killed after {timeout:.0f} s"}
    load = {"other_load_cores": others_cores(start, time.perf_counter() - t0)}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if lines:
        return {**json.loads(lines[-1][len(RESULT):]), **load}
    why = "killed (out of memory?)" if proc.returncode == -9 else f"exit {proc.returncode}"
    return {"status": "crashed", "error": f"{why}: {proc.stderr[-300:]}", **load}


def guard(key: str, mp: float, done: list[dict], est_bytes: float, args) -> str | None:
    """Why a case must not run (memory or time predicted over the limits), or None."""
    earlier = [r for r in done if r["key"] == key and r["megapixels"] < mp]
    last = earlier[-1] if earlier else None
    if last and last["status"] != "ok":
        return f"skipped: {last['status']} at {last['megapixels']:g} MP"
    if last and "peak_rss_mb" in last:  # measured growth, scaled by area
        grown = last["base_rss_mb"] + (last["peak_rss_mb"] - last["base_rss_mb"]) \
            * mp / last["megapixels"]
        est_bytes = max(est_bytes, grown * 2**20)
    if est_bytes > args.mem_limit_gb * 2**30:
        return f"skipped: would need ~{est_bytes / 2**30:.1f} GB > {args.mem_limit_gb:.1f} GB"
    if last and mp / last["mp_per_s"] > args.time_cap:
        return f"skipped: est. {mp / last['mp_per_s']:.0f} s > time cap {args.time_cap:.0f} s"
    return None


def run_benchmark(args) -> dict:
    from siamgan.models import count_parameters
    smoke = args.smoke
    common = {"threads": args.threads, "smoke": smoke, "batch_size": args.batch_size,
              "mem_limit": int(args.mem_limit_gb * 2**30), "min_time": 0 if smoke else 10}
    result: dict = {"machine": machine(args.threads), "config": vars(args).copy(),
                    "models": {}, "model": [], "command": []}
    start, t0 = cpu_seconds(), time.perf_counter()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    for name in MODELS:
        m = build_model(name, smoke)
        result["models"][name] = {"parameters": count_parameters(m),
                                  "macs_per_pixel": macs_per_pixel(m),
                                  "activation_bytes_per_pixel": activation_bytes_per_pixel(m)}
    execute = run_in_process if args.in_process else run_child
    say("matmul ceiling …")
    matmuls = [execute({**common, "kind": "matmul"}, 600)]
    timeout = args.time_cap * 1.5 + 120
    pool = ThreadPoolExecutor(args.jobs)
    for mp in args.sizes:
        w, h = size_for(mp)
        cases = []
        for name in args.models:
            for precision in (args.precisions if name == "siamgan" else ["float32"]):
                key = f"{name} {precision}" if name == "siamgan" else name
                per_px = result["models"][name]["activation_bytes_per_pixel"]
                est = 0 if name == "siamgan" else per_px * 2 * w * h  # 2×: format copies
                cases.append(("model", key, {**common, "kind": "model", "model": name,
                                             "precision": precision}, est))
                if name == "siamgan" and not args.no_command:
                    cases.append(("command", key, {**common, "kind": "command",
                                                   "precision": precision}, 0))
        runs = []
        for table, key, spec, est in cases:
            row = {"key": key, "megapixels": mp, "width": w, "height": h}
            why = guard(key, mp, result[table], est, args)
            spec = {**spec, "width": w, "height": h}
            runs.append((table, row, pool.submit(lambda s=spec: execute(s, timeout))
                         if why is None else None, why))
        for table, row, future, why in runs:
            row.update(future.result() if future else {"status": why})
            if row["status"] == "ok":
                row["mp_per_s"] = w * h / 1e6 / row["seconds"]
            result[table].append(row)
            say(f"{mp:g} MP {table:7s} {row['key']:18s} {row['status']}"
                + (f" {row['seconds']:.1f} s" if "seconds" in row else f" {row.get('error', '')}"))
    if not args.no_train:
        say("training …")
        result["training"] = execute({**common, "kind": "train",
                                        "steps": 3 if smoke else args.train_steps}, 1800)
    pool.shutdown()
    say("matmul ceiling again …")  # a ceiling: the better of the run's start and end
    matmuls.append(execute({**common, "kind": "matmul"}, 600))
    result["matmul"] = {**max(matmuls, key=lambda m: m.get("float32_gflops", 0)),
                        "runs": matmuls}
    for dtype in ("float32", "bfloat16"):
        result["matmul"][f"{dtype}_gflops"] = max(m.get(f"{dtype}_gflops", 0) for m in matmuls)
    wall = time.perf_counter() - t0
    result["machine"].update(wall_seconds=wall, other_load_cores=others_cores(start, wall))
    add_derived(result)
    return result


def add_derived(result: dict) -> None:
    """GFLOP/s of the work done, fraction of the matmul ceiling, command/model ratios, targets.

    The ceiling is the matmul of the same precision: bf16 rows against the bf16 matmul.
    """
    by_key = {(r["key"], r["megapixels"]): r for r in result["model"]}
    for r in result["model"]:
        if r["status"] != "ok":
            continue
        name = r["key"].split()[0]
        px = r["width"] * r["height"]
        if name == "siamgan":  # tiles cover the image padded to whole tiles
            px = -(-r["width"] // 64) * -(-r["height"] // 64) * 64 * 64
        r["gflops"] = 2 * result["models"][name]["macs_per_pixel"] * px / r["seconds"] / 1e9
        precision = r.get("ceiling") or ("bfloat16" if r["key"].endswith("bfloat16")
                                         else "float32")
        if ceiling := result["matmul"].get(f"{precision}_gflops"):
            r["matmul_fraction"] = r["gflops"] / ceiling
        # Beyond the uint8 output image (the input is already in the base): for siamgan a
        # band of tiles, so it grows with the width; for the peers every activation.
        r["working_mb"] = r["peak_rss_mb"] - r["base_rss_mb"] - r["width"] * r["height"] * 3 / 2**20
    for r in result["command"]:
        model = by_key.get((r["key"], r["megapixels"]))
        if r["status"] == "ok" and model and model["status"] == "ok":
            r["command_over_model"] = r["seconds"] / model["seconds"]
    result["targets"] = targets(result, by_key)


def targets(result: dict, by_key: dict) -> dict:
    sizes = sorted({r["megapixels"] for r in result["model"]})
    mid = 12 if 12 in sizes else max(sizes, default=None)
    big = max(sizes, default=None)
    out: dict = {}

    def rate(key, mp):
        r = by_key.get((key, mp))
        return r.get("mp_per_s") if r else None
    for precision in result["config"]["precisions"]:
        ours = rate(f"siamgan {precision}", mid)
        for peer, goal in (("cyclegan-resnet9", 5.0), ("transformernet", 1.5)):
            theirs = rate(peer, mid)
            if ours and theirs:
                out[f"speed vs {peer} at {mid:g} MP ({precision})"] = {
                    "value": ours / theirs, "target": f">= {goal}", "met": ours / theirs >= goal}
        r = by_key.get((f"siamgan {precision}", mid))
        if r and "matmul_fraction" in r:
            out[f"fraction of the {precision} matmul at {mid:g} MP"] = {
                "value": r["matmul_fraction"], "target": ">= 0.5",
                "met": r["matmul_fraction"] >= 0.5}
        for c in result["command"]:
            if c["key"] == f"siamgan {precision}" and c["megapixels"] == mid \
                    and "command_over_model" in c:
                out[f"command / model time at {mid:g} MP ({precision})"] = {
                    "value": c["command_over_model"], "target": "<= 2",
                    "met": c["command_over_model"] <= 2}
            if c["key"] == f"siamgan {precision}" and c["megapixels"] == big \
                    and c["status"] == "ok":
                out[f"command peak RSS at {big:g} MP ({precision}), GB"] = {
                    "value": c["peak_rss_mb"] / 1024, "target": "<= 1.5",
                    "met": c["peak_rss_mb"] <= 1.5 * 1024}
        ok = [r for r in result["model"] if r["key"] == f"siamgan {precision}"
              and r["status"] == "ok"]
        if len(ok) >= 2:  # memory beyond the input and output images: a band, not the area
            a, b = ok[-2], ok[-1]
            growth = max(b["working_mb"], 1) / max(a["working_mb"], 1)
            width, area = b["width"] / a["width"], b["megapixels"] / a["megapixels"]
            out[f"working memory growth {a['megapixels']:g}→{b['megapixels']:g} MP "
                f"({precision})"] = {"value": growth,
                                     "target": f"~ width ×{width:.2f}, not area ×{area:.2f}",
                                     "met": growth <= 1.25 * width}
    return out


# --- tuning siamgan ----------------------------------------------------------------


def tune(spec: dict) -> dict:
    """siamgan's speed options on one image, interleaved so load drifts hit all alike."""
    import copy

    import numpy as np
    import torch

    from siamgan.stylize import Stylizer, TileConfig
    class Autocast(torch.nn.Module):
        """bf16 autocast over the whole generator: the alternative that was rejected."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, torch.bfloat16):
                return self.inner(x).float()

    w, h = spec["width"], spec["height"]
    gen, weights = siamgan_generator(spec["smoke"])
    variants = {"float32 NCHW (old default)": dict(precision="float32", channels_last=False),
                "float32 channels_last": dict(precision="float32"),
                "bfloat16 channels_last": dict(precision="bfloat16"),
                "bfloat16 autocast channels_last": dict(autocast=True)}
    if spec["compile"]:
        variants["float32 channels_last compiled"] = dict(precision="float32", compile=True)
        variants["bfloat16 channels_last compiled"] = dict(precision="bfloat16", compile=True)

    def stylizer(autocast: bool = False, **options) -> Stylizer:
        model = copy.deepcopy(gen)
        return Stylizer(Autocast(model) if autocast else model, 64, "cpu", **options)
    runs = {name: (stylizer(**kw), spec["threads"], spec["batch_size"])
            for name, kw in variants.items()}
    for prec in ("float32", "bfloat16"):
        for bs in (8, 32, 64):
            runs[f"{prec} channels_last batch {bs}"] = (runs[f"{prec} channels_last"][0],
                                                        spec["threads"], bs)
        if spec["threads"] > 1:
            runs[f"{prec} channels_last 1 thread"] = (runs[f"{prec} channels_last"][0], 1,
                                                      spec["batch_size"])
    pixels = make_photo(w, h)
    out: dict = {"width": w, "height": h, "weights": weights, "variants": {}}
    for name, (stylizer, _, bs) in runs.items():  # warm-up; compile time for compiled ones
        t0 = time.perf_counter()
        stylizer.stylize_array(pixels[:128, :1024], TileConfig(batch_size=bs))
        out["variants"][name] = {"warm_up_s": time.perf_counter() - t0, "seconds": []}
    for _ in range(spec["rounds"]):
        for name, (stylizer, threads, bs) in runs.items():
            torch.set_num_threads(threads)
            t = _timed(lambda s=stylizer, b=bs: s.stylize_array(pixels, TileConfig(batch_size=b)),
                       0, 1)
            out["variants"][name]["seconds"].append(t["seconds"])
            out["variants"][name].setdefault("cpu_seconds", []).append(t["cpu_seconds"])
    torch.set_num_threads(spec["threads"])
    for v in out["variants"].values():
        v["mp_per_s"] = w * h / 1e6 / min(v["seconds"])
        v["mp_per_cpu_s"] = w * h / 1e6 / min(v["cpu_seconds"])
    # Error against the float32 NCHW path on real photos, in uint8 levels.
    errors: dict = {}
    for i in range(3):
        photo = make_photo(w, h, i)
        ref = runs["float32 NCHW (old default)"][0].stylize_array(photo).astype(np.int16)
        for name in variants:
            if name.startswith("float32 NCHW"):
                continue
            diff = np.abs(runs[name][0].stylize_array(photo).astype(np.int16) - ref)
            e = errors.setdefault(name, {"max": 0, "mean": [], "p999": [], "over_4": []})
            e["max"] = max(e["max"], int(diff.max()))
            e["mean"].append(float(diff.mean()))
            e["p999"].append(float(np.percentile(diff, 99.9)))
            e["over_4"].append(float((diff > 4).mean()))
    out["error_vs_float32"] = {k: {"max": v["max"], "mean": float(np.mean(v["mean"])),
                                   "p99.9": max(v["p999"]), "share_over_4": max(v["over_4"])}
                               for k, v in errors.items()}
    out["error_photos"] = [str(p) for p in photos()[:3]] or "synthetic"
    return out


def format_tune(res: dict) -> str:
    lines = [f"siamgan options on {res['width']}×{res['height']} "
             f"({res['width'] * res['height'] / 1e6:.3g} MP), weights {res['weights']}; best of "
             f"the rounds; other processes kept {res.get('other_load_cores', 0):.1f} cores busy",
             f"{'variant':40s} {'MP/s':>6s} {'MP/cpu-s':>9s} {'warm-up s':>10s}"]
    for name, v in res["variants"].items():
        lines.append(f"{name:40s} {v['mp_per_s']:6.3f} {v['mp_per_cpu_s']:9.3f} "
                     f"{v['warm_up_s']:10.1f}")
    lines.append("error against float32 NCHW, uint8 levels (3 photos): max / mean / p99.9 "
                 "/ share > 4")
    for name, e in res["error_vs_float32"].items():
        lines.append(f"  {name:38s} {e['max']:3d} / {e['mean']:.3f} / {e['p99.9']:.1f} / "
                     f"{e['share_over_4']:.2e}")
    return "\n".join(lines)


# --- output ------------------------------------------------------------------------


def _load_mark(row: dict) -> str:
    """``*`` for a case that ran while other processes kept ≥ 0.25 cores busy."""
    return "*" if row.get("other_load_cores", 0) >= 0.25 else ""


def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "–"


Column = tuple[str, int, Callable[[dict], str]]
"""A table column: header, width, and the cell text of a row."""


def table_lines(title: str, rows: list[dict], columns: list[Column],
                mark: Callable[[dict], str] = lambda r: "", status: bool = False) -> list[str]:
    """A table of cases (CPU or GPU): key and size, then ``columns``.

    With ``status`` a column says "ok", or why the case failed and the row ends there;
    without it a failed case's status follows its cells.
    """
    head = " ".join(f"{h:>{w}s}" for h, w, _ in columns)
    lines = ["", f"{title:28s} {'MP':>4s} " + (f"{'status':>7s} " if status else "") + head]
    for r in rows:
        lead = f"{mark(r) + r['key']:28s} {r['megapixels']:4g}"
        if status and r["status"] != "ok":
            lines.append(f"{lead} {r['status']:>7s} {r.get('error', '')}".rstrip())
            continue
        cells = " ".join(f"{cell(r):>{w}s}" for _, w, cell in columns)
        lines.append(f"{lead} {'ok':>7s} {cells}" if status else
                     f"{lead} {cells}" + ("" if r["status"] == "ok" else f"  {r['status']}"))
    return lines


def models_lines(res: dict) -> list[str]:
    """Parameters and multiply-adds per pixel of each benchmarked model."""
    return ["", f"{'model':18s} {'params':>8s} {'MACs/px':>8s}",
            *(f"{name:18s} {info['parameters'] / 1e6:7.2f}M {info['macs_per_pixel']:8.0f}"
              for name, info in res["models"].items())]


def training_lines(t: dict, rate_fmt: str, extra: str = "") -> list[str]:
    """The training case's line: steps/s, the share of step time waiting for data."""
    return ["", f"training (default recipe, batch {t.get('batch_size')}, tile "
            f"{t.get('tile_size')}): {_num(t.get('steps_per_s'), rate_fmt)} steps/s, "
            f"waiting for data {_num(t.get('data_wait_share'), '.1%')} of step time{extra}"
            + ("" if t["status"] == "ok" else f"  {t['status']}: {t.get('error')}")]


def format_tables(res: dict) -> str:
    if res["config"].get("device", "cpu") != "cpu":
        from benchmarks.bench_gpu import format_tables_gpu
        return format_tables_gpu(res)
    m = res["machine"]
    mm = res["matmul"]
    busy = m.get("other_load_cores", 0)
    weights = {r.get("weights") for r in res["model"] if r["key"].startswith("siamgan")}
    lines = [f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}; "
             f"other processes kept {busy:.1f} cores busy on average "
             f"({'NOISY: timings are indicative only' if busy > 0.25 else 'quiet'})",
             f"matmul ceiling ({mm.get('n')}²): float32 {_num(mm.get('float32_gflops'), '.0f')} "
             f"GFLOP/s, bfloat16 {_num(mm.get('bfloat16_gflops'), '.0f')} GFLOP/s; siamgan "
             f"weights: {', '.join(sorted(str(w) for w in weights if w)) or '?'}",
             *models_lines(res)]
    lines += table_lines("model (one forward)", res["model"], [
        ("s", 7, lambda r: f"{r['seconds']:.1f}"),
        ("MP/s", 7, lambda r: f"{r['mp_per_s']:.3f}"),
        ("GFLOP/s", 8, lambda r: _num(r.get("gflops"), ".1f")),
        ("of mm", 6, lambda r: _num(r.get("matmul_fraction"), ".0%")),
        ("peak RSS", 9, lambda r: f"{r['peak_rss_mb']:.0f} MB"),
        ("working", 9, lambda r: f"{r['working_mb']:.0f} MB"),
    ], mark=_load_mark, status=True)
    if res["command"]:
        lines += table_lines("siamgan stylize (JPEG→JPEG)", res["command"], [
            ("s", 7, lambda r: _num(r.get("seconds"), ".1f")),
            ("MP/s", 7, lambda r: _num(r.get("mp_per_s"), ".3f")),
            ("model s", 8, lambda r: _num(r.get("model_seconds"), ".1f")),
            ("÷ model", 8, lambda r: _num(r.get("command_over_model"), ".2f")),
            ("peak RSS", 9, lambda r: _num(r.get("peak_rss_mb"), ".0f") + " MB"),
        ], mark=_load_mark)
    if res.get("training"):
        lines += training_lines(res["training"], ".3f")
    if any(_load_mark(r) for r in res["model"] + res["command"]):
        lines += ["", "* measured while other processes kept ≥ 0.25 cores busy: too slow"]
    if res.get("targets"):
        lines += ["", "targets (smoke run: toy models, not meaningful):" if res["config"]["smoke"]
                  else "targets:"]
        for name, v in res["targets"].items():
            lines.append(f"  {'met ' if v['met'] else 'MISS'} {name}: {v['value']:.2f} "
                         f"(target {v['target']})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", help="megapixels, comma-separated (default 1,4,12,50; "
                   "--tune: 4)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the same table on a GPU (benchmarks/bench_gpu.py)")
    unset = argparse.SUPPRESS  # defaults that depend on --device, resolved below
    p.add_argument("--time-cap", type=float, default=unset,
                   help="seconds per case (default 300; cuda 30)")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--smoke", action="store_true", help=f"tiny models at {SMOKE_MP} MP")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--precisions", default=unset, help="siamgan's precisions (default "
                   "float32,bfloat16; cuda: float32,bfloat16,bfloat16-autocast,float16)")
    p.add_argument("--peer-precisions", default=unset, help="cuda only: the peers' precisions "
                   "(default float32,bfloat16; bfloat16 = autocast)")
    p.add_argument("--batch-size", type=int, default=unset,
                   help="siamgan tiles per forward (default 16; cuda 256)")
    p.add_argument("--no-cudnn-benchmark", action="store_true",
                   help="cuda: leave cuDNN autotuning off in the model cases")
    p.add_argument("--mem-limit-gb", type=float,
                   default=round(max(meminfo("MemAvailable") / 2**30 - 1.5, 1.0), 1),
                   help="cases predicted to need more are skipped; children fail above it")
    p.add_argument("--train-steps", type=int, default=unset,
                   help="default 6; cuda 30, of which the first 3 are not timed")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-command", action="store_true")
    p.add_argument("--jobs", type=int, default=1,
                   help="cases run at once (timings are then meaningless)")
    p.add_argument("--in-process", action="store_true",
                   help="run cases in this process, not one child each (fast, for smoke runs; "
                        "peak RSS then approximate, no memory limit)")
    p.add_argument("--tune", action="store_true", help="measure siamgan's speed options")
    p.add_argument("--tune-compile", action="store_true", help="--tune with torch.compile too")
    p.add_argument("--rounds", type=int, default=2, help="--tune rounds")
    p.add_argument("--render", type=Path, help="print the tables of a saved --json and exit")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    default = "4" if args.tune or args.tune_compile else "1,4,12,50"
    args.sizes = [SMOKE_MP] if args.smoke else [float(s) for s in (args.sizes or default)
                                                  .split(",")]
    args.models = args.models.split(",")
    cuda = args.device == "cuda"
    defaults = {"time_cap": 30.0 if cuda else 300.0, "batch_size": 256 if cuda else 16,
                "train_steps": 30 if cuda else 6,
                "precisions": "float32,bfloat16,bfloat16-autocast,float16" if cuda
                else "float32,bfloat16", "peer_precisions": "float32,bfloat16" if cuda
                else "float32"}
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    args.precisions = args.precisions.split(",")
    args.peer_precisions = args.peer_precisions.split(",")
    if cuda:
        from benchmarks.bench_gpu import PEER_PRECISIONS, PRECISIONS
        if bad := set(args.precisions) - set(PRECISIONS):
            p.error(f"--device cuda: unknown precisions {sorted(bad)}; use {PRECISIONS}")
        if bad := set(args.peer_precisions) - set(PEER_PRECISIONS):
            p.error(f"--device cuda: unknown peer precisions {sorted(bad)}")
        if args.tune or args.tune_compile or args.jobs > 1:
            p.error("--device cuda runs neither --tune nor --jobs")
    elif args.peer_precisions != ["float32"]:
        p.error("--peer-precisions needs --device cuda (on the CPU the peers run float32)")
    if args.jobs > 1 and args.in_process:
        p.error("--jobs needs child processes; drop --in-process")
    if unknown := set(args.models) - set(MODELS):
        p.error(f"unknown models {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        if spec["kind"] == "group":  # --device cuda: several cases, one line each
            from benchmarks.bench_gpu import child_main
            child_main(spec)
        else:
            print(RESULT + json.dumps(run_case(spec)), flush=True)
        return {}
    if args.render:
        res = json.loads(args.render.read_text())
        add_derived(res)
        print(format_tables(res))
        return res
    if args.tune or args.tune_compile:
        w, h = size_for(args.sizes[0])
        machine_info = machine(args.threads)
        res = run_child({"kind": "tune", "threads": args.threads, "smoke": args.smoke,
                         "batch_size": args.batch_size, "width": w, "height": h,
                         "compile": args.tune_compile, "rounds": args.rounds}, 3600)
        res["machine"] = machine_info
        print(format_tune(res) if res["status"] == "ok" else res)
    elif args.device == "cuda":
        from benchmarks.bench_gpu import run_benchmark_gpu
        res = run_benchmark_gpu(args)
        print(format_tables(res))
    else:
        res = run_benchmark(args)
        print(format_tables(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


if __name__ == "__main__":
    main()
