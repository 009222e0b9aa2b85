"""``attend``: naive reference, fused vs explicit path, masking, empty rows and gradients."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from seqattn.attention import Additive, ScaledDot, attend, causal_mask, core, key_mask, padding_mask
from tests.attention.reference import DOT_LIKE, SCORE_NAMES, make_score, naive_attention

B, H, D = 2, 2, 8

# Mask kinds: how a test builds the mask/causal arguments for (Tq, Tk) with key lengths per row.
MASK_KINDS = ("none", "padding", "causal", "causal_mask", "padding+causal", "padding+causal_mask")


def make_mask(kind: str, tq: int, tk: int, lengths: list[int]) -> tuple[Tensor | None, bool]:
    """``(mask, causal)`` for ``attend`` over ``(B, H, Tq, Tk)`` scores."""
    pad = key_mask(padding_mask(torch.tensor(lengths), max_len=tk)) if "padding" in kind else None
    causal = kind.endswith("+causal") or kind == "causal"
    explicit = causal_mask(tq, tk) if kind.endswith("causal_mask") else None
    if pad is None:
        return explicit, causal
    return (pad if explicit is None else pad & explicit), causal


def inputs(tq: int, tk: int, dtype: torch.dtype = torch.float32, *, grad: bool = False) -> tuple[Tensor, ...]:
    q = torch.randn(B, H, tq, D, dtype=dtype, requires_grad=grad)
    k = torch.randn(B, H, tk, D, dtype=dtype, requires_grad=grad)
    v = torch.randn(B, H, tk, D, dtype=dtype, requires_grad=grad)
    return q, k, v


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("need_weights", [False, True])
def test_attend_matches_naive_reference(name: str, kind: str, need_weights: bool) -> None:
    score = make_score(name, D).double()
    q, k, v = inputs(3, 5, torch.float64)
    mask, causal = make_mask(kind, 3, 5, [5, 2])
    ctx, weights = attend(q, k, v, score=score, mask=mask, causal=causal, need_weights=need_weights)
    ref_ctx, ref_w = naive_attention(score, q, k, v, mask=mask, causal=causal)
    torch.testing.assert_close(ctx, ref_ctx, rtol=1e-10, atol=1e-10)
    if need_weights:
        assert weights is not None
        torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)
    else:
        assert weights is None


@pytest.mark.parametrize("name", DOT_LIKE)
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize(("tq", "tk"), [(5, 5), (3, 6), (6, 4)], ids=["self", "cross-short", "cross-long"])
def test_fused_equals_explicit(name: str, kind: str, tq: int, tk: int) -> None:
    score = make_score(name, D)
    q, k, v = inputs(tq, tk)
    if tq == tk:
        k = v = q  # self-attention: keys and values are the queries themselves
    mask, causal = make_mask(kind, tq, tk, [tk, 2])
    fused, none = attend(q, k, v, score=score, mask=mask, causal=causal)
    explicit, weights = attend(q, k, v, score=score, mask=mask, causal=causal, need_weights=True)
    assert none is None and weights is not None
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)


class _SdpaSpy:
    def __init__(self, fn: Callable[..., Tensor]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: object, **kwargs: object) -> Tensor:
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_fused_kernel_used_only_for_dot_scores_without_weights(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused-vs-explicit comparisons compare two different code paths."""
    spy = _SdpaSpy(core.F.scaled_dot_product_attention)
    monkeypatch.setattr(core.F, "scaled_dot_product_attention", spy)
    score = make_score(name, D)
    q, k, v = inputs(3, 4)
    attend(q, k, v, score=score, need_weights=True)
    assert spy.calls == 0
    attend(q, k, v, score=score)
    assert spy.calls == (1 if name in DOT_LIKE else 0)


@pytest.mark.parametrize("tq", [1, 4])
def test_bf16_on_cpu_takes_the_explicit_path_with_the_same_result(
    tq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU bf16 skips the fused kernel (slower there) and agrees with fp32 to bf16 precision."""
    spy = _SdpaSpy(core.F.scaled_dot_product_attention)
    monkeypatch.setattr(core.F, "scaled_dot_product_attention", spy)
    score = ScaledDot()
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, tq, D, generator=generator)
    k, v = torch.randn(3, 2, 9, D, generator=generator), torch.randn(3, 2, 9, D, generator=generator)
    mask = key_mask(padding_mask(torch.tensor([9, 4, 1]), max_len=9))
    expected, _ = attend(q, k, v, score=score, mask=mask)
    assert spy.calls == 1
    got, _ = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), score=score, mask=mask)
    assert spy.calls == 1 and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=3e-2)


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_offset_equals_explicit_causal_mask(name: str, need_weights: bool) -> None:
    """``causal=True`` with ``Tq < Tk``: the queries are the last ``Tq`` positions."""
    score = make_score(name, D)
    q, k, v = inputs(6, 6)
    full, full_w = attend(q, k, v, score=score, causal=True, need_weights=True)
    last = q[:, :, -2:]
    got, got_w = attend(last, k, v, score=score, causal=True, need_weights=need_weights)
    want, want_w = attend(last, k, v, score=score, mask=causal_mask(2, 6), need_weights=need_weights)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, full[:, :, -2:], rtol=0, atol=1e-5)
    if need_weights:
        assert got_w is not None and want_w is not None and full_w is not None
        torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-6)
        torch.testing.assert_close(got_w, full_w[:, :, -2:], rtol=0, atol=1e-5)


def test_causal_with_more_queries_than_keys_leaves_early_rows_empty() -> None:
    q, k, v = inputs(5, 3)
    for need_weights in (False, True):
        ctx, _ = attend(q, k, v, score=ScaledDot(), causal=True, need_weights=need_weights)
        assert torch.equal(ctx[:, :, :2], torch.zeros_like(ctx[:, :, :2]))
        assert ctx[:, :, 2:].abs().sum() > 0


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("kind", ["padding", "padding+causal", "padding+causal_mask"])
def test_masked_keys_get_exactly_zero_weight(name: str, kind: str) -> None:
    score = make_score(name, D)
    q, k, v = inputs(4, 5)
    mask, causal = make_mask(kind, 4, 5, [3, 1])
    _, weights = attend(q, k, v, score=score, mask=mask, causal=causal, need_weights=True)
    assert weights is not None
    allowed = mask.expand_as(weights)
    if causal:
        allowed = allowed & causal_mask(4, 5)
    assert (weights[~allowed] == 0.0).all()
    assert (weights[allowed] > 0.0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, 4))


def _fully_masked_case(grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch row 1 has no key at all; in row 0, query 0 sees nothing either (per-query mask)."""
    q, k, v = inputs(3, 4, grad=grad)
    mask = torch.ones(B, 1, 3, 4, dtype=torch.bool)
    mask[1] = False
    mask[0, :, 0] = False
    mask[0, :, 1, 2:] = False
    return q, k, v, mask


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_and_finite_gradients(name: str, need_weights: bool) -> None:
    score = make_score(name, D)
    q, k, v, mask = _fully_masked_case(grad=True)
    ctx, weights = attend(q, k, v, score=score, mask=mask, need_weights=need_weights)
    empty = ~mask.any(-1)  # (B, 1, Tq)
    empty_rows = empty.expand(B, H, 3)
    assert torch.isfinite(ctx).all()
    assert (ctx[empty_rows] == 0.0).all()
    assert (ctx[~empty_rows] != 0.0).all()
    if need_weights:
        assert weights is not None
        assert torch.isfinite(weights).all()
        assert (weights[empty_rows] == 0.0).all()
        torch.testing.assert_close(weights[~empty_rows].sum(-1), torch.ones(int((~empty_rows).sum())))
    (ctx * torch.randn_like(ctx)).sum().backward()
    if name == "location":
        assert k.grad is None  # the location score never reads the keys
        k.grad = torch.zeros_like(k)
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    # Nothing flows back into an empty row's query or into the keys/values of a fully masked batch row.
    assert (q.grad[empty_rows] == 0.0).all()
    assert (k.grad[1] == 0.0).all() and (v.grad[1] == 0.0).all()
    assert (v.grad[0] != 0.0).any()


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_inference_masks_by_addition_with_the_training_path_results(name: str, need_weights: bool) -> None:
    """Without autograd the explicit path adds the mask instead of filling with it: the same
    context and weights (exact zeros for masked keys and for rows without any key)."""
    score = make_score(name, D)
    q, k, v, mask = _fully_masked_case(grad=True)
    trained, trained_weights = attend(q, k, v, score=score, mask=mask, need_weights=True)
    with torch.no_grad():
        ctx, weights = attend(q, k, v, score=score, mask=mask, need_weights=need_weights)
    torch.testing.assert_close(ctx, trained.detach(), rtol=0, atol=1e-6)
    empty_rows = (~mask.any(-1)).expand(B, H, 3)
    assert (ctx[empty_rows] == 0.0).all() and torch.isfinite(ctx).all()
    if need_weights:
        assert weights is not None and trained_weights is not None
        assert torch.equal(weights == 0.0, trained_weights == 0.0)  # zero exactly where masked
        torch.testing.assert_close(weights, trained_weights.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("fill", [float("nan"), 0.5], ids=["nan", "average"])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_path_pins_empty_rows_whatever_the_kernel_returns(
    fill: float, causal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some kernels return NaN or an average for rows without keys; ``attend`` still returns zeros."""
    real = core.F.scaled_dot_product_attention

    def kernel(
        query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None, **kw: object
    ) -> Tensor:
        out = real(query, key, value, attn_mask=attn_mask, **kw)
        return out if attn_mask is None else out.masked_fill(~attn_mask.any(-1, keepdim=True), fill)

    spy = _SdpaSpy(kernel)
    monkeypatch.setattr(core.F, "scaled_dot_product_attention", spy)
    q, k, v, mask = _fully_masked_case(grad=True)
    ctx, _ = attend(q, k, v, score=ScaledDot(), mask=mask, causal=causal)
    assert spy.calls == 1
    allowed = mask & causal_mask(3, 4) if causal else mask
    empty_rows = (~allowed.any(-1)).expand(B, H, 3)
    assert torch.isfinite(ctx).all()
    assert (ctx[empty_rows] == 0.0).all()
    ctx.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_attend_rejects_non_boolean_mask() -> None:
    q, k, v = inputs(2, 3)
    with pytest.raises(TypeError, match="boolean"):
        attend(q, k, v, score=ScaledDot(), mask=torch.ones(2, 3))


@pytest.mark.parametrize("score_cls", [ScaledDot, Additive])
@pytest.mark.parametrize("causal", [False, True])
def test_attend_explicit_path_gradcheck(score_cls: type, causal: bool) -> None:
    score = (score_cls(3) if score_cls is Additive else score_cls()).double()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])[:, None, :]  # (B, 1, Tk)

    def fn(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        ctx, weights = attend(q, k, v, score=score, mask=mask, causal=causal, need_weights=True)
        assert weights is not None
        return ctx, weights

    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_attend_single_leading_dim_and_broadcast_mask() -> None:
    """Single-head ``(B, Tq, D)`` inputs with a ``(B, 1, Tk)`` mask match the naive reference."""
    score = ScaledDot()
    q = torch.randn(2, 3, D, dtype=torch.float64)
    k = torch.randn(2, 4, D, dtype=torch.float64)
    v = torch.randn(2, 4, 5, dtype=torch.float64)
    mask = key_mask(padding_mask(torch.tensor([4, 2])), heads=False)
    ref_ctx, ref_w = naive_attention(score, q, k, v, mask=mask)
    for need_weights in (False, True):
        ctx, weights = attend(q, k, v, score=score, mask=mask, need_weights=need_weights)
        assert ctx.shape == (2, 3, 5)
        torch.testing.assert_close(ctx, ref_ctx, rtol=1e-10, atol=1e-10)
        if need_weights:
            torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)


def test_dropout_applies_to_context_but_returned_weights_are_pre_dropout() -> None:
    score = Additive(D)
    q, k, v = inputs(4, 5)
    plain, plain_w = attend(q, k, v, score=score, need_weights=True)
    dropped, dropped_w = attend(q, k, v, score=score, need_weights=True, dropout=0.5)
    assert plain_w is not None and dropped_w is not None
    torch.testing.assert_close(dropped_w, plain_w, rtol=0, atol=0)
    assert not torch.allclose(plain, dropped)


def test_dropout_on_cpu_takes_the_explicit_path_with_the_bit_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU, SDPA has no fused kernel with dropout (its math fallback uses bernoulli_): the
    explicit path runs instead, with :func:`seqattn.dropout.dropout` on the weights."""
    from seqattn.dropout import dropout as bit_dropout

    score = ScaledDot()
    q, k, v = (torch.randn(2, 4, 3, D) for _ in range(3))
    mask = key_mask(padding_mask(torch.tensor([3, 1]), max_len=3))  # (2, 1, 1, 3)

    def no_sdpa(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fused kernel ran with dropout on CPU")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    torch.manual_seed(7)
    context, _ = attend(q, k, v, score=score, mask=mask, dropout=0.25)
    torch.manual_seed(7)
    scores = (q @ k.transpose(-1, -2) / D**0.5).masked_fill(~mask, float("-inf"))
    expected = bit_dropout(torch.softmax(scores, dim=-1), 0.25) @ v
    torch.testing.assert_close(context, expected)


@pytest.mark.parametrize(
    ("rows", "queries", "keys", "grad", "fused"),
    [
        (31, 1, 7, False, True),  # too few rows
        (32, 1, 7, False, False),
        (32, 1, 300, False, False),  # one query: whatever the number of keys
        (7, 4, 7, False, True),  # a small block, but too few rows (7 x 4 heads x 4 queries)
        (8, 4, 7, False, False),  # small blocks over enough rows
        (64, 4, 512, False, False),  # 2,048 scores per head
        (64, 4, 513, False, True),  # 2,052
        (64, 16, 32, False, False),
        (64, 17, 7, False, True),  # too many queries
        (64, 4, 7, True, True),  # training keeps the kernel
    ],
)
def test_cpu_decoding_steps_over_many_rows_take_the_explicit_path(
    rows: int, queries: int, keys: int, grad: bool, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One query per row, or a small inference block of queries (beam search's
    cross-attention), over at least EXPLICIT_DECODING_ROWS query rows (batch x heads x queries)
    runs the explicit path in fp32 on CPU (faster there); larger blocks and blocks that need
    gradients keep the kernel. Both give the same context."""
    spy = _SdpaSpy(core.F.scaled_dot_product_attention)
    monkeypatch.setattr(core.F, "scaled_dot_product_attention", spy)
    heads = 4
    assert 32 * heads == core.EXPLICIT_DECODING_ROWS
    assert (core.EXPLICIT_BLOCK_QUERIES, core.EXPLICIT_BLOCK_SCORES) == (16, 2048)
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(rows, heads, queries, D, generator=generator).requires_grad_(grad)
    k, v = (torch.randn(rows, heads, keys, D, generator=generator) for _ in range(2))
    mask = key_mask(padding_mask(torch.randint(1, keys + 1, (rows,), generator=generator), max_len=keys))
    score = ScaledDot()
    context, _ = attend(q, k, v, score=score, mask=mask)
    assert spy.calls == (1 if fused else 0)
    explicit, _ = attend(q, k, v, score=score, mask=mask, need_weights=True)
    torch.testing.assert_close(context, explicit, rtol=1e-5, atol=1e-5)
