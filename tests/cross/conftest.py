"""Shared fixtures of the cross-sampling tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra intra-op threads only spin on a busy machine
    yield
    torch.set_num_threads(before)
