"""keep_freed_memory and bound_primitive_cache: which glibc options and oneDNN capacity they set,
and when they leave the process alone."""

from __future__ import annotations

import os
import platform
import sys

import pytest

from seqattn import allocator


@pytest.fixture
def no_cache_capacity(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither of oneDNN's capacity variables set (restored after the test)."""
    for name in allocator._CACHE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sets_the_mmap_and_trim_thresholds(no_cache_capacity: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    no_cache_capacity.setattr(
        allocator, "_mallopt", lambda option, value: calls.append((option, value)) or True
    )
    for name in allocator._ENVIRONMENT:
        no_cache_capacity.delenv(name, raising=False)
    assert allocator.keep_freed_memory()
    assert calls == [(allocator._M_MMAP_THRESHOLD, 32 << 20), (allocator._M_TRIM_THRESHOLD, 128 << 20)]
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"


def test_bounds_the_primitive_cache(no_cache_capacity: pytest.MonkeyPatch) -> None:
    assert allocator.bound_primitive_cache(4)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "4"
    assert not allocator.bound_primitive_cache()  # already set: the first setting stays
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "4"


@pytest.mark.parametrize("name", ["ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"])
def test_a_capacity_in_the_environment_wins(no_cache_capacity: pytest.MonkeyPatch, name: str) -> None:
    no_cache_capacity.setenv(name, "1024")
    assert not allocator.bound_primitive_cache()
    assert [os.environ.get(n) for n in allocator._CACHE_ENVIRONMENT].count(None) == 1


def test_bounding_the_cache_does_not_depend_on_glibc_tunables(no_cache_capacity: pytest.MonkeyPatch) -> None:
    no_cache_capacity.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not allocator.keep_freed_memory()  # the allocator is the user's
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"  # the cache is still bounded


def test_a_negative_capacity_is_refused(no_cache_capacity: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="capacity"):
        allocator.bound_primitive_cache(-1)
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_"])
def test_the_environment_wins(no_cache_capacity: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch = no_cache_capacity
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


_HEAP_GROWTH = """
import ctypes, os, sys, torch
from seqattn.allocator import keep_freed_memory
from seqattn.models.rnn import RNNEncoder
if sys.argv[1] == "bounded":
    keep_freed_memory()  # as the Trainer does, before the first primitive
else:
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "1024"  # oneDNN's default
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
torch.manual_seed(0)
encoder = RNNEncoder(50, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0).train()
def step(rows, length):
    src = torch.randint(4, 50, (rows, length))
    lengths = torch.full((rows,), length)
    lengths[0] = max(1, length - 1)  # two length groups: two shapes per layer
    states, _ = encoder(src, lengths)
    states.sum().backward()
step(2, 3)
before = libc.mallinfo2().uordblks
for i in range(40):
    step(1 + i % 5, 3 + i)
print((libc.mallinfo2().uordblks - before) / 2**20)
"""


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    if sys.platform != "linux" or name != "glibc":
        return ()
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


@pytest.mark.skipif(_glibc_version() < (2, 33), reason="glibc's mallinfo2 (2.33 and later) only")
def test_training_over_many_source_lengths_keeps_the_heap_flat() -> None:
    """The RNN encoder trains on one oneDNN primitive per source length and layer; with the
    cache bounded, their number (and the heap's live bytes) stops growing with the lengths seen."""
    import subprocess

    import torch

    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")

    def growth(mode: str) -> float:
        env = {k: v for k, v in os.environ.items() if k not in allocator._CACHE_ENVIRONMENT}
        done = subprocess.run(
            [sys.executable, "-c", _HEAP_GROWTH, mode], env=env, capture_output=True, text=True, check=True
        )
        return float(done.stdout.split()[-1])

    unbounded, bounded = growth("default"), growth("bounded")
    if unbounded < 4:
        pytest.skip(f"this oneDNN build's primitives are small ({unbounded:.1f} MiB for 40 batches)")
    assert bounded < unbounded / 4, (bounded, unbounded)
