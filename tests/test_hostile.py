"""Hostile inputs (issue 21): nothing lost, nothing hung, every usage error a clear exit 2.

One section per defect class; the last test generates hostile names and folder
layouts and checks the two promises for all of them: no input is ever modified,
and every output lands inside the output folder.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import folder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from siamgan import claims, models, paths, runs
from siamgan import convert as C
from siamgan import stylize as S
from siamgan import weights_io as W
from siamgan.cli import app
from siamgan.models import GeneratorConfig, PatchGenerator
from siamgan.stylize import Stylizer, TileConfig

T = importlib.import_module("siamgan.train")  # the package re-exports a function `train`
TINY = ["--tile", "16", "--batch", "2", "--steps", "2", "--channels", "4", "--res-blocks", "1",
        "--sample-every", "1", "--checkpoint-every", "1", "--device", "cpu"]  # as in test_cli


class Negate(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def rgb(h: int = 12, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, data: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb() if data is None else data).save(path, format="PNG")
    return path


def run(inputs, out, gen=None, **opts) -> C.ConvertReport:
    return C.convert(Stylizer(gen or Negate(), tile_size=16), inputs, out,
                     C.ConvertOptions(**opts))


def within(seconds: float, fn, *args, **kw):
    """``fn(*args, **kw)`` in a thread that must finish in time (a hang fails, never blocks)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn(*args, **kw)
        except BaseException as e:  # handed to the test's thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hung)"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture(autouse=True)
def _user_home(home):
    """Every test here has its own SIAMGAN_HOME."""


@pytest.fixture()
def weights(tmp_path) -> Path:
    cfg = GeneratorConfig(channels=4, res_blocks=0)
    torch.manual_seed(0)
    return W.save_weights(tmp_path / "w" / "tiny.safetensors", PatchGenerator(cfg).state_dict(),
                          {"kind": "style", "tile_size": 16, "generator": asdict(cfg)})


def cli(*args: str, **kw):
    return CliRunner().invoke(app, list(args), **kw)


def stylize(*args: str, **kw):
    return cli("stylize", *args, "--device", "cpu", **kw)


# --- 1. --report: never on an input, never a folder, never lost ---

def test_report_named_like_a_photo_is_refused_before_any_work(tmp_path, weights):
    photos = [save(tmp_path / "photos" / f"img{i}.jpg") for i in range(2)]
    before = photos[0].read_bytes()
    # what the shell makes of `--report photos/img0.jpg photos/img1.jpg -o out`
    r = stylize("--report", str(photos[0]), str(photos[1]), "-o", str(tmp_path / "out"),
                "--weights", str(weights))
    assert r.exit_code == 2 and "named like an image" in r.output
    assert photos[0].read_bytes() == before and not (tmp_path / "out").exists()
    r = stylize(str(photos[1]), "--report", str(tmp_path / "photos"), "-o",
                str(tmp_path / "out"), "--weights", str(weights))
    assert r.exit_code == 2 and "is a folder" in r.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "photos" / "notes.json").write_text("{}")
    with pytest.raises(C.ConvertError, match="is the input"):
        C.check_report(tmp_path / "photos" / "notes.json", [tmp_path / "photos" / "notes.json"])


def test_report_on_a_full_disk_keeps_the_summary(tmp_path, weights, monkeypatch):
    save(tmp_path / "in" / "a.png")

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.ConvertReport, "write_json", full)
    r = stylize(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights),
                "--report", str(tmp_path / "report.json"))
    assert "converted 1, skipped 0 (exist), failed 0" in r.output
    assert "cannot write the report" in r.output and "No space left" in r.output
    assert r.exit_code == 1 and (tmp_path / "out" / "a.png").is_file()


# --- 2. names are names; a run or style is never silently replaced ---

@pytest.mark.parametrize("name", ["..", ".", "", "/tmp/x", "a/b", "~root", ".hidden", "-rf",
                                  "a b", "a\nb", "a\0b", "x" * 201, "é" * 101])
def test_names_that_are_paths_or_odd_are_refused(name):
    with pytest.raises(paths.PathError, match="not a valid name"):
        paths.check_name(name)


@pytest.mark.parametrize("name", ["vangogh2", "my_style-1.5", "été", "a+b", "x" * 200])
def test_plain_names_pass(name):
    assert paths.check_name(name) == name


@pytest.mark.parametrize("name", ["..", "/abs/run", "a/../../b"])
def test_train_name_that_is_a_path_writes_nothing(tmp_path, monkeypatch, name, spy_train_steps):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("mine")
    steps = spy_train_steps()
    r = cli("train", "--a", "a", "--b", "b", "--name", name, "--device", "cpu")
    assert r.exit_code == 2 and "not a valid name" in r.output, r.output
    assert steps == [] and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == "mine"
    r = cli("dcgan", "train", "--data", "a", "--name", name, "--device", "cpu")
    assert r.exit_code == 2 and "not a valid name" in r.output


def test_existing_run_or_style_needs_resume(tmp_path, home, spy_train_steps):
    a, b = folder(tmp_path / "a", 2, seed=1), folder(tmp_path / "b", 2, seed=2)
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"precious")
    steps = spy_train_steps()
    base = ["train", "--a", str(a), "--b", str(b), "--runs-dir", str(tmp_path / "runs"),
            "--device", "cpu"]
    r = cli(*base, "--name", "mine")
    assert r.exit_code == 2 and "already exists" in r.output and "--resume" in r.output
    assert (run / "checkpoint.pt").read_bytes() == b"precious" and steps == []
    (home / "styles").mkdir(parents=True)
    (home / "styles" / "other.safetensors").write_bytes(b"precious")
    r = cli(*base, "--name", "other")
    assert r.exit_code == 2 and "already exists" in r.output
    assert (home / "styles" / "other.safetensors").read_bytes() == b"precious"
    # an empty run folder (made by hand) is not a run yet
    (tmp_path / "runs" / "empty").mkdir()
    assert runs.prepare_run(tmp_path / "runs", "empty", False, [a, b]).is_dir()
    with pytest.raises(paths.PathError, match="already exists"):  # the library refuses too
        T.train(T.TrainConfig(), a, b, "mine", tmp_path / "runs", progress=False)


def test_run_folder_inside_the_photos_is_refused(tmp_path):
    a = tmp_path / "photos"
    a.mkdir()
    with pytest.raises(paths.PathError, match="inside the input"):
        runs.prepare_run(a, "run", False, [a, tmp_path / "b"])
    with pytest.raises(paths.PathError, match="is the input"):
        runs.prepare_run(tmp_path, "photos", False, [a])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


# --- 3. FIFOs and other non-regular files never block ---

def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifo_named_like_an_image_is_skipped_with_a_reason(tmp_path):
    src = tmp_path / "in"
    save(src / "a.png")
    fifo(src / "b.jpg")
    save(src / "c.png")
    report = within(30, run, [src], tmp_path / "out")
    assert sorted(Path(c["input"]).name for c in report.converted) == ["a.png", "c.png"]
    assert [f["reason"] for f in report.failed] == [
        "a FIFO (named pipe), not a regular file; never opened"]
    report = within(30, run, [src / "a.png", src / "b.jpg"], tmp_path / "out2")
    assert "FIFO" in report.failed[0]["reason"] and len(report.converted) == 1


def test_single_fifo_input_is_a_usage_error_and_creates_nothing(tmp_path, weights):
    pipe = fifo(tmp_path / "photo.jpg")
    with pytest.raises(C.ConvertError, match="FIFO"):
        within(30, run, [pipe], tmp_path / "out.jpg")
    r = within(30, stylize, str(pipe), "-o", str(tmp_path / "out.jpg"), "--weights", str(weights))
    assert r.exit_code == 2 and "FIFO" in r.output
    assert not (tmp_path / "out.jpg").exists()


# --- 4. an output folder above the inputs ---

def test_output_folder_holding_the_inputs_is_refused(tmp_path):
    original = save(tmp_path / "photos" / "x.png", rgb(seed=1))
    save(tmp_path / "photos" / "sub" / "x.png", rgb(seed=2))
    before = original.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(C.ConvertError, match="holds the input"):
            run([tmp_path / "photos" / "sub"], tmp_path / "photos", overwrite=overwrite)
    assert original.read_bytes() == before


def test_a_glob_never_reads_its_own_outputs_back(tmp_path):
    save(tmp_path / "trip" / "a.png")
    for _ in range(2):  # the second time the glob also matches trip/styled/a.png
        report = run([str(tmp_path / "trip" / "**" / "*.png")], tmp_path / "trip" / "styled")
        assert [r["input"] for r in report.converted + report.skipped] == [
            str(tmp_path / "trip" / "a.png")]


def test_output_through_a_linked_folder_into_the_inputs_fails_that_file(tmp_path):
    src = tmp_path / "in"
    save(src / "sub" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(src / "sub")
    report = run([src], out, output_format="webp")
    assert "outside" in report.failed[0]["reason"]
    assert sorted(p.name for p in (src / "sub").iterdir()) == ["a.png"]


# --- 5. names that are not UTF-8; 6. long names ---

def test_a_name_that_is_not_utf8_does_not_stop_the_batch(tmp_path, weights):
    src = tmp_path / "in"
    save(src / "a.png")
    odd = os.fsdecode(b"caf\xe9 \xff.png")
    save(src / odd)
    report = run([src], tmp_path / "out")
    assert len(report.converted) == 2 and report.exit_code == 0
    assert os.path.exists(os.fsencode(tmp_path / "out") + b"/caf\xe9 \xff.png")
    json.dumps(report.to_dict())  # the report can be written
    r = stylize(str(src), "-o", str(tmp_path / "out2"), "--weights", str(weights))
    assert r.exit_code == 0 and "converted 2" in r.output


@pytest.mark.parametrize("name", ["a" * 251 + ".png", "é" * 118 + ".png", "b" * 233 + ".png"])
def test_names_up_to_255_bytes_are_written(tmp_path, name):
    src = save(tmp_path / "in" / name)
    report = run([src.parent], tmp_path / "out")
    assert report.failed == [] and (tmp_path / "out" / name).is_file()
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / name]
    # a killed run's temp file of such a name is recognised and removed
    stem = runs.temp_stem(tmp_path / "out", name)
    assert len(os.fsencode(f".{stem}.4194304.abcdefgh.tmp")) <= 255
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / "out" / f".{stem}.{dead}.abcdefgh.tmp"
    stale.write_bytes(b"")
    report = run([src.parent], tmp_path / "out")
    assert report.cleaned == [str(stale)]


# --- 7. an unwritable styles folder is found before training ---

def test_unwritable_styles_folder_stops_before_the_first_step(tmp_path, home, spy_train_steps):
    a, b = folder(tmp_path / "a", 2, seed=1), folder(tmp_path / "b", 2, seed=2)
    home.mkdir(parents=True)
    (home / "styles").write_text("a file where the folder should be")
    steps = spy_train_steps()
    r = cli("train", "--a", str(a), "--b", str(b), "--name", "s", "--runs-dir",
            str(tmp_path / "runs"), "--device", "cpu")
    assert r.exit_code == 2 and "cannot write to the styles folder" in r.output
    assert steps == [] and not (tmp_path / "runs").exists()


def test_failed_export_says_where_the_weights_are(tmp_path, monkeypatch):
    a, b = folder(tmp_path / "a", 3, seed=1, size=(40, 50)), folder(tmp_path / "b", 3, seed=2,
                                                                    size=(40, 50))

    def full(path, *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(W, "save_weights", full)  # the export only; checkpoints still save
    r = cli("train", "--a", str(a), "--b", str(b), "--name", "s", "--runs-dir",
            str(tmp_path / "runs"), *TINY)
    assert r.exit_code == 1, r.output
    assert "No space left" in r.output and "safe in" in r.output
    assert (tmp_path / "runs" / "s" / "s.safetensors").is_file()


# --- 8. shipped names are reserved ---

def test_a_shipped_name_is_refused_and_an_old_user_copy_pointed_out(tmp_path, home, weights):
    assert "vangogh" in W.shipped_names()
    r = cli("train", "--a", "a", "--b", "b", "--name", "vangogh", "--device", "cpu")
    assert r.exit_code == 2 and "shipped style" in r.output
    r = cli("polish", "--photos", "a", "--name", "vangogh")
    assert r.exit_code == 2 and "shipped style" in r.output
    (home / "styles").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        (home / "styles" / f"vangogh{suffix}").write_bytes(weights.with_suffix(suffix).read_bytes())
    r = cli("styles")
    assert r.exit_code == 0 and "hidden by the shipped style" in r.output
    assert W.find_style("vangogh") == W.shipped_weights_dir() / "vangogh.safetensors"


# --- 9. malformed user styles never break the listing ---

@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe{not utf-8", b"[" * 100_000,
                                     b'{"tile_size": "x", "generator": {}}', b"{broken"])
def test_a_malformed_user_style_is_skipped_with_a_warning(tmp_path, home, weights, content):
    (home / "styles").mkdir(parents=True)
    (home / "styles" / "bad.safetensors").write_bytes(weights.read_bytes())
    (home / "styles" / "bad.json").write_bytes(content)
    r = cli("styles")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "bad.json" in r.output and "(skipped)" in r.output
    assert any(line.startswith("vangogh ") for line in r.stdout.splitlines())
    with pytest.raises(W.WeightsError, match=r"style 'nope' not found \(known styles: .*vangogh"):
        W.find_style("nope")
    r = stylize(str(save(tmp_path / "x.png")), "-o", str(tmp_path / "o.png"), "--style", "nope")
    assert r.exit_code == 2 and "not found" in r.output


# --- 10. one validator for style configs ---

BAD_CONFIGS = [
    ({"tile_size": 0}, "tile_size"), ({"tile_size": -4}, "tile_size"),
    ({"tile_size": True}, "tile_size"), ({"tile_size": 100_000}, "tile_size"),
    ({"tile_size": 18}, "multiple of 4"), ({"tile_size": "64"}, "tile_size"),
    ({"generator": {"channels": 4, "res_blocks": 600}}, "res_blocks"),
    ({"generator": {"channels": 0}}, "channels"), ({"generator": {"channels": True}}, "channels"),
    ({"generator": {"channels": 4, "depth": 3}}, "unknown"), ({"generator": None}, "generator"),
    ({"palette": {"lab_mean": [float("nan"), 0, 0], "lab_std": [1, 1, 1]}}, "lab_mean"),
    ({"palette": {"lab_mean": [50, 0, 0], "lab_std": [1, float("inf"), 1]}}, "lab_std"),
    ({"palette": {"lab_mean": [50, 0, 0], "lab_std": [1, 1, 1], "strength": 2}}, "strength"),
    ({"palette": [1, 2]}, "palette"),
    ({"strokes": {"picture_side": 5}}, "picture_side"),
]


@pytest.mark.parametrize("change, field", BAD_CONFIGS)
def test_a_bad_style_config_is_one_clear_usage_error(tmp_path, weights, monkeypatch, change,
                                                      field):
    cfg = json.loads(weights.with_suffix(".json").read_text())
    cfg.update(change)
    weights.with_suffix(".json").write_text(json.dumps(cfg))  # NaN and Infinity as JSON allows

    def never(*args, **kw):
        raise AssertionError("a model was built from a bad config")

    monkeypatch.setattr(models, "PatchGenerator", never)  # stylize imports it when it loads
    with pytest.raises(W.WeightsError, match=field) as e:
        S.load_style(weights)
    assert "\n" not in str(e.value) and "bad style config" in str(e.value)
    r = stylize(str(save(tmp_path / "x.png")), "-o", str(tmp_path / "o.png"), "--weights",
                str(weights))
    assert r.exit_code == 2 and field in r.output and "Traceback" not in r.output


def test_siamgan_home_with_an_unknown_user_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMGAN_HOME", "~no_such_user_zz/x")
    r = cli("styles")
    assert r.exit_code == 2 and "SIAMGAN_HOME" in r.output
    r = stylize(str(save(tmp_path / "x.png")), "-o", str(tmp_path / "o.png"), "--style",
                "vangogh")
    assert r.exit_code == 2 and "SIAMGAN_HOME" in r.output
    assert paths.expand_user("~no_such_user_zz/a.jpg") == Path("~no_such_user_zz/a.jpg")
    with pytest.raises(C.ConvertError, match="no such file"):  # not a traceback
        C.expand_inputs(["~no_such_user_zz/a.jpg"])


# --- SIGTERM, like Ctrl-C ---

def test_sigterm_finishes_what_is_done_writes_the_summary_and_exits_143(tmp_path, weights,
                                                                        monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"{i}.png", rgb(seed=i))
    calls = []
    real = Stylizer.stylize_array

    def terminated_on_second(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        return real(self, *args, **kw)

    monkeypatch.setattr(Stylizer, "stylize_array", terminated_on_second)
    report = run([src], tmp_path / "out", tiling=TileConfig(batch_size=1))
    assert report.interrupted and report.exit_code == 143
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png"]
    assert "terminated (SIGTERM)" in report.summary()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored
    calls.clear()
    r = stylize(str(src), "-o", str(tmp_path / "out2"), "--weights", str(weights),
                "--batch-size", "1")
    assert r.exit_code == 143 and "terminated (SIGTERM)" in r.output


def test_a_trainer_turns_sigterm_into_a_checkpoint_and_143():
    with pytest.raises(runs.Terminated):
        with runs.deferred_interrupt() as state:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert state["requested"]
            raise KeyboardInterrupt  # what a trainer raises after its checkpoint
    assert runs.exit_status(runs.Terminated()) == 143
    assert runs.exit_status(KeyboardInterrupt()) == 130


# --- also seen ---

def test_one_input_and_an_output_named_like_a_text_file(tmp_path):
    src = save(tmp_path / "a.png")
    with pytest.raises(C.ConvertError, match="named like an image"):
        run([src], tmp_path / "name.txt")
    assert not (tmp_path / "name.txt").exists()
    run([src], str(tmp_path / "styled.v2") + "/")  # a folder, said so with '/'
    assert (tmp_path / "styled.v2" / "a.png").is_file()


def test_tiny_scale_warns_that_the_output_is_nearly_flat(tmp_path):
    src = save(tmp_path / "in" / "a.png", rgb(40, 50))
    report = run([src], tmp_path / "out", tiling=TileConfig(scale=0.01))
    assert any("flat colour" in w for w in report.converted[0]["warnings"])
    report = run([src], tmp_path / "out2")
    assert report.converted[0]["warnings"] == []


def test_progress_moves_band_by_band_on_one_large_image(tmp_path, monkeypatch):
    src = save(tmp_path / "in" / "a.png", rgb(16, 16))
    shown: list[float] = []

    class Spy(C.tqdm):
        def update(self, n=1):
            shown.append(self.n + n)
            return super().update(n)

    monkeypatch.setattr(C, "tqdm", Spy)
    run([src], tmp_path / "out", progress=True,
        tiling=TileConfig(tile_size=8, scale=8, batch_size=16, strokes="pixel"))
    partial = sorted({n for n in shown if 0 < n < 1})  # 1 file: its bands move the bar
    assert len(partial) >= 5 and all(n == round(n, 2) for n in partial)
    assert shown[-1] == 1 and isinstance(shown[-1], int), shown[-5:]


def test_same_folder_as_photos_and_paintings_warns(tmp_path):
    (tmp_path / "x").mkdir()
    r = cli("train", "--a", str(tmp_path / "x"), "--b", str(tmp_path / "x"), "--name", "n",
            "--runs-dir", str(tmp_path / "runs"), "--device", "cpu")
    assert "warning: --a" in r.output and "same" in r.output


def test_claimed_files_are_left_to_their_owner_and_stale_claims_ignored(tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"{i}.png", rgb(seed=i))
    out = tmp_path / "out"
    out.mkdir()
    claims.claim_path(out / "0.png").write_text(f"1@{claims.socket.gethostname()}")  # alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    claims.claim_path(out / "1.png").write_text(f"{dead}@{claims.socket.gethostname()}")
    report = run([src], out)
    assert [s["reason"] for s in report.skipped] == ["being converted by another run (1@"
                                                     f"{claims.socket.gethostname()})"]
    assert sorted(Path(c["input"]).name for c in report.converted) == ["1.png", "2.png"]
    assert "1 by another run" in report.summary() and report.exit_code == 0
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [".0.png.claim"]  # the live one's, untouched; ours and the stale gone


def test_two_runs_on_one_folder_share_the_work(tmp_path):
    src = tmp_path / "in"
    for i in range(8):
        save(src / f"{i}.png", rgb(seed=i))
    calls: list[int] = []

    class Slow(Negate):
        def forward(self, x):
            calls.append(1)
            time.sleep(0.05)
            return -x

    reports: list[C.ConvertReport] = []
    threads = [threading.Thread(target=lambda: reports.append(
        run([src], tmp_path / "out", Slow(), tiling=TileConfig(batch_size=1))))
        for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    converted = [c["input"] for r in reports for c in r.converted]
    assert sorted(converted) == sorted(str(p) for p in src.iterdir())  # each file once
    assert len(calls) == 8 * 2 and all(r.exit_code == 0 for r in reports)  # 2 tiles each
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_dash_reads_stdin_and_writes_stdout(tmp_path, weights):
    data = rgb(10, 14)
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    r = stylize("-", "-o", "-", "--weights", str(weights), input=buf.getvalue())
    assert r.exit_code == 0, r.stderr
    with Image.open(io.BytesIO(r.stdout_bytes)) as im:
        assert im.format == "PNG" and im.size == (14, 10)
    assert "converted 1" in r.stderr
    r = stylize("-", "-o", str(tmp_path / "o.webp"), "--weights", str(weights),
                input=buf.getvalue())
    assert r.exit_code == 0 and (tmp_path / "o.webp").is_file()
    src = save(tmp_path / "a.png", data)
    r = stylize(str(src), "-o", "-", "--weights", str(weights), "--format", "jpg")
    assert r.exit_code == 0 and r.stdout_bytes[:2] == b"\xff\xd8"
    r = stylize("-", str(src), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert r.exit_code == 2 and "one image only" in r.output


def test_help_gives_no_palette_number_that_could_disagree_with_the_style():
    r = CliRunner().invoke(app, ["stylize", "--help"])
    text = " ".join(r.output.replace("│", " ").split())
    assert "Default: the style's own default." in text
    assert "vangogh 0." not in text


def test_eval_and_palette_outputs_stay_off_their_inputs(tmp_path, weights):
    (tmp_path / "large").mkdir()
    r = cli("eval", "--large", str(tmp_path / "large"), "--paintings", str(tmp_path / "large"),
            "--weights", str(weights), "--save", str(tmp_path / "large"))
    assert r.exit_code == 2 and "is the input" in r.output
    r = cli("palette", "--style", str(weights), "--paintings", str(tmp_path / "large"),
            "-o", str(weights))
    assert r.exit_code == 2 and "is the input" in r.output


# --- the class, not just the examples: hostile names and layouts ---

NAME = st.one_of(
    st.sampled_from(["a", "A", "sub", "x y", "é", "-", "~"]),  # often the same: collisions
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
            min_size=1, max_size=30),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b)
    .map(os.fsdecode),
    st.integers(200, 251).map(lambda n: "L" * n),
).filter(lambda s: s not in (".", "..") and len(os.fsencode(s)) <= 251)
SUFFIX = st.sampled_from([".png", ".PNG", ".jpg", ".txt", ""])
KIND = st.sampled_from(["image", "image", "image", "text", "fifo", "empty", "link"])
FOLDER = st.one_of(st.sampled_from(["sub", "a"]), NAME.map(lambda s: s[:40]))
ENTRY = st.tuples(st.lists(FOLDER, max_size=2), NAME, SUFFIX, KIND)
WHERE = st.sampled_from(["beside", "inside", "deep inside", "above", "same", "file",
                         "linked into input", "above a subfolder"])


def snapshot(root: bytes) -> dict[bytes, tuple]:
    """Every entry under ``root``: (kind, size, mtime, content hash) for files."""
    found = {}
    for where, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(where, name)
            st_ = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            found[path] = (st_.st_mode, st_.st_size, st_.st_mtime_ns, digest)
    return found


def build(root: Path, entries) -> None:
    src = root / "in"
    src.mkdir()
    for i, (folders, name, suffix, kind) in enumerate(entries):
        path = src.joinpath(*folders) / f"{name}{suffix}"
        if os.path.lexists(path) or any(p.exists() and not p.is_dir() for p in path.parents):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            Image.fromarray(rgb(5, 6, seed=i)).save(path, format="PNG")
        elif kind == "text":
            path.write_text("not a picture")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            path.symlink_to(src)  # a link to a folder: never followed


def output_for(root: Path, where: str) -> Path:
    src = root / "in"
    if where == "linked into input":
        (root / "out").mkdir()
        (root / "out" / "sub").symlink_to(src)
    return {"beside": root / "out", "inside": src / "styled", "deep inside": src / "a" / "b",
            "above": root, "same": src, "file": root / "x.png",
            "linked into input": root / "out", "above a subfolder": src}[where]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(entries=[([], "a", ".png", "image"), (["sub"], "a", ".png", "image")],
         where="above a subfolder", overwrite=True, fmt=None)  # defect 4
@example(entries=[(["sub"], "a", ".png", "image")], where="linked into input",
         overwrite=False, fmt="webp")
@example(entries=[([], "L" * 251, ".png", "image")], where="linked into input",
         overwrite=False, fmt="webp")  # .webp makes the name 256 bytes: too long
@example(entries=[([], "a", ".jpg", "fifo"), ([], os.fsdecode(b"\xff"), ".png", "image"),
                  ([], "L" * 251, ".png", "image")], where="beside", overwrite=False, fmt=None)
@given(entries=st.lists(ENTRY, min_size=1, max_size=5), where=WHERE,
       overwrite=st.booleans(), fmt=st.sampled_from([None, "webp"]))
def test_no_input_is_modified_and_every_output_lands_in_the_output_folder(
        tmp_path_factory, entries, where, overwrite, fmt):
    root = tmp_path_factory.mktemp("h")
    build(root, entries)
    output = output_for(root, where)
    before = snapshot(os.fsencode(root))
    inputs = [root / "in"]
    if where == "file":
        inputs = sorted(p for p in (root / "in").rglob("*")
                        if p.is_file() and not p.is_symlink())[:1]
    if where == "above a subfolder":  # stylize photos/sub -o photos
        inputs = sorted(p for p in (root / "in").iterdir() if p.is_dir() and not p.is_symlink())
        inputs = inputs[:1]
    if not inputs:
        return
    try:
        within(60, run, inputs, output, overwrite=overwrite, output_format=fmt)
    except C.ConvertError:
        pass  # refused before any work: fine, as long as nothing changed
    after = snapshot(os.fsencode(root))
    inside = os.fsencode(os.path.realpath(output))

    def in_output(path: bytes) -> bool:
        real = os.path.realpath(path)
        return real == inside or real.startswith(inside + b"/")

    for path, state in before.items():  # every file there before is an original
        assert path in after, path
        assert stat.S_ISDIR(state[0]) or after[path] == state, path
    for path in after.keys() - before.keys():  # new: outputs, or -o and its parents
        assert in_output(path) or inside.startswith(os.path.realpath(path) + b"/"), path


def test_a_name_too_long_in_the_new_format_fails_alone(tmp_path):
    save(tmp_path / "in" / ("L" * 251 + ".png"))  # 255 bytes; as .webp, 256
    save(tmp_path / "in" / "short.png")
    report = run([tmp_path / "in"], tmp_path / "out", output_format="webp")
    assert [Path(f["input"]).name for f in report.failed] == ["L" * 251 + ".png"]
    assert "too long" in report.failed[0]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["short.webp"]
