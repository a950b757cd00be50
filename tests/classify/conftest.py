"""One torch thread for these tests (restored afterwards): on a shared, busy CPU two threads wait
on each other far more than they gain."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
