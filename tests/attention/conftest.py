"""Shared fixtures for the attention tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic(one_thread: None) -> None:
    """Deterministic parameters and inputs in every test, on one intra-op thread: the tensors
    here are tiny, so more threads only add overhead (and stall badly on a busy machine)."""
    torch.manual_seed(0)
