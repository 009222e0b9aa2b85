"""Multi-head attention: shapes, an independent per-head reference, fused vs explicit, KV cache,
projected memory and batch invariance."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from seqattn.attention import (
    KVCache,
    MultiHeadAttention,
    ProjectedMemory,
    ScaledDot,
    causal_mask,
    key_mask,
    padding_mask,
)
from tests.attention.reference import SCORE_NAMES, make_score, reference_mha

B, D, H = 3, 8, 2
DH = D // H


def make_mha(
    name: str = "scaled_dot", *, d: int = D, heads: int = H, dropout: float = 0.0
) -> MultiHeadAttention:
    mha = MultiHeadAttention(d, heads, score=make_score(name, d // heads), dropout=dropout)
    with torch.no_grad():  # non-zero biases, so the reference must get them right too
        mha.in_proj.bias.normal_()
        mha.out_proj.bias.normal_()
    return mha.eval()


def test_output_and_weight_shapes() -> None:
    mha = make_mha()
    x, memory = torch.randn(B, 4, D), torch.randn(B, 6, D)
    out, weights = mha(x, need_weights=True)
    assert out.shape == (B, 4, D) and weights is not None and weights.shape == (B, H, 4, 4)
    out, weights = mha(x, memory, need_weights=True)
    assert out.shape == (B, 4, D) and weights is not None and weights.shape == (B, H, 4, 6)
    out, weights = mha(x, memory)
    assert out.shape == (B, 4, D) and weights is None


@pytest.mark.parametrize(("d", "heads"), [(8, 3), (6, 4), (8, 0), (0, 2), (-4, 2)])
def test_constructor_rejects_bad_sizes(d: int, heads: int) -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiHeadAttention(d, heads)


def test_default_score_and_no_bias() -> None:
    mha = MultiHeadAttention(D, H, bias=False)
    assert isinstance(mha.score, ScaledDot)
    assert mha.in_proj.bias is None and mha.out_proj.bias is None
    x = torch.randn(2, 3, D, dtype=torch.float64)
    out, weights = mha.double()(x, need_weights=True)
    ref_out, ref_w = reference_mha(mha, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_matches_per_head_reference(name: str, cross: bool, need_weights: bool) -> None:
    mha = make_mha(name).double()
    x = torch.randn(B, 4, D, dtype=torch.float64)
    memory = torch.randn(B, 5, D, dtype=torch.float64) if cross else None
    tk = 5 if cross else 4
    mask = key_mask(padding_mask(torch.tensor([tk, 2, 1]), max_len=tk))
    out, weights = mha(x, memory, mask=mask, causal=True, need_weights=need_weights)
    ref_out, ref_w = reference_mha(mha, x, memory, mask=mask, causal=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    if need_weights:
        torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)


def test_per_head_mask() -> None:
    """A ``(B, H, Tq, Tk)`` mask that differs between heads reaches the right head."""
    mha = make_mha().double()
    x = torch.randn(2, 3, D, dtype=torch.float64)
    mask = torch.rand(2, H, 3, 3) > 0.4
    out, weights = mha(x, mask=mask, need_weights=True)
    ref_out, ref_w = reference_mha(mha, x, mask=mask)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)
    assert (weights[~mask] == 0.0).all()


MHA_MASKS = ("none", "padding", "causal", "causal_mask", "padding+causal")


def _mha_mask(kind: str, tq: int, tk: int) -> tuple[Tensor | None, bool]:
    pad = key_mask(padding_mask(torch.tensor([tk, 1, tk - 1]), max_len=tk)) if "padding" in kind else None
    if kind == "causal_mask":
        return causal_mask(tq, tk), False
    return pad, "causal" in kind


@pytest.mark.parametrize("name", ["scaled_dot", "dot", "general", "additive"])
@pytest.mark.parametrize("kind", MHA_MASKS)
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_fused_equals_explicit(name: str, kind: str, cross: bool) -> None:
    mha = make_mha(name)
    x = torch.randn(B, 5, D)
    memory = torch.randn(B, 7, D) if cross else None
    mask, causal = _mha_mask(kind, 5, 7 if cross else 5)
    fused, _ = mha(x, memory, mask=mask, causal=causal)
    explicit, weights = mha(x, memory, mask=mask, causal=causal, need_weights=True)
    assert weights is not None
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)


# -- incremental decoding --------------------------------------------------------------------


def _full_causal(mha: MultiHeadAttention, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        out, weights = mha(x, causal=True, need_weights=True)
    assert weights is not None
    return out, weights


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_cached_steps_equal_full_causal_attention(name: str) -> None:
    """One position per step over a growing cache (past its initial capacity) == full causal."""
    steps = 21
    mha = make_mha(name)
    x = torch.randn(2, steps, D)
    full, full_w = _full_causal(mha, x)
    cache = KVCache()
    outs = []
    with torch.no_grad():
        for t in range(steps):
            out, weights = mha(x[:, t : t + 1], causal=True, cache=cache, need_weights=True)
            assert cache.length == t + 1
            assert weights is not None and weights.shape == (2, H, 1, t + 1)
            torch.testing.assert_close(weights[:, :, 0], full_w[:, :, t, : t + 1], rtol=0, atol=1e-5)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_cached_steps_on_fused_path(name: str) -> None:
    mha = make_mha(name)
    x = torch.randn(2, 18, D)
    full, _ = _full_causal(mha, x)
    cache = KVCache()
    with torch.no_grad():
        outs = [mha(x[:, t : t + 1], cache=cache)[0] for t in range(18)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("chunks", [[2, 3, 2, 3, 2, 3, 2, 3], [3, 1, 2, 17], [20]])
@pytest.mark.parametrize("need_weights", [False, True])
def test_cached_chunks_equal_full_causal_attention(name: str, chunks: list[int], need_weights: bool) -> None:
    steps = sum(chunks)
    mha = make_mha(name)
    x = torch.randn(2, steps, D)
    full, full_w = _full_causal(mha, x)
    cache = KVCache()
    outs, start = [], 0
    with torch.no_grad():
        for size in chunks:
            out, weights = mha(
                x[:, start : start + size], causal=True, cache=cache, need_weights=need_weights
            )
            if need_weights:
                assert weights is not None
                torch.testing.assert_close(
                    weights, full_w[:, :, start : start + size, : start + size], rtol=0, atol=1e-5
                )
            outs.append(out)
            start += size
    assert cache.length == steps
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["scaled_dot", "additive", "location"])
def test_cache_reorder_keeps_the_right_rows(name: str) -> None:
    """Decode, reorder the cache (with repeats and drops), continue == reordered batch from scratch."""
    mha = make_mha(name)
    steps, split = 19, 7
    x = torch.randn(4, steps, D)
    index = torch.tensor([2, 0, 2, 3])
    x_new = x[index]
    full, _ = _full_causal(mha, x_new)
    cache = KVCache()
    with torch.no_grad():
        for t in range(split):
            mha(x[:, t : t + 1], cache=cache, causal=True)
        cache.reorder(index)
        outs = [mha(x_new[:, t : t + 1], cache=cache, causal=True)[0] for t in range(split, steps)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full[:, split:], rtol=0, atol=1e-5)


def test_cache_reorder_before_any_step_is_a_no_op() -> None:
    cache = KVCache()
    cache.reorder(torch.tensor([0, 0]))
    assert cache.length == 0


def test_cache_append_returns_everything_so_far() -> None:
    cache = KVCache()
    chunks = [torch.randn(2, H, n, DH) for n in (3, 14, 1, 20)]
    values = [c + 1 for c in chunks]
    for i, (k, v) in enumerate(zip(chunks, values, strict=True)):
        all_k, all_v = cache.append(k, v)
        torch.testing.assert_close(all_k, torch.cat(chunks[: i + 1], dim=2), rtol=0, atol=0)
        torch.testing.assert_close(all_v, torch.cat(values[: i + 1], dim=2), rtol=0, atol=0)
    assert cache.length == 38


def test_cache_is_self_attention_only() -> None:
    mha = make_mha()
    with pytest.raises(ValueError, match="self-attention only"):
        mha(torch.randn(1, 1, D), torch.randn(1, 3, D), cache=KVCache())


# -- cross-attention memory ------------------------------------------------------------------


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_projected_memory_equals_raw_memory(name: str, need_weights: bool) -> None:
    mha = make_mha(name)
    memory = torch.randn(B, 6, D)
    mask = key_mask(padding_mask(torch.tensor([6, 3, 1])))
    projected = mha.project_memory(memory)
    assert isinstance(projected, ProjectedMemory)
    assert projected.keys.score is mha.score
    assert projected.values.shape == (B, H, 6, DH)
    for _ in range(3):  # several decoder steps reuse the one projection
        x = torch.randn(B, 1, D)
        got, got_w = mha(x, projected, mask=mask, need_weights=need_weights)
        want, want_w = mha(x, memory, mask=mask, need_weights=need_weights)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        if need_weights:
            torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["scaled_dot", "general", "concat"])
def test_projected_memory_index_select(name: str) -> None:
    mha = make_mha(name)
    memory = torch.randn(B, 5, D)
    index = torch.tensor([1, 1, 0, 2])
    selected = mha.project_memory(memory).index_select(0, index)
    fresh = mha.project_memory(memory[index])
    torch.testing.assert_close(selected.keys.tensor, fresh.keys.tensor, rtol=0, atol=0)
    torch.testing.assert_close(selected.values, fresh.values, rtol=0, atol=0)
    x = torch.randn(4, 2, D)
    got, _ = mha(x, selected, need_weights=True)
    want, _ = mha(x, memory[index], need_weights=True)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_projected_memory_refused_by_another_module() -> None:
    a, b = make_mha("general"), make_mha("general")
    with pytest.raises(ValueError, match="different score"):
        b(torch.randn(1, 2, D), a.project_memory(torch.randn(1, 3, D)))


# -- batches, dropout, gradients -------------------------------------------------------------


@pytest.mark.parametrize("name", ["scaled_dot", "additive"])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_batch_invariance_self_attention(name: str, need_weights: bool, causal: bool) -> None:
    """Padded batch == each example alone, at the real positions."""
    mha = make_mha(name)
    lengths = [5, 2, 1, 4]
    xs = [torch.randn(1, n, D) for n in lengths]
    batch = torch.zeros(len(lengths), max(lengths), D)
    for i, x in enumerate(xs):
        batch[i, : x.size(1)] = x[0]
    batch[1, 2:] = 50.0  # loud padding must not leak into real positions
    mask = key_mask(padding_mask(torch.tensor(lengths)))
    out, _ = mha(batch, mask=mask, causal=causal, need_weights=need_weights)
    for i, x in enumerate(xs):
        alone, _ = mha(x, causal=causal, need_weights=need_weights)
        torch.testing.assert_close(out[i : i + 1, : lengths[i]], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["scaled_dot", "concat"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_batch_invariance_cross_attention(name: str, need_weights: bool) -> None:
    mha = make_mha(name)
    src_lengths, tgt_lengths = [3, 6, 1], [2, 4, 3]
    memories = [torch.randn(1, n, D) for n in src_lengths]
    xs = [torch.randn(1, n, D) for n in tgt_lengths]
    memory = torch.randn(3, max(src_lengths), D) * 10  # padding content is arbitrary
    x = torch.randn(3, max(tgt_lengths), D)
    for i in range(3):
        memory[i, : src_lengths[i]] = memories[i][0]
        x[i, : tgt_lengths[i]] = xs[i][0]
    mask = key_mask(padding_mask(torch.tensor(src_lengths)))
    out, _ = mha(x, memory, mask=mask, need_weights=need_weights)
    for i in range(3):
        alone, _ = mha(xs[i], memories[i], need_weights=need_weights)
        torch.testing.assert_close(out[i : i + 1, : tgt_lengths[i]], alone, rtol=0, atol=1e-5)


def test_dropout_only_in_training() -> None:
    mha = make_mha("scaled_dot", dropout=0.5)
    x = torch.randn(2, 6, D)
    first, _ = mha(x)
    second, _ = mha(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    mha.train()
    dropped, _ = mha(x)
    assert not torch.allclose(first, dropped)


@pytest.mark.parametrize("need_weights", [False, True])
def test_gradients_reach_all_parameters(need_weights: bool) -> None:
    mha = make_mha("additive").train()
    x = torch.randn(2, 4, D, requires_grad=True)
    mask = key_mask(padding_mask(torch.tensor([4, 0])))  # second example is all padding
    out, _ = mha(x, mask=mask, causal=True, need_weights=need_weights)
    out.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in mha.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cache_reordered_every_step_like_beam_search() -> None:
    """Reorder after every step, with repeats and a shrinking batch: each row's outputs equal
    full causal attention over the input row it has followed; the cache is packed after each
    append that follows a reorder, and steady-state steps reuse the same memory."""
    mha = make_mha()
    generator = torch.Generator().manual_seed(3)
    steps, rows = 15, 6
    x = torch.randn(rows, steps, D, generator=generator)
    followed = torch.arange(rows)  # (R,) the input row each cache row has followed
    cache = KVCache()
    pointers: set[int] = set()
    with torch.no_grad():
        for t in range(steps):
            out, _ = mha(x[followed, t : t + 1], cache=cache, causal=True)
            full, _ = _full_causal(mha, x[followed, : t + 1])
            torch.testing.assert_close(out, full[:, -1:], rtol=0, atol=1e-5)
            keys = cache._keys
            assert keys is not None and cache.length == t + 1
            if t > 0:
                assert keys.size(2) == cache.length and keys.is_contiguous()
            if t >= 4:
                pointers.add(keys.data_ptr())
            keep = max(2, rows - t // 3)  # the batch shrinks as sentences finish
            index = torch.randint(0, followed.numel(), (keep,), generator=generator)
            cache.reorder(index)
            followed = followed[index]
    assert len(pointers) <= 3  # two arenas alternate (a third at most when one grows)
