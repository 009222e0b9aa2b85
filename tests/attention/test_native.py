"""The compiled few-query attention kernel (:mod:`seqattn.attention.native`).

It must give what the eager path gives (float32, to 1e-5) for every form the decoders call it
with: several queries per (row, head) over keys with and without key padding, per-query masks
(beam search's pooled caches), rows without any key, strided views, the 3-d form without heads,
every head size it is built for, one and two threads. Where a compiler is present it must build
(a broken build would otherwise fall back silently and only the benchmarks would notice).
"""

from __future__ import annotations

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn import native as loader
from seqattn.attention import KVCache, MultiHeadAttention, ScaledDot, attend, native, pooled_cache_attention
from seqattn.attention.core import PoolChunk

HAS_TOOLS = shutil.which("c++") is not None and shutil.which("ninja") is not None
needs_kernel = pytest.mark.skipif(
    not HAS_TOOLS, reason="no C++ compiler or ninja: the kernel cannot be built"
)


def reference(query, keys, values, mask, scale):
    """float64 softmax attention; rows without any allowed key give zeros."""
    scores = (query.double() @ keys.double().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (weights @ values.double()).float()


@needs_kernel
def test_kernel_builds_where_a_compiler_is_present() -> None:
    assert native.enabled(), native.native_status()
    assert native.native_status() == "on"


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    heads=st.integers(1, 3),
    queries=st.integers(1, native.MAX_QUERIES),
    keys_count=st.integers(1, 70),
    dim=st.sampled_from([16, 32, 64, 128, 256]),
    mask_kind=st.sampled_from(["none", "keys", "queries", "full"]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference(rows, heads, queries, keys_count, dim, mask_kind, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, heads, queries, dim, generator=generator)
    keys = torch.randn(rows, heads, keys_count, dim, generator=generator)
    values = torch.randn(rows, heads, keys_count, dim, generator=generator)
    shape = {
        "none": None,
        "keys": (rows, 1, 1, keys_count),
        "queries": (rows, 1, queries, keys_count),
        "full": (rows, heads, queries, keys_count),
    }[mask_kind]
    mask = None if shape is None else torch.rand(*shape, generator=generator) < 0.7
    scale = dim**-0.5
    context = native.few_query_attention(query, keys, values, mask, scale=scale)
    assert context.shape == (rows, heads, queries, dim)
    full_mask = None if mask is None else mask.expand(rows, heads, queries, keys_count)
    torch.testing.assert_close(
        context, reference(query, keys, values, full_mask, scale), rtol=1e-5, atol=1e-5
    )


@needs_kernel
@settings(max_examples=30, deadline=None)
@given(
    queries=st.integers(1, native.MAX_QUERIES),
    keys_count=st.integers(1, 90),
    dim=st.sampled_from([16, 64, 128]),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_bf16_operands_give_the_reference_to_bf16_rounding(queries, keys_count, dim, masked, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(3, 2, queries, dim, generator=generator).bfloat16()
    keys = torch.randn(3, 2, keys_count, dim, generator=generator).bfloat16()
    values = torch.randn(3, 2, keys_count, dim, generator=generator).bfloat16()
    mask = torch.rand(3, 1, queries, keys_count, generator=generator) < 0.7 if masked else None
    context = native.few_query_attention(query, keys, values, mask, scale=dim**-0.5)
    assert context.dtype == torch.bfloat16
    full_mask = None if mask is None else mask.expand(3, 2, queries, keys_count)
    expected = reference(query, keys, values, full_mask, dim**-0.5)  # float64 of the same bf16 inputs
    # float32 arithmetic, one rounding of the context to bf16 (8 bits: relative 2^-9)
    torch.testing.assert_close(context.float(), expected, rtol=2**-8, atol=1e-3)


@needs_kernel
def test_rows_without_keys_give_zeros_and_layout_merges_heads_as_a_view() -> None:
    query, keys, values = torch.randn(3, 2, 4, 16), torch.randn(3, 2, 40, 16), torch.randn(3, 2, 40, 16)
    mask = torch.ones(3, 1, 4, 40, dtype=torch.bool)
    mask[1] = False  # every query of row 1
    mask[2, :, 3] = False  # one query of row 2
    context = native.few_query_attention(query, keys, values, mask, scale=0.25)
    assert torch.equal(context[1], torch.zeros(2, 4, 16))
    assert torch.equal(context[2, :, 3], torch.zeros(2, 16))
    assert context[0].abs().sum() > 0
    merged = context.transpose(1, 2)
    assert merged.is_contiguous()  # (M, G, H, Dh) in memory: merging the heads is a view
    assert merged.reshape(3, 4, 32).data_ptr() == context.data_ptr()


@needs_kernel
def test_strided_operands_and_the_three_dimensional_form() -> None:
    base = torch.randn(4, 6, 3, 32)  # (M, G, H, Dh) as a decoder lays queries out
    query = base.transpose(1, 2)  # (M, H, G, Dh), not contiguous
    pool = torch.randn(4, 3, 50, 32)
    keys, values = pool[:, :, 7:], torch.randn(4, 3, 50, 32)[:, :, 7:]  # slices of a larger pool
    mask = torch.rand(4, 1, 6, 43) < 0.8
    context = native.few_query_attention(query, keys, values, mask, scale=0.3)
    expected = reference(query, keys, values, mask.expand(4, 3, 6, 43), 0.3)
    torch.testing.assert_close(context, expected, rtol=1e-5, atol=1e-5)

    flat_q, flat_k, flat_v = torch.randn(5, 2, 64), torch.randn(5, 30, 64), torch.randn(5, 30, 64)
    flat_mask = torch.rand(5, 1, 30) < 0.7
    flat = native.few_query_attention(flat_q, flat_k, flat_v, flat_mask, scale=1.0)
    assert flat.shape == (5, 2, 64)
    torch.testing.assert_close(flat, reference(flat_q, flat_k, flat_v, flat_mask, 1.0), rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_the_result(threads: int) -> None:
    query, keys, values = torch.randn(16, 4, 5, 64), torch.randn(16, 4, 90, 64), torch.randn(16, 4, 90, 64)
    mask = torch.rand(16, 1, 1, 90) < 0.9
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        context = native.few_query_attention(query, keys, values, mask, scale=0.125)
    finally:
        torch.set_num_threads(before)
    expected = reference(query, keys, values, mask.expand(16, 4, 5, 90), 0.125)
    torch.testing.assert_close(context, expected, rtol=1e-5, atol=1e-5)


def test_applies_only_where_the_kernel_is_exact() -> None:
    query, keys, values = torch.randn(2, 2, 3, 16), torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    expected = HAS_TOOLS
    assert native.applies(query, keys, values) == expected
    assert not native.applies(query.double(), keys.double(), values.double())
    assert native.applies(query.bfloat16(), keys.bfloat16(), values.bfloat16()) == expected
    assert not native.applies(query.bfloat16(), keys, values)  # mixed types
    assert not native.applies(torch.randn(2, 2, 3, 12), torch.randn(2, 2, 9, 12), torch.randn(2, 2, 9, 12))
    assert not native.applies(torch.randn(2, 2, 17, 16), keys, values)  # a training block
    assert not native.applies(query, keys[:1], values[:1])  # leading sizes differ
    assert not native.applies(query.transpose(-1, -2).contiguous().transpose(-1, -2), keys, values)
    with torch.enable_grad():
        assert not native.applies(query.requires_grad_(), keys, values)
    with native.use_native(False):
        assert not native.applies(query.detach(), keys, values)


@needs_kernel
@pytest.mark.parametrize("causal", [False, True])
def test_attend_gives_the_same_with_and_without_the_kernel(causal: bool) -> None:
    score = ScaledDot()
    query, keys, values = torch.randn(6, 4, 5, 16), torch.randn(6, 4, 5 if causal else 23, 16), None
    values = torch.randn_like(keys)
    mask = None if causal else torch.rand(6, 1, 1, 23) < 0.8
    with torch.no_grad():
        fast, _ = attend(query, keys, values, score=score, mask=mask, causal=causal)
        with native.use_native(False):
            eager, _ = attend(query, keys, values, score=score, mask=mask, causal=causal)
        explicit, weights = attend(
            query, keys, values, score=score, mask=mask, causal=causal, need_weights=True
        )
    assert weights is not None
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_pooled_cache_attention_with_and_without_the_kernel() -> None:
    groups, group, heads, pool, dim = 4, 3, 2, 30, 16
    query = torch.randn(groups * group, heads, 1, dim)
    keys, values = torch.randn(groups, heads, pool, dim), torch.randn(groups, heads, pool, dim)
    members = torch.rand(groups * group, pool) < 0.5
    members[:, -1] = True  # every row has its newest position
    chunks = [PoolChunk(0, 2, 5), PoolChunk(2, 4, 0, torch.tensor([9, 10, 11, 6, 7, 8]))]
    members[:6, :5] = False
    for plan in (None, chunks):
        fast = pooled_cache_attention(query, keys, values, members, scale=0.25, chunks=plan)
        with native.use_native(False):
            eager = pooled_cache_attention(query, keys, values, members, scale=0.25, chunks=plan)
        torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_decoding_steps_through_a_grouped_cache_match_the_eager_path() -> None:
    mha = MultiHeadAttention(32, 2).eval()  # head size 16: the kernel's smallest
    memory = torch.randn(3, 11, 32)
    outputs = {}
    for on in (False, True):
        torch.manual_seed(1)
        cache = KVCache(grouped=True)
        projected = mha.project_memory(memory)
        steps = []
        with torch.no_grad(), native.use_native(on):
            for _ in range(6):
                x = torch.randn(6, 1, 32)  # three sentences, two hypotheses each
                own, _ = mha(x, cache=cache, causal=True)
                cross, _ = mha(x.view(3, 2, 32), projected)
                steps.append(torch.cat([own.flatten(), cross.flatten()]))
                cache.reorder(torch.tensor([1, 1, 2, 3, 5, 4]), group=2)
        outputs[on] = torch.stack(steps)
    torch.testing.assert_close(outputs[True], outputs[False], rtol=1e-5, atol=1e-5)


def test_without_a_compiler_the_eager_path_runs_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_module", None)
    monkeypatch.setattr(loader, "_reason", None)
    monkeypatch.setattr(loader, "_switch", True)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(loader.shutil, "which", lambda tool: None)
    assert not native.enabled()
    assert native.native_status() == "off (no c++ or ninja on PATH)"
    query, keys, values = torch.randn(2, 2, 3, 16), torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    assert not native.applies(query, keys, values)
    with torch.no_grad():
        context, _ = attend(query, keys, values, score=ScaledDot())
    torch.testing.assert_close(context, reference(query, keys, values, None, 0.25), rtol=1e-5, atol=1e-5)


def test_a_failed_build_falls_back_with_its_last_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(loader, "_module", None)
    monkeypatch.setattr(loader, "_reason", None)
    monkeypatch.setattr(loader, "_switch", True)
    monkeypatch.setattr(loader.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def broken() -> None:
        raise RuntimeError("Error building extension\nfew_query.cpp:1: error: something")

    monkeypatch.setattr(loader, "_build", broken)
    assert native.native_status() == "off (build failed: few_query.cpp:1: error: something)"
    note = capsys.readouterr().err.strip().splitlines()
    assert note == [
        "seqattn: CPU kernels not built (build failed: few_query.cpp:1: error: something); "
        "using the eager paths"
    ]


def test_the_switch_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_switch", False)
    assert native.native_status() == "off (SEQATTN_NATIVE=0)"
    assert not native.enabled()


@needs_kernel
@pytest.mark.parametrize("beam", [1, 4])
def test_transformer_decodes_the_same_with_and_without_the_kernel(beam: int, monkeypatch) -> None:
    from seqattn.decoding import beam_search, greedy_search
    from seqattn.models.transformer import TransformerSeq2Seq

    model = TransformerSeq2Seq(
        40, 40, d_model=64, num_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=2
    )
    model.eval()
    src = torch.randint(4, 40, (6, 19))
    lengths = torch.tensor([19, 17, 12, 19, 5, 9])
    calls = []
    original = native.few_query_attention
    monkeypatch.setattr(native, "few_query_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    results = {}
    for on in (False, True):
        with torch.no_grad(), native.use_native(on):
            if beam == 1:
                hyps = greedy_search(model, src, lengths, max_len_a=0.0, max_len_b=25)
            else:
                hyps = beam_search(
                    model, src, lengths, beam_size=beam, n_best=beam, max_len_a=0.0, max_len_b=25
                )
        results[on] = [[(h.tokens, round(float(h.score), 4)) for h in sentence] for sentence in hyps]
    assert calls  # the kernel ran in the second decode
    assert results[True] == results[False]


@needs_kernel
def test_strided_masks_long_sources_and_the_largest_blocks() -> None:
    # a mask whose key dimension is not contiguous (the kernel's strided branch)
    query, keys, values = torch.randn(2, 2, 7, 32), torch.randn(2, 2, 45, 32), torch.randn(2, 2, 45, 32)
    mask = (torch.rand(2, 1, 45, 7) < 0.6).transpose(-1, -2)
    assert mask.stride(-1) != 1
    context = native.few_query_attention(query, keys, values, mask, scale=0.2)
    expected = reference(query, keys, values, mask.expand(2, 2, 7, 45), 0.2)
    torch.testing.assert_close(context, expected, rtol=1e-5, atol=1e-5)
    # 16 queries of the largest head size over a long source (tails of 16-key blocks included)
    query, keys, values = (
        torch.randn(1, 1, 16, 256),
        torch.randn(1, 1, 1037, 256),
        torch.randn(1, 1, 1037, 256),
    )
    context = native.few_query_attention(query, keys, values, None, scale=256**-0.5)
    torch.testing.assert_close(context, reference(query, keys, values, None, 256**-0.5), rtol=1e-5, atol=1e-5)
