"""Run-folder helpers: atomic writes, stats log, loss plot, deferred Ctrl-C."""

import os
import signal

import numpy as np
import pytest
from PIL import Image

from siamgan.runs import (
    StatsLog,
    TrainingDiverged,
    atomic_write,
    check_finite,
    deferred_interrupt,
    due,
    load_checkpoint,
    plot_losses,
    save_checkpoint,
)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left


def test_atomic_write_gives_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "g.bin") as f:
            f.write(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "g.bin").stat().st_mode & 0o777 == 0o644


def test_stats_log_truncates_lines_after_the_resumed_step(tmp_path):
    log = StatsLog(tmp_path)
    for step in range(1, 6):
        log.append({"step": step, "loss": float(step)})
    log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]


def test_loss_plot_of_constant_series_is_flat_to_the_ends(tmp_path):
    rows = [{"step": i, "a": 1.0, "b": 2.0} for i in range(1, 101)]
    plot_losses(rows, ["a", "b"], tmp_path / "p.png")
    px = np.asarray(Image.open(tmp_path / "p.png"))
    plot_area = px[20:380, 61:649]  # inside the frame
    coloured = np.argwhere(np.abs(plot_area.astype(int) - 255).sum(-1) > 60)
    rows_used = np.unique(coloured[:, 0])
    # Two horizontal lines (2 px wide each): a smoothing that sagged at the ends would
    # spread the curves over many rows.
    assert len(rows_used) <= 6, rows_used


def test_first_ctrl_c_is_deferred_second_interrupts():
    with deferred_interrupt() as state:
        signal.raise_signal(signal.SIGINT)
        assert state["requested"]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resuming_removes_the_temp_files_of_a_killed_save(tmp_path):
    save_checkpoint(tmp_path, {"step": 3})
    dead = tmp_path / ".checkpoint.pt.999999999.zzzzzzzz.tmp"  # no such process id
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.zzzzzzzz.tmp"
    other = tmp_path / ".notes.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    assert load_checkpoint(tmp_path)["step"] == 3
    assert not dead.exists() and live.exists() and other.exists()


def test_check_finite_names_the_bad_losses_and_the_step(tmp_path):
    check_finite({"a": 1.0, "b": -2.5}, 3, tmp_path)  # all finite: nothing happens
    with pytest.raises(TrainingDiverged, match=r"at step 7: \{'b': nan\}") as err:
        check_finite({"a": 1.0, "b": float("nan")}, 7, tmp_path)
    assert str(tmp_path) in str(err.value) and "'a'" not in str(err.value)


@pytest.mark.parametrize("count, every, last, expected", [
    (4, 2, 9, True), (5, 2, 9, False), (9, 4, 9, True), (1, 1, 3, True), (3, 5, 10, False)])
def test_due_every_n_and_at_the_last(count, every, last, expected):
    assert due(count, every, last) is expected
