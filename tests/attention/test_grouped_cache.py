"""Beam reorders in a pooled :class:`KVCache` (one pool of entries per group of rows, each
row's history a membership mask over it; dead entries compacted away).

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

from seqattn.attention import KVCache, MultiHeadAttention, ScaledDot, attend, pooled_cache_attention
from tests.attention.reference import DOT_LIKE, SCORE_NAMES
from tests.attention.test_multihead import D, H, make_mha


def beam_index(
    generator: torch.Generator,
    groups: int,
    group: int,
    *,
    keep: Tensor | None = None,
    parents: int | list[int] | None = None,
) -> Tensor:
    """A beam search reorder: each new row's parent is a random row of its own group (among its
    first ``parents`` rows, or ``parents[i % len(parents)]`` for group ``i``; default: any); the
    groups ``keep`` (default: all) stay, in order."""
    kept = torch.arange(groups) if keep is None else keep
    limits = [parents or group] if not isinstance(parents, list) else parents
    bound = torch.tensor([limits[int(i) % len(limits)] for i in kept]).unsqueeze(1)
    choices = (torch.rand(kept.numel(), group, generator=generator) * bound).long()
    return (kept.unsqueeze(1) * group + choices).flatten()


def check_members(cache: KVCache) -> None:
    """Every row of a pooled cache holds exactly its ``length`` positions."""
    members = cache.members
    if members is not None:
        assert members.shape[1] >= cache.length
        assert torch.equal(members.sum(dim=1), torch.full((members.size(0),), cache.length))


def run_both(
    mha: MultiHeadAttention,
    group: int,
    schedule: list[str],
    *,
    seed: int = 0,
    groups: int = 3,
    need_weights_at: int | None = None,
    parents: int | list[int] | None = None,
) -> tuple[KVCache, KVCache]:
    """Drive a grouped and a copying cache through ``schedule`` ("step", "beam", "drop":
    a reorder that also drops the first remaining group, "any": a reorder that breaks the
    groups; beam parents among the first ``parents`` rows of a group) and compare every step's
    outputs."""
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
                check_members(grouped)
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
            index = beam_index(generator, rows // group, group, keep=keep, parents=parents)
            rows = index.numel()
            grouped.reorder(index, group=group)
            copying.reorder(index, group=group)
            check_members(grouped)
    return grouped, copying


def resolved_tensors(cache: KVCache, rows: int) -> tuple[Tensor, Tensor]:
    """Every row's own history, ``(B, H, T, Dh)`` keys and values, after :meth:`resolve`."""
    cache.resolve()
    assert cache.members is None
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


def test_a_beam_reorder_within_the_groups_gathers_only_the_masks() -> None:
    mha, group = make_mha("scaled_dot"), 5
    cache = KVCache()
    generator = torch.Generator().manual_seed(1)
    empty = torch.zeros(2 * group, H, 0, D // H)
    with torch.no_grad():
        for _ in range(3):
            mha(torch.randn(2 * group, 1, D), cache=cache)
        cache.reorder(torch.arange(2 * group), group=group)  # pools of 3 x 5 entries, all live
        members = cache.members
        assert members is not None and members.shape == (2 * group, 3 * group)
        keys, _ = cache.append(empty, empty)
        assert keys.shape == (2, H, 3 * group, D // H)  # (groups, heads, entries, head size)
        cache.reorder(beam_index(generator, 2, group), group=group)
        assert cache.append(empty, empty)[0].data_ptr() == keys.data_ptr()  # nothing copied


def test_dead_entries_are_compacted_away() -> None:
    """When the hypotheses keep descending from one row, the entries of the others die and the
    pools stay near one entry per position (plus the compaction's slack), not one per row."""
    group, steps = 5, 40
    schedule = ["step", "beam"] * steps + ["step"]
    grouped, _ = run_both(make_mha("scaled_dot"), group, schedule, parents=1)
    members = grouped.members
    assert members is not None and grouped.length == steps + 1
    live = steps + group  # one lineage, and the last step's entries
    # Up to a slack of dead entries before a check finds them, and that much growth between
    # checks; without compaction the pools would hold (steps + 1) * group = 205 entries.
    assert members.size(1) < 2 * live


@pytest.mark.parametrize("chunk_cost", [0, 8])
def test_pools_sorted_and_chunked_attend_like_copying_ones(
    chunk_cost: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups whose hypotheses keep one, two, or all of their lineages: compaction sorts the
    pools by live entries and splits them into chunks that start at different entries (cheap
    chunks here, so that a handful of groups is split); outputs and resolved histories match."""
    monkeypatch.setattr(KVCache, "CHUNK_COST", chunk_cost)
    group, groups = 4, 8
    schedule = (["step", "beam"] * 10 + ["step", "drop"]) * 2 + ["step", "beam", "step"]
    grouped, copying = run_both(
        make_mha("scaled_dot"), group, schedule, parents=[1, 4, 2, 1, 4, 1], groups=groups, seed=5
    )
    chunks = grouped.chunks
    assert len(chunks) > 1 and any(chunk.rows is not None for chunk in chunks)  # sorted, split
    assert len({chunk.first for chunk in chunks}) > 1
    rows = (groups - 2) * group
    keys, values = resolved_tensors(grouped, rows)
    ref_keys, ref_values = resolved_tensors(copying, rows)
    assert torch.equal(keys, ref_keys) and torch.equal(values, ref_values)


def test_chunk_plan_minimises_reads_plus_chunk_costs() -> None:
    cache = KVCache()
    assert cache._plan([10, 10, 10, 10]) == ([(0, 4)], 40 + KVCache.CHUNK_COST)
    counts = [2000] * 4 + [100] * 12
    runs, cost = cache._plan(counts)
    assert runs == [(0, 4), (4, 16)] and cost == 4 * 2000 + 12 * 100 + 2 * KVCache.CHUNK_COST
    cache.CHUNK_COST = 10**9
    assert cache._plan(counts)[0] == [(0, 16)]  # a second chunk never pays


def test_pools_keep_time_order_through_compactions() -> None:
    """A row's members read left to right are its history in time order, so a resolved cache
    equals the copying one bit for bit after many compactions and dropped groups."""
    schedule = (["step", "beam"] * 12 + ["step", "drop"]) * 2 + ["step"]
    grouped, copying = run_both(make_mha("scaled_dot"), 4, schedule, parents=2, groups=4)
    keys, values = resolved_tensors(grouped, 8)
    ref_keys, ref_values = resolved_tensors(copying, 8)
    assert torch.equal(keys, ref_keys) and torch.equal(values, ref_values)


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
        assert cache.members is not None
        mha(torch.randn(4, 1, D), cache=cache)
    assert cache.members is None


def test_a_reorder_that_breaks_the_groups_resolves_the_cache() -> None:
    grouped, _ = run_both(
        make_mha("scaled_dot"), 2, ["step", "beam", "step", "beam", "any", "step", "beam", "step"]
    )
    assert grouped.members is not None  # grouped again after the last beam reorder


def test_a_reorder_that_keeps_no_row_empties_a_pooled_cache() -> None:
    mha, cache = make_mha("scaled_dot"), KVCache()
    with torch.no_grad():
        for _ in range(3):
            mha(torch.randn(6, 1, D), cache=cache)
            cache.reorder(beam_index(torch.Generator().manual_seed(0), 2, 3), group=3)
        assert cache.members is not None
        cache.reorder(torch.zeros(0, dtype=torch.long), group=3)
    assert cache.members is None and cache.length == 3
    empty = torch.zeros(0, H, 0, D // H)
    assert cache.append(empty, empty)[0].shape == (0, H, 3, D // H)


def test_resolve_on_an_empty_cache_is_a_no_op() -> None:
    cache = KVCache()
    cache.resolve()
    cache.reorder(torch.tensor([1, 0]), group=2)
    assert cache.length == 0 and cache.members is None


@settings(max_examples=40, deadline=None)
@given(
    group=st.integers(1, 4),
    groups=st.integers(1, 6),
    steps=st.integers(1, 12),
    drop_at=st.integers(0, 12),
    seed=st.integers(0, 2**16),
    parents=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    chunk_cost=st.sampled_from([0, 3, KVCache.CHUNK_COST]),
)
def test_property_grouped_cache_matches_copying(
    group: int, groups: int, steps: int, drop_at: int, seed: int, parents: list[int], chunk_cost: int
) -> None:
    schedule: list[str] = []
    for t in range(steps):
        schedule += ["step", "drop" if t == drop_at else "beam"]
    limits = [min(p, group) for p in parents]
    original = KVCache.CHUNK_COST
    KVCache.CHUNK_COST = chunk_cost  # cheap chunks: small pools get sorted and split too
    try:
        run_both(make_mha("scaled_dot"), group, [*schedule, "step"], seed=seed, groups=groups, parents=limits)
    finally:
        KVCache.CHUNK_COST = original


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pooled_cache_attention_equals_attention_over_each_history(dtype: torch.dtype) -> None:
    """Direct check of the kernel: pools plus membership masks == each row's gathered history
    (any entry order; histories of different lengths; entries nobody holds)."""
    generator = torch.Generator().manual_seed(3)
    groups, group, entries, dim = 3, 4, 11, 8
    rows = groups * group
    query = torch.randn(rows, H, 1, dim, dtype=dtype, generator=generator)
    keys = torch.randn(groups, H, entries, dim, dtype=dtype, generator=generator)
    values = torch.randn(groups, H, entries, dim, dtype=dtype, generator=generator)
    members = torch.rand(rows, entries, generator=generator) < 0.4
    members[:, -1] = False  # an entry nobody holds
    members[torch.arange(rows), torch.arange(rows) % (entries - 1)] = True  # at least one each
    context = pooled_cache_attention(query, keys, values, members, scale=dim**-0.5)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for row in range(rows):
        own = members[row].nonzero()[:, 0]
        own_keys = keys[row // group][:, own].unsqueeze(0)  # (1, H, T_row, Dh)
        own_values = values[row // group][:, own].unsqueeze(0)
        expected, _ = attend(query[row : row + 1], own_keys, own_values, score=ScaledDot(), need_weights=True)
        torch.testing.assert_close(context[row : row + 1], expected, rtol=0, atol=tolerance)


def test_pooled_cache_in_bf16_attends_like_the_copying_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half-precision pools (keys read as ``K qᵀ``, an added ``-inf`` mask in bf16), sorted and
    chunked: the same outputs as copying reorders, to bf16 rounding."""
    monkeypatch.setattr(KVCache, "CHUNK_COST", 0)
    mha = make_mha("scaled_dot").to(torch.bfloat16)
    group, groups = 3, 4
    grouped, copying = KVCache(), KVCache(grouped=False)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _ in range(12):
            x = torch.randn(groups * group, 1, D, generator=generator).to(torch.bfloat16)
            out, _ = mha(x, causal=True, cache=grouped)
            ref, _ = mha(x, causal=True, cache=copying)
            assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
            torch.testing.assert_close(out.float(), ref.float(), rtol=0, atol=0.05)
            index = beam_index(generator, groups, group, parents=[1, 3, 2])
            grouped.reorder(index, group=group)
            copying.reorder(index, group=group)
    assert grouped.members is not None and len(grouped.chunks) > 1
