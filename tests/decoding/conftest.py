"""Shared fixtures for the decoding tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """The toy models are tiny: one intra-op thread is fastest and keeps timings steady."""
