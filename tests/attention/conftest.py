"""Shared fixtures for the attention tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_single_thread() -> Iterator[None]:
    """Deterministic parameters and inputs in every test.

    The tensors here are tiny, so intra-op threads only add overhead (and stall badly when the
    machine is busy); the previous thread count is restored afterwards.
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
