"""Property tests over batch sizes, lengths, heads, padding patterns and the causal flag."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.attention import MultiHeadAttention, attend, causal_mask, key_mask
from tests.attention.reference import SCORE_NAMES, make_score

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def attention_cases(draw: st.DrawFn, *, self_attention: bool = False) -> dict:
    batch = draw(st.integers(1, 3))
    tq = draw(st.integers(1, 5))
    tk = tq if self_attention else draw(st.integers(1, 5))
    return {
        "batch": batch,
        "heads": draw(st.sampled_from([1, 2, 4])),
        "head_dim": draw(st.integers(1, 4)),
        "tq": tq,
        "tk": tk,
        # Key padding per example: any subset of key positions, including none and all.
        "keep": draw(
            st.lists(st.lists(st.booleans(), min_size=tk, max_size=tk), min_size=batch, max_size=batch)
        ),
        "use_mask": draw(st.booleans()),
        "causal": draw(st.booleans()),
        "score": draw(st.sampled_from(SCORE_NAMES)),
        "seed": draw(st.integers(0, 2**16)),
    }


def _check_weights(weights: torch.Tensor, allowed: torch.Tensor) -> None:
    assert torch.isfinite(weights).all()
    assert (weights[~allowed] == 0.0).all()
    sums = weights.sum(-1)
    has_key = allowed.any(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert (weights[~has_key] == 0.0).all()


@SETTINGS
@given(case=attention_cases())
def test_attend_invariants(case: dict) -> None:
    torch.manual_seed(case["seed"])
    b, h, dh, tq, tk = case["batch"], case["heads"], case["head_dim"], case["tq"], case["tk"]
    score = make_score(case["score"], dh)
    q = torch.randn(b, h, tq, dh, requires_grad=True)
    k = torch.randn(b, h, tk, dh, requires_grad=True)
    v = torch.randn(b, h, tk, dh, requires_grad=True)
    mask = key_mask(torch.tensor(case["keep"], dtype=torch.bool)) if case["use_mask"] else None
    causal = case["causal"]

    fused, _ = attend(q, k, v, score=score, mask=mask, causal=causal)
    explicit, weights = attend(q, k, v, score=score, mask=mask, causal=causal, need_weights=True)
    assert weights is not None and weights.shape == (b, h, tq, tk)
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)

    allowed = torch.ones(b, h, tq, tk, dtype=torch.bool)
    if mask is not None:
        allowed &= mask
    if causal:
        allowed &= causal_mask(tq, tk)
    _check_weights(weights, allowed)
    empty = ~allowed.any(-1)
    assert (fused[empty] == 0.0).all() and (explicit[empty] == 0.0).all()

    for ctx in (fused, explicit):
        grads = torch.autograd.grad(ctx.square().sum(), (q, k, v), allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@SETTINGS
@given(case=attention_cases(self_attention=True))
def test_multihead_invariants(case: dict) -> None:
    torch.manual_seed(case["seed"])
    b, h, tq, tk = case["batch"], case["heads"], case["tq"], case["tk"]
    d = h * case["head_dim"]
    mha = MultiHeadAttention(d, h, score=make_score(case["score"], case["head_dim"])).eval()
    x = torch.randn(b, tq, d, requires_grad=True)
    mask = key_mask(torch.tensor(case["keep"], dtype=torch.bool)) if case["use_mask"] else None
    causal = case["causal"]

    fused, _ = mha(x, mask=mask, causal=causal)
    explicit, weights = mha(x, mask=mask, causal=causal, need_weights=True)
    assert fused.shape == (b, tq, d) and weights is not None and weights.shape == (b, h, tq, tk)
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)

    allowed = torch.ones(b, h, tq, tk, dtype=torch.bool)
    if mask is not None:
        allowed &= mask
    if causal:
        allowed &= causal_mask(tq)
    _check_weights(weights, allowed)

    for out in (fused, explicit):
        (grad,) = torch.autograd.grad(out.square().sum(), (x,))
        assert torch.isfinite(grad).all()
