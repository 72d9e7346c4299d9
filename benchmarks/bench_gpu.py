"""The benchmark on a CUDA GPU: ``python -m benchmarks.bench --device cuda``.

The same table as on the CPU (:mod:`benchmarks.bench`), measured as a GPU needs:

* **children**: one child process per group of cases (the matmul and siamgan; each
  peer; the command; training), not one per case, so torch and CUDA start five
  times. A child prints a line as each case starts and ends; the parent kills a
  child whose case runs past the time cap, records ``timeout`` and starts a fresh
  child for the cases left. Peak RSS (``VmHWM``) and peak GPU memory
  (``torch.cuda.max_memory_allocated``) are reset before every case.
* **timing**: ``torch.cuda.synchronize()`` around every pass, after a warm-up pass
  that pays cuDNN's autotuning (``torch.backends.cudnn.benchmark``, which siamgan
  itself does not set, is on in the model cases unless ``--no-cudnn-benchmark``);
  best of the passes lasting ``min_time``. A warm-up longer than the time cap is a
  ``timeout``; a peer out of GPU memory is ``OOM``; neither is dropped.
* **precisions** (siamgan): ``float32`` (cuDNN uses TF32 for it when
  ``torch.backends.cudnn.allow_tf32``, torch's default; reported), ``bfloat16``
  (siamgan's own option, :func:`siamgan.stylize.bfloat16_convolutions`, as the CLI's
  ``--precision bfloat16``), ``bfloat16-autocast`` and ``float16`` (``torch.autocast``
  over the whole generator). The peers run ``float32`` and ``bfloat16`` (autocast).
  Each reduced precision's output is compared with the same model's float32 output on
  the same photo: max and mean absolute error in uint8 levels, PSNR. Where cuDNN runs
  float32 in TF32, that reference is an extra, untimed pass with TF32 off, and the
  float32 row gets TF32's own error.
* **matmul ceiling**: an 8192² ``torch.mm`` in float32 (IEEE), TF32, bfloat16 and
  float16; each row's GFLOP/s is compared with the ceiling of its precision.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import bench

PRECISIONS = ("float32", "bfloat16", "bfloat16-autocast", "float16")
PEER_PRECISIONS = ("float32", "bfloat16")
CLI_PRECISIONS = ("float32", "bfloat16")  # what `siamgan stylize --precision` takes
AUTOCAST = {"bfloat16-autocast": "bfloat16", "float16": "float16"}
START = "BENCH-START "
QUALITY = {"max": 10, "mean": 0.25}
"""Where quality holds: as close to float32 as the CPU's bfloat16 option (9 / 0.16)."""


# --- in the child ----------------------------------------------------------------


class PastTimeCap(Exception):
    """A warm-up pass alone took longer than the time cap."""


def ceiling_for(precision: str, tf32_convs: bool) -> str:
    """The matmul whose rate bounds a model run at ``precision``."""
    if precision == "float32":
        return "tfloat32" if tf32_convs else "float32"
    return "float16" if precision == "float16" else "bfloat16"


def autocast_generator(inner, dtype: str):
    """``inner`` under ``torch.autocast`` of ``dtype``, returning float32."""
    import torch

    class Autocast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, getattr(torch, dtype)):
                return self.inner(x).float()
    return Autocast()


def error_stats(out, ref, rows: int = 512) -> dict:
    """Max and mean absolute error (uint8 levels), share of values > 4 off, and PSNR."""
    import numpy as np
    worst, total, over, sq = 0, 0, 0, 0.0
    for i in range(0, ref.shape[0], rows):  # in strips: 50 MP in int16 at once is 0.3 GB
        diff = np.abs(out[i:i + rows].astype(np.int16) - ref[i:i + rows].astype(np.int16))
        worst = max(worst, int(diff.max()))
        total += int(diff.sum(dtype=np.int64))
        over += int((diff > 4).sum())
        sq += float(np.square(diff, dtype=np.float64).sum())
    mse = sq / ref.size
    return {"max": worst, "mean": total / ref.size, "share_over_4": over / ref.size,
            "psnr_db": 10 * math.log10(255**2 / mse) if mse else None}


def skip_reason(key: str, mp: float, done: list[dict], time_cap: float) -> str | None:
    """Why a case is not run: its key failed at a smaller size, or it would pass the cap."""
    earlier = [r for r in done if r["key"] == key and r["megapixels"] < mp]
    if not earlier:
        return None
    last = earlier[-1]
    if last["status"].startswith("skipped"):
        return last["status"]
    if last["status"] != "ok":
        return f"skipped: {last['status']} at {last['megapixels']:g} MP"
    if mp / last["mp_per_s"] > time_cap:
        return f"skipped: est. {mp / last['mp_per_s']:.0f} s > time cap {time_cap:.0f} s"
    return None


class Group:
    """What the cases of one child share: models, the current photo, float32 outputs."""

    def __init__(self, spec: dict, folder: Path) -> None:
        import torch
        self.spec, self.folder = spec, folder
        self.device = torch.device(spec["device"])
        self.cuda = self.device.type == "cuda"
        self.models: dict = {}
        self.photo_key, self.pixels = None, None
        self.refs: dict = {}  # (model, megapixels) → float32 output
        self.warm: set[str] = set()
        self.done: list[dict] = list(spec.get("done", []))
        if self.cuda:  # the context first, so no case pays for it and memory stats work
            torch.empty(1, device=self.device)

    def sync(self) -> None:
        if self.cuda:
            import torch
            torch.cuda.synchronize(self.device)

    def photo(self, width: int, height: int):
        if self.photo_key != (width, height):
            self.pixels = None  # free the last size's photo first
            self.pixels = bench.make_photo(width, height, fallback=bench.EXAMPLE)
            self.photo_key = (width, height)
        return self.pixels

    def model(self, name: str, precision: str):
        """A siamgan Stylizer or a peer on the device, built once per child."""
        if (name, precision) in self.models:
            return self.models[name, precision]
        from siamgan.stylize import Stylizer
        if name == "siamgan":
            if "siamgan" not in self.models:
                self.models["siamgan"] = bench.siamgan_generator(self.spec["smoke"])
            gen, _ = self.models["siamgan"]
            gen = copy.deepcopy(gen)
            if precision in AUTOCAST:
                built = Stylizer(autocast_generator(gen, AUTOCAST[precision]), 64, self.device)
            else:
                built = Stylizer(gen, 64, self.device, precision=precision)
        else:  # float32 NCHW weights; bfloat16 is autocast around the forward
            built = self.models.get((name, "float32"))
            if built is None:
                built = bench.build_model(name, self.spec["smoke"]).eval().to(self.device)
        self.models[name, precision] = built
        return built

    def timed(self, run: Callable, warm: Callable) -> dict:
        """Best synchronised pass after a warm-up; passes stop at ``min_time`` or the cap."""
        cap, min_time = self.spec["time_cap"], self.spec["min_time"]
        self.sync()
        t0 = time.perf_counter()
        warm()
        self.sync()
        warm_s = time.perf_counter() - t0
        if warm_s > cap:
            raise PastTimeCap(f"warm-up pass took {warm_s:.1f} s > time cap {cap:.0f} s")
        walls, out = [], None
        while True:
            out = None  # the last pass's output is freed before the next one runs
            self.sync()
            t0 = time.perf_counter()
            out = run()
            self.sync()
            walls.append(time.perf_counter() - t0)
            spent = warm_s + sum(walls)
            if sum(walls) >= min_time or len(walls) >= 10 or spent + walls[-1] > cap:
                break
        return {"seconds": min(walls), "reps": len(walls), "warm_up_s": warm_s, "output": out}

    def peaks(self) -> tuple[float, float]:
        """Reset the peaks; return (RSS, GPU memory allocated) now, in MB."""
        import torch
        bench.reset_peak_rss()
        gpu = 0.0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            gpu = torch.cuda.memory_allocated(self.device) / 2**20
        return bench.proc_status().get("VmRSS", 0) / 2**20, gpu

    def peak_gpu_mb(self) -> float | None:
        import torch
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None


def gpu_info(device) -> dict:
    import torch
    info = {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_convs": torch.backends.cudnn.allow_tf32,
            "cudnn": torch.backends.cudnn.version(), "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gb=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count)
    else:
        info["name"] = f"{device} (the GPU path's machinery on the CPU)"
    return info


def case_matmul(case: dict, g: Group) -> dict:
    """torch.mm rates: float32 (IEEE), TF32, bfloat16, float16; plus the GPU's details."""
    import torch
    n = 256 if case["smoke"] else 8192
    out = {"n": n, "gpu": gpu_info(g.device)}
    legacy = torch.backends.cuda.matmul.allow_tf32
    for name, dtype, tf32 in (("float32", torch.float32, False), ("tfloat32", torch.float32,
                               True), ("bfloat16", torch.bfloat16, False),
                              ("float16", torch.float16, False)):
        if tf32 and not g.cuda:
            continue
        a, b = (torch.randn(n, n, device=g.device, dtype=dtype) for _ in range(2))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            reps = 1 if case["smoke"] or not g.cuda else 10
            best = math.inf
            for _ in range(4):  # the first round is a warm-up
                g.sync()
                t0 = time.perf_counter()
                for _ in range(reps):
                    torch.mm(a, b)
                g.sync()
                best = min(best, (time.perf_counter() - t0) / reps)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = legacy
        out[f"{name}_gflops"] = 2 * n**3 / best / 1e9
        del a, b
    return out


def to_pixels_on(y):
    """:func:`siamgan.images.to_pixels` computed on the tensor's device (float32, C×H×W)."""
    import torch
    y = y.float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return y.movedim(0, -1).contiguous().cpu().numpy()


def case_model(case: dict, g: Group) -> dict:
    """One model at one size and precision: speed, memory, error against float32."""
    import torch

    from siamgan.images import to_model_range
    from siamgan.stylize import TileConfig
    name, precision, w, h = case["model"], case["precision"], case["width"], case["height"]
    pixels = g.photo(w, h)
    model = g.model(name, precision)
    extra: dict = {}
    if name == "siamgan":
        tiling = TileConfig(batch_size=case["batch_size"])
        extra = {"weights": g.models["siamgan"][1],
                 "tiles_per_pass": min(case["batch_size"], -(-w // 64))}  # one band at most

        def run():
            return model.stylize_array(pixels, tiling)

        def warm():  # two bands: every batch shape of this width (cuDNN autotuning)
            return model.stylize_array(pixels[:128], tiling)
    else:
        upload = torch.tensor(pixels)  # a copy: the photo's array is read-only
        dtype = getattr(torch, precision) if precision != "float32" else None
        extra = {"weights": "random"}

        @torch.inference_mode()
        def run():  # uint8 up, the whole image in one forward, uint8 down
            x = to_model_range(upload.to(g.device))[None]
            with torch.autocast(g.device.type, dtype, enabled=dtype is not None):
                return to_pixels_on(model(x)[0])
        warm = run
    base_rss, base_gpu = g.peaks()
    t = g.timed(run, warm)
    out = t.pop("output")
    row = {**t, **extra, "precision": precision, "peak_rss_mb": bench.peak_rss_mb(),
           "base_rss_mb": base_rss, "peak_gpu_mb": g.peak_gpu_mb(), "base_gpu_mb": base_gpu,
           "ceiling": ceiling_for(precision, g.cuda and torch.backends.cudnn.allow_tf32)}
    if precision == "float32":
        ref = out
        if g.cuda and torch.backends.cudnn.allow_tf32:  # timed in TF32: the reference is IEEE
            torch.backends.cudnn.allow_tf32 = False
            try:
                ref = run()
            finally:
                torch.backends.cudnn.allow_tf32 = True
            row["error_vs_float32"] = error_stats(out, ref)
        g.refs = {k: v for k, v in g.refs.items() if k[1] == case["megapixels"]}
        g.refs[name, case["megapixels"]] = ref
    elif (ref := g.refs.get((name, case["megapixels"]))) is not None:
        row["error_vs_float32"] = error_stats(out, ref)
    return row


def case_command(case: dict, g: Group) -> dict:
    """``siamgan stylize`` on one JPEG, in this process, as the CLI runs (cuDNN settings
    untouched); the first command of each precision, on a small photo, is a warm-up."""
    from PIL import Image

    from siamgan.cli import app
    src = g.folder / f"photo-{case['width']}x{case['height']}.jpg"
    if not src.is_file():
        Image.fromarray(g.photo(case["width"], case["height"])).save(src, quality=95)
    style = bench.style_file(g.folder, case["smoke"])

    def stylize(photo: Path, name: str) -> tuple[float, dict]:
        report = g.folder / f"{name}.json"
        args = ["stylize", str(photo), "-o", str(g.folder / name / photo.name), "--device",
                str(g.device), "--weights", str(style), "--batch-size",
                str(case["batch_size"]), "--report", str(report), "--overwrite"]
        if case["precision"] != "float32":
            args += ["--precision", case["precision"]]
        g.sync()
        t0 = time.perf_counter()
        try:
            code = app(args, standalone_mode=False)
        except SystemExit as e:
            code = e.code
        g.sync()
        seconds = time.perf_counter() - t0
        done = json.loads(report.read_text())
        if code or not done["converted"]:
            raise RuntimeError(f"stylize exited {code}: {done['failed']}")
        return seconds, done
    warm_up = None
    if case["precision"] not in g.warm:
        small = g.folder / "warm-up.jpg"
        Image.fromarray(bench.make_photo(512, 384, fallback=bench.EXAMPLE)).save(small)
        warm_up, _ = stylize(small, f"warm-{case['precision']}")
        g.warm.add(case["precision"])
    base_rss, base_gpu = g.peaks()
    seconds, done = stylize(src, f"out-{case['precision']}")
    return {"seconds": seconds, "model_seconds": done["converted"][0]["seconds"],
            "warm_up_s": warm_up, "peak_rss_mb": bench.peak_rss_mb(), "base_rss_mb": base_rss,
            "peak_gpu_mb": g.peak_gpu_mb(), "base_gpu_mb": base_gpu}


def case_train(case: dict, g: Group) -> dict:
    g.peaks()
    return {**bench.case_train({**case, "device": str(g.device)}),
            "peak_gpu_mb": g.peak_gpu_mb()}


CASES = {"matmul": case_matmul, "model": case_model, "command": case_command,
         "train": case_train}


def run_one(case: dict, g: Group) -> dict:
    """A case's row; failures are rows too. ``fatal``: the CUDA context may be broken."""
    import torch
    try:
        return {"status": "ok", **CASES[case["kind"]](case, g)}
    except PastTimeCap as e:
        return {"status": "timeout", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - any failure is a result
        text = f"{type(e).__name__}: {e}"
        oom = isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or \
            "out of memory" in text.lower() or "ALLOC_FAILED" in text
        fatal = not oom and ("CUDA error" in text or "illegal memory" in text)
        return {"status": "OOM" if oom else "error", "error": text[:300], "fatal": fatal}
    finally:
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def iter_group(spec: dict) -> Iterator[tuple[str, int | dict]]:
    """Run a group's cases in order: ("start", index) then ("result", row) for each."""
    import torch
    torch.set_num_threads(spec["threads"])
    if spec.get("cudnn_benchmark") is not None:
        torch.backends.cudnn.benchmark = spec["cudnn_benchmark"]
    with tempfile.TemporaryDirectory(prefix="siamgan-bench-gpu-") as folder:
        g = Group(spec, Path(folder))
        for i, case in enumerate(spec["cases"]):
            yield "start", i
            case = {**spec, **case}
            why = None
            if "megapixels" in case:
                why = skip_reason(case["key"], case["megapixels"], g.done, spec["time_cap"])
            row = {"status": why} if why else run_one(case, g)
            if row["status"] == "ok" and "megapixels" in case:
                row["mp_per_s"] = case["width"] * case["height"] / 1e6 / row["seconds"]
            g.done.append(_slim(case, row))
            yield "result", row
            if row.pop("fatal", False):
                return  # the parent starts a fresh child for the rest


def child_main(spec: dict) -> None:
    """``--child`` with a group: one line as each case starts and one as it ends."""
    for what, value in iter_group(spec):
        prefix = START if what == "start" else bench.RESULT
        print(prefix + json.dumps(value), flush=True)


def _slim(case: dict, row: dict) -> dict:
    """What :func:`skip_reason` needs to know of a finished case."""
    return {"key": case.get("key"), "megapixels": case.get("megapixels", 0),
            "status": row["status"], "mp_per_s": row.get("mp_per_s")}


# --- in the parent ---------------------------------------------------------------


def child_command(spec: dict) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench", "--child", json.dumps(spec)]


def _pump(stream, lines: queue.Queue) -> None:
    """Every line of ``stream`` into ``lines``, then None at its end."""
    for line in stream:
        lines.put(line)
    stream.close()
    lines.put(None)


def stream_group(spec: dict, deadline: Callable[[dict], float], on_row: Callable,
                 on_start: Callable = lambda case: None,
                 command: Callable[[dict], list[str]] = child_command,
                 startup_s: float = 180) -> None:
    """Run ``spec["cases"]`` in child processes, calling ``on_start(case)`` and
    ``on_row(case, row)`` for each.

    A case still running after ``deadline(case)`` seconds is killed and reported as
    ``timeout``; one whose child died is ``crashed``. Either way the later sizes of
    the same key are reported as skipped and a fresh child takes the cases left.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(bench.REPO), os.environ.get("PYTHONPATH", "")) if p)}
    pending, done = list(spec["cases"]), list(spec.get("done", []))
    while pending:
        lines: queue.Queue = queue.Queue()
        with tempfile.TemporaryFile("w+") as stderr:
            proc = subprocess.Popen(command({**spec, "cases": pending, "done": done}),
                                    cwd=bench.REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=stderr, text=True)
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            current, since, finished, failure = None, time.perf_counter(), 0, None
            while True:
                limit = deadline(pending[current]) if current is not None else startup_s
                try:
                    line = lines.get(timeout=max(limit - (time.perf_counter() - since), 0.01))
                except queue.Empty:
                    proc.kill()
                    failure = {"status": "timeout",
                               "error": f"killed after {time.perf_counter() - since:.0f} s"}
                    break
                if line is None:
                    break
                if line.startswith(START):
                    current, since = json.loads(line[len(START):]), time.perf_counter()
                    on_start(pending[current])
                elif line.startswith(bench.RESULT) and current is not None:
                    row = json.loads(line[len(bench.RESULT):])
                    row.pop("fatal", None)
                    on_row(pending[current], row)
                    done.append(_slim(pending[current], row))
                    finished, current = current + 1, None
            proc.wait()
            if failure is None and finished < len(pending) and (current is not None
                                                                or finished == 0):
                stderr.seek(0)
                failure = {"status": "crashed", "error": f"exit {proc.returncode}: "
                           f"{stderr.read()[-300:]}"}
        if failure is None:  # a child that stopped after a CUDA error: go on in a new one
            pending = pending[finished:]
            continue
        failed = pending[finished]
        on_row(failed, failure)
        done.append(_slim(failed, failure))
        rest = []
        for case in pending[finished + 1:]:
            if case.get("key") == failed.get("key") and "megapixels" in failed:
                row = {"status": f"skipped: {failure['status']} at {failed['megapixels']:g} MP"}
                on_row(case, row)
                done.append(_slim(case, row))
            else:
                rest.append(case)
        pending = rest


def in_process_group(spec: dict, deadline, on_row, on_start=lambda case: None) -> None:
    """:func:`stream_group` in this process: no time limit; after a CUDA error the
    cases left start over with fresh models (the process stays the same)."""
    pending, done = list(spec["cases"]), list(spec.get("done", []))
    while pending:
        finished = 0
        for what, value in iter_group({**spec, "cases": pending, "done": done}):
            if what == "start":
                on_start(pending[value])
            else:
                on_row(pending[finished], value)
                done.append(_slim(pending[finished], value))
                finished += 1
        pending = pending[finished:]


def plan(args, widths: dict) -> list[tuple[str, list[dict], dict]]:
    """The groups of cases: (name, cases, settings for the group's child)."""
    siamgan, peers, command = [{"kind": "matmul", "table": "matmul"}], {}, []
    ordered = sorted(args.precisions, key=lambda p: p != "float32")  # the reference first
    peer_ordered = sorted(args.peer_precisions, key=lambda p: p != "float32")
    for mp in args.sizes:
        w, h = widths[mp]
        size = {"megapixels": mp, "width": w, "height": h}
        for name in args.models:
            for precision in ordered if name == "siamgan" else peer_ordered:
                key = name if name != "siamgan" and precision == "float32" \
                    else f"{name} {precision}"
                case = {"kind": "model", "table": "model", "model": name,
                        "precision": precision, "key": key, **size}
                (siamgan if name == "siamgan" else peers.setdefault(name, [])).append(case)
        if "siamgan" in args.models and not args.no_command:
            command += [{"kind": "command", "table": "command", "precision": p,
                         "key": f"siamgan {p}", **size}
                        for p in ordered if p in CLI_PRECISIONS]
    bench_on = not args.no_cudnn_benchmark
    groups = [("siamgan", siamgan, {"cudnn_benchmark": bench_on})]
    groups += [(name, cases, {"cudnn_benchmark": bench_on}) for name, cases in peers.items()]
    if command:
        groups.append(("command", command, {"cudnn_benchmark": None}))  # as the CLI runs
    if not args.no_train:
        groups.append(("training", [{"kind": "train", "table": "training",
                                     "steps": 3 if args.smoke else args.train_steps,
                                     "warm_steps": 1 if args.smoke else 3,
                                     "synthetic_size": (256, 256)}], {}))
    return groups


def run_benchmark_gpu(args) -> dict:
    """Every case of the table on ``args.device``; JSON rewritten after every case."""
    from siamgan.models import count_parameters
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
    result: dict = {"machine": bench.machine(args.threads), "config": vars(args).copy(),
                    "models": {}, "matmul": {}, "model": [], "command": []}
    found = bench.photos() or [p for p in [bench.EXAMPLE] if p.is_file()]
    result["photo"] = found[0].name if found else "synthetic"  # the photo all sizes are made of
    for name in bench.MODELS:
        m = bench.build_model(name, args.smoke)
        result["models"][name] = {"parameters": count_parameters(m),
                                  "macs_per_pixel": bench.macs_per_pixel(m)}
    start, t0 = bench.cpu_seconds(), time.perf_counter()
    common = {"kind": "group", "device": args.device, "threads": args.threads,
              "smoke": args.smoke, "batch_size": args.batch_size, "time_cap": args.time_cap,
              "min_time": 0 if args.smoke else 1.0}
    open_line = False  # a case's progress line, printed when it starts, ended when it ends

    def say(text: str, end: str = "\n") -> None:
        nonlocal open_line
        if not args.quiet:
            print(text, end=end, file=sys.stderr, flush=True)
        open_line = end != "\n"

    def label(case: dict) -> str:
        if "key" not in case:
            return case["table"]
        return f"{case['megapixels']:g} MP {case['table']:7s} {case['key']:28s}"

    def on_start(case: dict) -> None:
        say(f"[{time.perf_counter() - t0:4.0f} s] {label(case)} …", end="")

    def on_row(case: dict, row: dict) -> None:
        if case["table"] == "matmul":
            result["machine"]["gpu"] = row.pop("gpu", {})
            result["matmul"] = row
        elif case["table"] == "training":
            result["training"] = row
        else:
            result[case["table"]].append({"key": case["key"], "megapixels": case["megapixels"],
                                          "width": case["width"], "height": case["height"],
                                          **row})
        say((" " if open_line else f"[{time.perf_counter() - t0:4.0f} s] {label(case)} ")
            + progress(row))
        if args.json:
            save(result, args.json)

    def deadline(case: dict) -> float:  # the child reports a warm-up over the cap itself
        return 1800 if case["kind"] == "train" else 2 * args.time_cap + 60
    execute = in_process_group if args.in_process else stream_group
    widths = {mp: bench.size_for(mp) for mp in args.sizes}
    for name, cases, settings in plan(args, widths):
        say(f"[{time.perf_counter() - t0:4.0f} s] {name}: {len(cases)} cases in one child")
        execute({**common, **settings, "cases": cases}, deadline, on_row, on_start)
    wall = time.perf_counter() - t0
    result["machine"].update(wall_seconds=wall, other_load_cores=bench.others_cores(start, wall))
    bench.add_derived(result)
    return result


def progress(row: dict) -> str:
    """A case's outcome in a few words, for the progress line."""
    if row["status"] != "ok":
        return f"{row['status']} {row.get('error', '')}".rstrip()
    words = [f"{row['seconds']:.2f} s" if "seconds" in row else ""]
    words += [f"{k[:-7]} {v:.0f} GFLOP/s" for k, v in row.items() if k.endswith("_gflops")]
    if "steps_per_s" in row:
        words.append(f"{row['steps_per_s']:.2f} steps/s, data {row['data_wait_share']:.1%}")
    if row.get("peak_gpu_mb"):
        words.append(f"GPU {row['peak_gpu_mb']:.0f} MB")
    if err := row.get("error_vs_float32"):
        words.append(f"error max {err['max']} mean {err['mean']:.3f}")
    return "ok " + ", ".join(w for w in words if w)


def save(result: dict, path: Path) -> None:
    """Write the results so far (a killed run keeps every finished case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)


# --- output ------------------------------------------------------------------------


def _cell(v, fmt: str) -> str:
    """``v`` formatted, or a dash as wide as ``fmt`` says."""
    width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
    return bench._num(v, fmt).rjust(width)


def _mb(v) -> str:
    if not isinstance(v, (int, float)):
        return "–"
    return f"{v / 1024:5.1f} GB" if v >= 10 * 1024 else f"{v:5.0f} MB"


def _error(r: dict) -> str:
    e = r.get("error_vs_float32")
    if not e:
        return "ref" if r.get("precision") == "float32" and r["status"] == "ok" else "–"
    psnr = "∞" if e["psnr_db"] is None else f"{e['psnr_db']:.1f}"
    return f"{e['max']:d} / {e['mean']:.3f} / {psnr}"


def quality_lines(res: dict) -> list[str]:
    """For each reduced precision of siamgan: worst error over sizes, speed-up over float32."""
    rows = [r for r in res["model"] if r["key"].startswith("siamgan ") and r["status"] == "ok"]
    f32 = {r["megapixels"]: r for r in rows if r["precision"] == "float32"}
    lines = []
    for precision in res["config"]["precisions"]:
        mine = [r for r in rows if r["precision"] == precision and "error_vs_float32" in r]
        if not mine:
            continue
        worst = max(r["error_vs_float32"]["max"] for r in mine)
        mean = max(r["error_vs_float32"]["mean"] for r in mine)
        speed = [f"{f32[r['megapixels']]['seconds'] / r['seconds']:.2f}× at "
                 f"{r['megapixels']:g} MP" for r in mine if r["megapixels"] in f32]
        holds = worst <= QUALITY["max"] and mean <= QUALITY["mean"]
        lines.append(f"  {'holds' if holds else 'LOST '} siamgan {precision}: max {worst} "
                     f"levels, worst mean {mean:.3f}" + ("" if precision == "float32" else
                                                          f"; speed vs float32 {', '.join(speed)}"))
    return lines


def format_tables_gpu(res: dict) -> str:
    """:func:`benchmarks.bench.format_tables` for a GPU run: GPU memory and error columns."""
    m, mm, cfg = res["machine"], res.get("matmul", {}), res["config"]
    gpu = m.get("gpu", {})
    weights = {r.get("weights") for r in res["model"] if r["key"].startswith("siamgan")}
    rates = ", ".join(f"{label} {bench._num(mm.get(f'{key}_gflops'), '.0f')}" for key, label in
                      (("float32", "float32"), ("tfloat32", "TF32"),
                       ("bfloat16", "bfloat16"), ("float16", "float16")))
    conv32 = "TF32" if gpu.get("tf32_convs") else "IEEE float32"
    reference = "IEEE float32 (cuDNN TF32 off)" if gpu.get("tf32_convs") else "float32"
    lines = [f"{gpu.get('name', '?')}, {bench._num(gpu.get('memory_gb'), '.0f')} GB, CUDA "
             f"{gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}, torch {m['torch']}; host "
             f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads, other processes kept "
             f"{bench._num(m.get('other_load_cores'), '.1f')} cores busy; run "
             f"{bench._num(m.get('wall_seconds'), '.0f')} s",
             f"float32 convolutions run in {conv32} (cudnn.allow_tf32 "
             f"{gpu.get('tf32_convs')}; matmul allow_tf32 {gpu.get('tf32_matmul')}); cuDNN "
             f"autotuning {'off' if cfg.get('no_cudnn_benchmark') else 'on'} in the model "
             f"rows, as the CLI leaves it in the command rows",
             f"matmul ceiling ({mm.get('n')}²), GFLOP/s: {rates}; siamgan weights: "
             f"{', '.join(sorted(str(w) for w in weights if w)) or '?'}, "
             f"{cfg['batch_size']} tiles per pass at most (one band of 64-px tiles); photo "
             f"{res.get('photo', '?')} resized to each size", *bench.models_lines(res)]
    lines += bench.table_lines("model (one forward)", res["model"], [
        ("s", 7, lambda r: f"{r['seconds']:.3f}"),
        ("MP/s", 7, lambda r: f"{r['mp_per_s']:.2f}"),
        ("GFLOP/s", 8, lambda r: _cell(r.get("gflops"), ".0f")),
        ("of mm", 6, lambda r: _cell(r.get("matmul_fraction"), ".1%")),
        ("peak RSS", 9, lambda r: _mb(r["peak_rss_mb"])),
        ("GPU peak", 9, lambda r: _mb(r.get("peak_gpu_mb"))),
        (" error vs f32: max / mean / PSNR dB", 0, lambda r: " " + _error(r)),
    ], status=True)
    lines.append(f"(error: uint8 levels and PSNR against the same model's {reference} output "
                 f"on the same photo)")
    if res["command"]:
        lines += bench.table_lines("siamgan stylize (JPEG→JPEG)", res["command"], [
            ("s", 7, lambda r: _cell(r.get("seconds"), ".2f")),
            ("MP/s", 7, lambda r: _cell(r.get("mp_per_s"), ".2f")),
            ("model s", 8, lambda r: _cell(r.get("model_seconds"), ".2f")),
            ("÷ model", 8, lambda r: _cell(r.get("command_over_model"), ".2f")),
            ("peak RSS", 9, lambda r: _mb(r.get("peak_rss_mb"))),
            ("GPU peak", 9, lambda r: _mb(r.get("peak_gpu_mb"))),
            ("warm-up s", 9, lambda r: _cell(r.get("warm_up_s"), ".1f")),
        ])
    if t := res.get("training"):
        lines += bench.training_lines(t, ".2f", f", GPU peak {_mb(t.get('peak_gpu_mb')).strip()}")
    if quality := quality_lines(res):
        lines += ["", f"against {reference} (quality holds: max ≤ {QUALITY['max']} levels "
                  f"and mean ≤ {QUALITY['mean']} at every size, as the CPU's bfloat16 option):",
                  *quality]
    if res.get("targets"):
        lines += ["", "targets (smoke run: toy models, not meaningful):" if cfg["smoke"]
                  else "the issue's CPU targets, applied to this GPU run for comparison "
                       "(it sets none for the GPU):"]
        for name, v in res["targets"].items():
            lines.append(f"  {'met ' if v['met'] else 'MISS'} {name}: {v['value']:.2f} "
                         f"(target {v['target']})")
    return "\n".join(lines)
