"""Beam reorders that move nothing in a :class:`KVCache` (grouped rows with an ancestry).

The reference is a cache that copies at every reorder (``KVCache(grouped=False)``): a cache
driven through the same appends and grouped reorders must give the same attention outputs, and
once resolved exactly the same stored keys and values.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from seqattn.attention import KVCache, MultiHeadAttention, ScaledDot, attend, grouped_cache_attention
from tests.attention.reference import DOT_LIKE, SCORE_NAMES
from tests.attention.test_multihead import D, H, make_mha


def beam_index(generator: torch.Generator, groups: int, group: int, *, keep: Tensor | None = None) -> Tensor:
    """A beam search reorder: each new row's parent is a random row of its own group; the
    groups ``keep`` (default: all) stay, in order."""
    kept = torch.arange(groups) if keep is None else keep
    parents = torch.randint(0, group, (kept.numel(), group), generator=generator)
    return (kept.unsqueeze(1) * group + parents).flatten()


def run_both(
    mha: MultiHeadAttention,
    group: int,
    schedule: list[str],
    *,
    seed: int = 0,
    groups: int = 3,
    need_weights_at: int | None = None,
) -> tuple[KVCache, KVCache]:
    """Drive a grouped and a copying cache through ``schedule`` ("step", "beam", "drop":
    a reorder that also drops the first remaining group, "any": a reorder that breaks the
    groups) and compare every step's outputs."""
    generator = torch.Generator().manual_seed(seed)
    grouped, copying = KVCache(), KVCache(grouped=False)
    rows = groups * group
    with torch.no_grad():
        for i, action in enumerate(schedule):
            if action == "step":
                x = torch.randn(rows, 1, D, generator=generator)
                want = need_weights_at == i
                out, weights = mha(x, causal=True, cache=grouped, need_weights=want)
                ref, ref_weights = mha(x, causal=True, cache=copying, need_weights=want)
                torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
                if want:
                    assert weights is not None and ref_weights is not None
                    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-6)
                continue
            if action == "any":
                index = torch.randint(0, rows, (rows,), generator=generator)
                grouped.reorder(index)
                copying.reorder(index)
                continue
            keep = torch.arange(1, rows // group) if action == "drop" and rows > group else None
            index = beam_index(generator, rows // group, group, keep=keep)
            rows = index.numel()
            grouped.reorder(index, group=group)
            copying.reorder(index, group=group)
    return grouped, copying


def resolved_tensors(cache: KVCache, rows: int) -> tuple[Tensor, Tensor]:
    """Every row's own history, ``(B, H, T, Dh)`` keys and values, after :meth:`resolve`."""
    cache.resolve()
    assert cache.ancestry is None
    empty = torch.zeros(rows, H, 0, D // H)
    return cache.append(empty, empty)


@pytest.mark.parametrize("name", DOT_LIKE)
@pytest.mark.parametrize("group", [1, 2, 5])
def test_grouped_reorders_attend_like_copying_ones(name: str, group: int) -> None:
    schedule = ["step", "beam"] * 9 + ["step", "drop", "step", "beam", "step", "beam", "step"]
    grouped, copying = run_both(make_mha(name), group, schedule)
    rows = 2 * group
    keys, values = resolved_tensors(grouped, rows)
    ref_keys, ref_values = resolved_tensors(copying, rows)
    assert torch.equal(keys, ref_keys) and torch.equal(values, ref_values)  # copies, bit for bit


def test_a_beam_reorder_within_the_groups_moves_nothing() -> None:
    mha, group = make_mha("scaled_dot"), 5
    cache = KVCache()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            mha(torch.randn(2 * group, 1, D), cache=cache)
        cache.reorder(beam_index(generator, 2, group), group=group)
        first = cache.ancestry
        assert first is not None and first.shape == (2 * group, 3)
        empty = torch.zeros(2 * group, H, 0, D // H)
        before = cache.append(empty, empty)[0].data_ptr()
        cache.reorder(beam_index(generator, 2, group), group=group)
        assert cache.append(empty, empty)[0].data_ptr() == before
    assert int(first.max()) < group and int(first.min()) >= 0


@pytest.mark.parametrize("name", [n for n in SCORE_NAMES if n not in DOT_LIKE])
def test_other_scores_resolve_before_attending(name: str) -> None:
    """Scores that are not a dot product cannot read a grouped cache: the module says so, and
    a grouped cache handed to it anyway is resolved first (same outputs)."""
    mha = make_mha(name)
    assert not mha.reads_grouped_cache
    run_both(mha, 3, ["step", "beam", "step", "beam", "step", "drop", "step"])


@pytest.mark.parametrize("need_weights_at", [4, 6])
def test_asking_for_weights_resolves_the_cache(need_weights_at: int) -> None:
    run_both(
        make_mha("scaled_dot"),
        3,
        ["step", "beam", "step", "beam", "step", "beam", "step", "beam", "step"],
        need_weights_at=need_weights_at,
    )


def test_attention_dropout_in_training_mode_resolves_the_cache() -> None:
    mha = MultiHeadAttention(D, H, dropout=0.5).train()
    cache, generator = KVCache(), torch.Generator().manual_seed(2)
    with torch.no_grad():
        mha(torch.randn(4, 1, D), cache=cache)
        cache.reorder(beam_index(generator, 2, 2), group=2)
        assert cache.ancestry is not None
        mha(torch.randn(4, 1, D), cache=cache)
    assert cache.ancestry is None


def test_a_reorder_that_breaks_the_groups_resolves_the_cache() -> None:
    grouped, _ = run_both(
        make_mha("scaled_dot"), 2, ["step", "beam", "step", "beam", "any", "step", "beam", "step"]
    )
    assert grouped.ancestry is not None  # grouped again after the last beam reorder


def test_resolve_on_an_empty_cache_is_a_no_op() -> None:
    cache = KVCache()
    cache.resolve()
    cache.reorder(torch.tensor([1, 0]), group=2)
    assert cache.length == 0 and cache.ancestry is None


@settings(max_examples=40, deadline=None)
@given(
    group=st.integers(1, 4),
    groups=st.integers(1, 3),
    steps=st.integers(1, 12),
    drop_at=st.integers(0, 12),
    seed=st.integers(0, 2**16),
)
def test_property_grouped_cache_matches_copying(
    group: int, groups: int, steps: int, drop_at: int, seed: int
) -> None:
    schedule: list[str] = []
    for t in range(steps):
        schedule += ["step", "drop" if t == drop_at else "beam"]
    run_both(make_mha("scaled_dot"), group, [*schedule, "step"], seed=seed, groups=groups)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grouped_cache_attention_equals_attention_over_each_history(dtype: torch.dtype) -> None:
    """Direct check of the kernel: stored rows plus an ancestry == each row's gathered history."""
    torch.manual_seed(3)
    groups, group, length, dim = 3, 4, 7, 8
    rows = groups * group
    query = torch.randn(rows, H, 1, dim, dtype=dtype)
    keys = torch.randn(rows, H, length, dim, dtype=dtype)
    values = torch.randn(rows, H, length, dim, dtype=dtype)
    ancestry = torch.randint(0, group, (rows, length))
    context = grouped_cache_attention(query, keys, values, ancestry, group=group, scale=dim**-0.5)
    where = torch.arange(rows).div(group, rounding_mode="floor").unsqueeze(1) * group + ancestry
    positions = torch.arange(length)
    own_keys = keys.transpose(1, 2)[where, positions].transpose(1, 2)  # (B, H, T, Dh)
    own_values = values.transpose(1, 2)[where, positions].transpose(1, 2)
    scores = query @ own_keys.transpose(-1, -2) * dim**-0.5
    expected = torch.softmax(scores, dim=-1) @ own_values
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(context, expected, rtol=0, atol=tolerance)
    via_attend, _ = attend(query, own_keys, own_values, score=ScaledDot())
    torch.testing.assert_close(context, via_attend, rtol=0, atol=tolerance)
