"""The benchmark's --device cuda path: its machinery on the CPU, the real thing on a GPU."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside siamgan/

from benchmarks import bench, bench_gpu  # noqa: E402


@pytest.fixture(scope="module")
def on_cpu(tmp_path_factory) -> tuple[dict, Path]:
    """The GPU path at toy sizes, in this process, with the CPU standing in for the GPU."""
    out = tmp_path_factory.mktemp("bench-gpu") / "bench.json"
    args = bench.parse_args(["--smoke", "--device", "cuda", "--in-process", "--threads", "1",
                             "--quiet", "--json", str(out)])
    args.device = "cpu"
    return bench_gpu.run_benchmark_gpu(args), out


def test_cpu_defaults_are_unchanged_and_cuda_has_its_own():
    cpu = bench.parse_args([])
    assert (cpu.device, cpu.time_cap, cpu.batch_size, cpu.train_steps) == ("cpu", 300, 16, 6)
    assert cpu.precisions == ["float32", "bfloat16"] and cpu.peer_precisions == ["float32"]
    cuda = bench.parse_args(["--device", "cuda"])
    assert (cuda.time_cap, cuda.batch_size, cuda.train_steps) == (30, 256, 30)
    assert cuda.precisions == list(bench_gpu.PRECISIONS)
    assert bench.parse_args(["--device", "cuda", "--batch-size", "64"]).batch_size == 64
    for bad in (["--device", "cuda", "--precisions", "float64"],
                ["--peer-precisions", "bfloat16"], ["--device", "cuda", "--tune"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_gpu_path_measures_every_case_with_errors_against_float32(on_cpu):
    res, out = on_cpu
    assert json.loads(out.read_text())["model"]  # written as the cases finished
    rows = {r["key"]: r for r in res["model"]}
    assert set(rows) == {*(f"siamgan {p}" for p in bench_gpu.PRECISIONS), "cyclegan-resnet9",
                         "cyclegan-resnet9 bfloat16", "transformernet", "transformernet bfloat16"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["seconds"] > 0 and row["peak_rss_mb"] >= row["base_rss_mb"] > 0
        if row["precision"] == "float32":
            assert "error_vs_float32" not in row and row["ceiling"] == "float32"
        else:  # the same photo through the same weights: close, but rounded differently
            e = row["error_vs_float32"]
            assert 0 <= e["mean"] <= e["max"] <= 255
            assert e["psnr_db"] is None or e["psnr_db"] > 30
    assert rows["siamgan float16"]["ceiling"] == "float16"
    assert rows["siamgan bfloat16-autocast"]["ceiling"] == "bfloat16"
    assert rows["siamgan float16"]["matmul_fraction"] == pytest.approx(
        rows["siamgan float16"]["gflops"] / res["matmul"]["float16_gflops"])
    assert [c["key"] for c in res["command"]] == ["siamgan float32", "siamgan bfloat16"]
    assert all(c["status"] == "ok" and c["command_over_model"] > 0 for c in res["command"])
    assert res["training"]["status"] == "ok" and res["training"]["steps_per_s"] > 0


def test_error_stats():
    ref = np.zeros((700, 10, 3), np.uint8)  # more rows than one strip
    out = ref.copy()
    out[0, 0, 0], out[650, :, 1] = 10, 3
    e = bench_gpu.error_stats(out, ref)
    assert e["max"] == 10 and e["mean"] == pytest.approx((10 + 30) / ref.size)
    assert e["share_over_4"] == pytest.approx(1 / ref.size)
    assert e["psnr_db"] == pytest.approx(10 * math.log10(255**2 * ref.size / (100 + 90)))
    assert bench_gpu.error_stats(ref, ref)["psnr_db"] is None


def test_skip_reason_carries_failures_and_the_time_cap_to_larger_sizes():
    done = [{"key": "peer", "megapixels": 1, "status": "ok", "mp_per_s": 0.5},
            {"key": "peer", "megapixels": 4, "status": "OOM", "mp_per_s": None},
            {"key": "other", "megapixels": 1, "status": "ok", "mp_per_s": 2.0}]
    assert bench_gpu.skip_reason("peer", 1, done, 30) is None
    assert bench_gpu.skip_reason("peer", 12, done, 30) == "skipped: OOM at 4 MP"
    assert bench_gpu.skip_reason("peer", 50, done + [{"key": "peer", "megapixels": 12,
                                                      "status": "skipped: OOM at 4 MP"}],
                                 30) == "skipped: OOM at 4 MP"
    assert "time cap" in bench_gpu.skip_reason("other", 100, done, 30)  # 50 s > 30 s
    assert bench_gpu.skip_reason("other", 50, done, 30) is None  # 25 s


FAKE_CHILD = textwrap.dedent("""
    import json, sys, time
    spec = json.loads(sys.argv[-1])
    for i, case in enumerate(spec["cases"]):
        print("BENCH-START " + json.dumps(i), flush=True)
        if case.get("hang"):
            time.sleep(60)
        if case.get("crash"):
            sys.exit(3)
        print("BENCH-RESULT " + json.dumps({"status": "ok", "children_before": len(
            spec["done"])}), flush=True)
""")


def test_stream_group_reports_a_hung_or_dead_child_and_goes_on():
    cases = [{"key": "a", "megapixels": 1}, {"key": "a", "megapixels": 4, "hang": True},
             {"key": "a", "megapixels": 12}, {"key": "b", "megapixels": 1, "crash": True},
             {"key": "b", "megapixels": 4}, {"key": "c", "megapixels": 1}]
    seen: list[tuple[dict, dict]] = []
    bench_gpu.stream_group({"cases": cases}, lambda case: 2.0,
                           lambda case, row: seen.append((case, row)),
                           command=lambda spec: [sys.executable, "-c", FAKE_CHILD,
                                                 json.dumps(spec)])
    status = {(c["key"], c["megapixels"]): row["status"] for c, row in seen}
    assert status == {("a", 1): "ok", ("a", 4): "timeout", ("a", 12): "skipped: timeout at 4 MP",
                      ("b", 1): "crashed", ("b", 4): "skipped: crashed at 1 MP", ("c", 1): "ok"}
    assert "exit 3" in dict(((c["key"], c["megapixels"]), r) for c, r in seen)[("b", 1)]["error"]
    # the last case ran in a third child, told what was done before it
    assert seen[-1][1]["children_before"] == 5


def cuda_result() -> dict:
    """A GPU run's JSON as the benchmark writes it, numbers made up."""
    def row(key, mp, precision, seconds, gpu_mb, error=None, status="ok", ceiling=None):
        w, h = bench.size_for(mp)
        r = {"key": key, "megapixels": mp, "width": w, "height": h, "status": status}
        if status != "ok":
            return {**r, "error": "CUDA out of memory. Tried to allocate 12.00 GiB"}
        r.update(precision=precision, seconds=seconds, peak_rss_mb=2000.0, base_rss_mb=1500.0,
                 peak_gpu_mb=gpu_mb, base_gpu_mb=10.0, mp_per_s=w * h / 1e6 / seconds,
                 ceiling=ceiling or {"float32": "tfloat32", "float16": "float16"}.get(
                     precision, "bfloat16"), weights="weights/vangogh.safetensors")
        if error:
            r["error_vs_float32"] = dict(zip(("max", "mean", "psnr_db"), error),
                                         share_over_4=0.0)
        return r
    precisions = ["float32", "bfloat16", "bfloat16-autocast", "float16"]
    model = []
    for mp in (1, 12):
        model += [row("siamgan float32", mp, "float32", 0.1 * mp, 300.0),
                  row("siamgan bfloat16", mp, "bfloat16", 0.08 * mp, 250.0, (7, 0.12, 47.3)),
                  row("siamgan bfloat16-autocast", mp, "bfloat16-autocast", 0.07 * mp, 200.0,
                      (40, 0.5, 38.0)),
                  row("siamgan float16", mp, "float16", 0.07 * mp, 200.0, (2, 0.02, 60.1)),
                  row("cyclegan-resnet9", mp, "float32", 0.2 * mp, 2000.0 * mp)]
    model[-1] = row("cyclegan-resnet9", 12, "float32", 0, 0, status="OOM")
    model[5] = row("siamgan float32", 12, "float32", 1.2, 300.0, (1, 0.004, 71.2))  # TF32
    return {"machine": {"cpu": "Xeon", "cores": 16, "threads": 16, "torch": "2.11.0+cu130",
                        "wall_seconds": 150.0, "other_load_cores": 0.1,
                        "gpu": {"name": "NVIDIA H100 80GB HBM3", "memory_gb": 79.2,
                                "cuda": "13.0", "cudnn": 91000, "tf32_convs": True,
                                "tf32_matmul": False}},
            "config": {"device": "cuda", "smoke": False, "precisions": precisions,
                       "batch_size": 256, "no_cudnn_benchmark": False},
            "models": {"siamgan": {"parameters": 1.37e6, "macs_per_pixel": 129216},
                       "cyclegan-resnet9": {"parameters": 11.4e6, "macs_per_pixel": 756096},
                       "transformernet": {"parameters": 1.68e6, "macs_per_pixel": 153792}},
            "matmul": {"status": "ok", "n": 8192, "float32_gflops": 50e3,
                       "tfloat32_gflops": 350e3, "bfloat16_gflops": 700e3,
                       "float16_gflops": 720e3},
            "model": model,
            "command": [{"key": "siamgan float32", "megapixels": 12, "status": "ok",
                         "seconds": 2.0, "mp_per_s": 6.0, "model_seconds": 1.3,
                         "peak_rss_mb": 1800.0, "peak_gpu_mb": 310.0, "warm_up_s": 1.5}],
            "training": {"status": "ok", "batch_size": 16, "tile_size": 64, "steps_per_s": 9.5,
                         "data_wait_share": 0.12, "peak_gpu_mb": 4096.0}}


def test_rendering_a_cuda_result_shows_gpu_memory_errors_and_ceilings():
    res = cuda_result()
    bench.add_derived(res)
    table = bench.format_tables(res)
    lines = table.splitlines()
    sections = {part.splitlines()[0].split("  ")[0]: part.splitlines()[1:]
                for part in table.split("\n\n")}

    def line_of(key: str, mp: float, section: str = "model (one forward)") -> str:
        found = [ln for ln in sections[section] if ln.startswith(f"{key} ")
                 and ln.split()[len(key.split())] == f"{mp:g}"]
        assert len(found) == 1, (key, mp, found)
        return found[0]
    assert "NVIDIA H100" in lines[0] and "TF32" in table
    for r in res["model"]:
        ln = line_of(r["key"], r["megapixels"])
        if r["status"] != "ok":
            assert "OOM" in ln and "out of memory" in ln
            continue
        # each row against the matmul of its own precision (TF32 for float32 convolutions)
        ceiling = res["matmul"][f"{r['ceiling']}_gflops"]
        fraction = 2 * res["models"][r["key"].split()[0]]["macs_per_pixel"] * (
            -(-r["width"] // 64) * -(-r["height"] // 64) * 4096 if r["key"].startswith("siamgan")
            else r["width"] * r["height"]) / r["seconds"] / 1e9 / ceiling
        assert f"{fraction:.1%}" in ln
        gpu = r["peak_gpu_mb"]
        assert (f"{gpu / 1024:.1f} GB" if gpu >= 10240 else f"{gpu:.0f} MB") in ln
        e = r.get("error_vs_float32")
        assert (f"{e['max']} / {e['mean']:.3f} / {e['psnr_db']:.1f}" if e else "ref") in ln
    command = line_of("siamgan float32", 12, "siamgan stylize (JPEG→JPEG)").split()
    assert command[5:7] == ["1.30", f"{2.0 / 1.2:.2f}"]  # its model s, ÷ the model row's s
    assert "310 MB" in " ".join(command)
    assert "GPU peak 4096 MB" in table and "12.0%" in table
    verdicts = {ln.split()[2]: ln.split()[0] for ln in lines if ln.startswith("  ")
                and " levels, " in ln}
    assert verdicts == {"float32:": "holds", "bfloat16:": "holds", "bfloat16-autocast:": "LOST",
                        "float16:": "holds"}
    assert "max 1 levels, worst mean 0.004" in table  # TF32 against IEEE float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_benchmark_on_cuda(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--smoke", "--device", "cuda", "--quiet", "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["machine"]["gpu"]["memory_gb"] > 0
    assert all(res["matmul"][f"{p}_gflops"] > 0 for p in ("float32", "tfloat32", "bfloat16",
                                                          "float16"))
    for row in res["model"]:
        assert row["status"] == "ok", row
        assert row["peak_gpu_mb"] > 0 and row["matmul_fraction"] > 0
        if row["precision"] != "float32" or res["machine"]["gpu"]["tf32_convs"]:
            assert row["error_vs_float32"]["max"] <= 255  # TF32 is compared with IEEE
    assert all(c["status"] == "ok" and c["peak_gpu_mb"] > 0 for c in res["command"])
    assert res["training"]["status"] == "ok" and res["training"]["peak_gpu_mb"] > 0
    assert "GPU peak" in bench.format_tables(res)
