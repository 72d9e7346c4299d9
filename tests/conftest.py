"""Shared test settings."""

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
