"""keep_freed_memory: which glibc options it sets, and when it leaves the allocator alone."""

from __future__ import annotations

import platform
import sys

import pytest

from seqattn import allocator


def test_sets_the_mmap_and_trim_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(allocator, "_mallopt", lambda option, value: calls.append((option, value)) or True)
    for name in allocator._ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_freed_memory()
    assert calls == [(allocator._M_MMAP_THRESHOLD, 32 << 20), (allocator._M_TRIM_THRESHOLD, 128 << 20)]


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_"])
def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(allocator, "_mallopt", lambda option, value: pytest.fail("mallopt was called"))
    monkeypatch.setenv(name, "131072")
    assert not allocator.keep_freed_memory()


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
def test_real_mallopt_accepts_the_values() -> None:
    assert allocator._mallopt(allocator._M_MMAP_THRESHOLD, allocator._MMAP_BYTES)
    assert allocator._mallopt(allocator._M_TRIM_THRESHOLD, allocator._TRIM_BYTES)


def test_no_mallopt_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert not allocator._mallopt(allocator._M_TRIM_THRESHOLD, 128 * 1024)


def test_loading_a_model_keeps_freed_memory(translator_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqattn
    from seqattn import api

    calls: list[int] = []
    monkeypatch.setattr(api, "keep_freed_memory", lambda: calls.append(1) or True)
    seqattn.load(translator_dir)
    assert calls == [1]
