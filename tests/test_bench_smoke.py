"""The benchmark's machinery at toy sizes: every case runs and its JSON is complete."""

from __future__ import annotations

import copy
import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside siamgan/

from benchmarks import bench  # noqa: E402
from benchmarks.reference_models import ResnetGenerator, TransformerNet  # noqa: E402
from siamgan.models import GeneratorConfig, PatchGenerator, count_parameters  # noqa: E402
from siamgan.stylize import Stylizer, bfloat16_convolutions  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    bench.main(["--smoke", "--in-process", "--threads", "1", "--quiet", "--json", str(out)])
    return json.loads(out.read_text())


def test_smoke_json_has_every_section(smoke):
    assert {"machine", "config", "models", "matmul", "model", "command", "training",
            "targets"} <= set(smoke)
    assert smoke["matmul"]["float32_gflops"] > 0 and smoke["matmul"]["bfloat16_gflops"] > 0
    assert set(smoke["models"]) == set(bench.MODELS)
    for info in smoke["models"].values():
        assert info["parameters"] > 0 and info["macs_per_pixel"] > 0


def test_smoke_measures_every_model_and_the_command(smoke):
    rows = {r["key"]: r for r in smoke["model"]}
    assert set(rows) == {"siamgan float32", "siamgan bfloat16", "cyclegan-resnet9",
                         "transformernet"}
    for row in rows.values():
        assert row["status"] == "ok", row
        for key in ("seconds", "mp_per_s", "gflops", "matmul_fraction", "peak_rss_mb"):
            assert row[key] > 0, (row["key"], key)
    assert [c["key"] for c in smoke["command"]] == ["siamgan float32", "siamgan bfloat16"]
    for c in smoke["command"]:
        assert c["status"] == "ok", c
        assert c["seconds"] >= c["model_seconds"] > 0 and c["command_over_model"] > 0


def test_smoke_training_and_table(smoke):
    t = smoke["training"]
    assert t["status"] == "ok", t
    assert t["steps_per_s"] > 0 and 0 <= t["data_wait_share"] <= 1
    table = bench.format_tables(smoke)
    for name in (*bench.MODELS, "matmul", "training", "targets"):
        assert name in table


def test_a_child_process_reports_its_own_peak_rss():
    res = bench.run_child({"kind": "model", "model": "siamgan", "precision": "float32",
                           "width": 64, "height": 48, "threads": 1, "smoke": True,
                           "batch_size": 4, "min_time": 0, "mem_limit": 2**31}, timeout=300)
    assert res["status"] == "ok", res
    assert res["peak_rss_mb"] >= res["base_rss_mb"] > 0 and res["seconds"] > 0


def test_guard_reports_cases_that_cannot_fit():
    args = Namespace(mem_limit_gb=1.0, time_cap=100.0)
    one = {"key": "peer", "megapixels": 1, "status": "ok", "peak_rss_mb": 700,
           "base_rss_mb": 400, "mp_per_s": 0.05}
    assert bench.guard("peer", 1, [], 0, args) is None
    assert "would need ~1.6 GB" in bench.guard("peer", 4, [one], 0, args)  # 400 + 4·300 MB
    assert "would need" in bench.guard("peer", 1, [], 2 * 2**30, args)  # the estimate alone
    assert "time cap" in bench.guard("peer", 2, [one], 0, Namespace(mem_limit_gb=9,
                                                                    time_cap=30.0))
    failed = {**one, "status": "out of memory"}
    assert "out of memory at 1 MP" in bench.guard("peer", 4, [failed], 0, args)


def test_reference_models_have_their_published_sizes():
    assert count_parameters(ResnetGenerator()) == pytest.approx(11.4e6, rel=0.01)
    assert count_parameters(TransformerNet()) == pytest.approx(1.68e6, rel=0.01)
    # MACs per pixel, counted by hand from the layer lists (see docs/performance.md).
    assert bench.macs_per_pixel(PatchGenerator()) == 129_216
    assert bench.macs_per_pixel(ResnetGenerator()) == 756_096
    assert bench.macs_per_pixel(TransformerNet()) == 153_792


def test_sizes_are_three_by_two_and_divisible_by_four():
    for mp in (1, 4, 12, 50):
        w, h = bench.size_for(mp)
        assert w % 4 == 0 and h % 4 == 0
        assert w * h / 1e6 == pytest.approx(mp, rel=0.01) and w / h == pytest.approx(1.5, 0.01)


# The speed options the benchmark chose, on the Stylizer and the CLI.


def test_stylizer_layout_and_precision_stay_close_to_float32():
    torch.manual_seed(0)
    gen = PatchGenerator(GeneratorConfig(8, 1))
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)

    def run(**options) -> np.ndarray:
        stylizer = Stylizer(copy.deepcopy(gen), 16, "cpu", **options)
        return stylizer.stylize_array(pixels).astype(np.int16)
    reference = run(channels_last=False)
    assert np.abs(run() - reference).max() <= 1  # channels_last: float rounding only
    bf16 = np.abs(run(precision="bfloat16") - reference)
    assert bf16.max() <= 8 and bf16.mean() < 1.0
    with pytest.raises(ValueError, match="precision"):
        Stylizer(gen, 16, precision="float16")


def test_bfloat16_leaves_the_encoder_and_last_conv_in_float32():
    gen = PatchGenerator()
    dtypes = [m.weight.dtype for m in bfloat16_convolutions(gen).modules()
              if isinstance(m, torch.nn.Conv2d)]
    assert dtypes[:3] == [torch.float32] * 3 and dtypes[-1] == torch.float32
    assert set(dtypes[3:-1]) == {torch.bfloat16}
    Stylizer(gen, 64, precision="bfloat16")
    assert {p.dtype for p in gen.parameters()} == {torch.float32}  # the caller's model is kept


def test_cli_precision_option(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from siamgan.cli import app
    weights = bench.style_file(tmp_path, smoke=True)
    src = tmp_path / "in.png"
    Image.fromarray(bench.make_photo(40, 24)).save(src)
    runner = CliRunner()
    ok = runner.invoke(app, ["stylize", str(src), "-o", str(tmp_path / "out.png"),
                             "--weights", str(weights), "--device", "cpu",
                             "--precision", "bfloat16"])
    assert ok.exit_code == 0, ok.output
    assert Image.open(tmp_path / "out.png").size == (40, 24)
    bad = runner.invoke(app, ["stylize", str(src), "-o", str(tmp_path / "bad.png"),
                              "--weights", str(weights), "--precision", "float16"])
    assert bad.exit_code == 2 and not (tmp_path / "bad.png").exists()
