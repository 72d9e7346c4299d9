"""Shared test settings."""

import importlib

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny tensors gain nothing from more, and on a busy 2-core
    machine two threads spin-wait on each other (a tiny forward pass went from 2 ms to
    0.4 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spy_train_steps(monkeypatch):
    """Call it to start spying on ``siamgan.train.train_step``; the list it returns gets
    the number of each step run from then on."""
    T = importlib.import_module("siamgan.train")  # the package re-exports a function `train`

    def start() -> list[int]:
        calls: list[int] = []
        real_step = T.train_step

        def counting_step(m, a, b, cfg, step=0, colour=None):
            calls.append(step)
            return real_step(m, a, b, cfg, step, colour)

        monkeypatch.setattr(T, "train_step", counting_step)
        return calls

    return start


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temporary SIAMGAN_HOME, so exported styles never reach the user's own."""
    monkeypatch.setenv("SIAMGAN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
