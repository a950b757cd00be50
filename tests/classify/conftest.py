"""One torch thread for these tests (restored afterwards): on a shared, busy CPU two threads wait
on each other far more than they gain. Nothing may be downloaded (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
