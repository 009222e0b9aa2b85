"""Attention pooling: shapes, padding, the pooled vector by hand."""

from __future__ import annotations

import pytest
import torch

from seqattn.attention import Additive, AttentionPooling, Location, ScaledDot, padding_mask
from tests.attention.reference import naive_attention

D = 8


def make_pooling(score_name: str, num_queries: int = 3) -> AttentionPooling:
    score = {"scaled_dot": ScaledDot(), "additive": Additive(D), "location": Location(D, max_len=8)}[
        score_name
    ]
    return AttentionPooling(D, num_queries=num_queries, score=score).eval()


@pytest.mark.parametrize("score_name", ["scaled_dot", "additive", "location"])
@pytest.mark.parametrize("num_queries", [1, 3])
def test_shapes_padding_and_normalisation(score_name: str, num_queries: int) -> None:
    pool = make_pooling(score_name, num_queries)
    lengths = torch.tensor([6, 2, 1])
    states = torch.randn(3, 6, D)
    mask = padding_mask(lengths)
    pooled, weights = pool(states, mask=mask)
    assert pooled.shape == (3, num_queries, D)
    assert weights.shape == (3, num_queries, 6)
    pad = ~mask[:, None, :].expand_as(weights)
    assert (weights[pad] == 0.0).all()
    assert (weights[~pad] > 0.0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, num_queries))


@pytest.mark.parametrize("score_name", ["scaled_dot", "additive", "location"])
def test_pooled_vector_is_weighted_sum_of_states(score_name: str) -> None:
    pool = make_pooling(score_name).double()
    states = torch.randn(2, 5, D, dtype=torch.float64)
    mask = padding_mask(torch.tensor([5, 3]))
    pooled, weights = pool(states, mask=mask)
    by_hand = torch.zeros_like(pooled)
    for b in range(2):
        for q in range(pooled.size(1)):
            for t in range(5):
                by_hand[b, q] += weights[b, q, t] * states[b, t]
    torch.testing.assert_close(pooled, by_hand, rtol=1e-12, atol=1e-12)
    queries = pool.queries.detach().double().expand(2, -1, -1)
    ref_pooled, ref_w = naive_attention(pool.score, queries, states, states, mask=mask[:, None, :])
    torch.testing.assert_close(pooled, ref_pooled, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, ref_w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("score_name", ["scaled_dot", "additive"])
def test_padding_content_does_not_matter(score_name: str) -> None:
    pool = make_pooling(score_name)
    states = torch.randn(2, 5, D)
    mask = padding_mask(torch.tensor([5, 2]))
    noisy = states.clone()
    noisy[1, 2:] = 1e3 * torch.randn(3, D)
    torch.testing.assert_close(pool(states, mask=mask), pool(noisy, mask=mask), rtol=0, atol=1e-6)
    alone, _ = pool(states[1:, :2])
    torch.testing.assert_close(pool(states, mask=mask)[0][1:], alone, rtol=0, atol=1e-6)


def test_no_mask_and_empty_sequence() -> None:
    pool = make_pooling("scaled_dot")
    states = torch.randn(2, 4, D)
    _, weights = pool(states)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    pooled, weights = pool(states, mask=padding_mask(torch.tensor([4, 0])))
    assert torch.isfinite(pooled).all()
    assert (pooled[1] == 0.0).all() and (weights[1] == 0.0).all()


def test_gradients_reach_queries_and_score() -> None:
    pool = make_pooling("additive").train()
    states = torch.randn(2, 4, D, requires_grad=True)
    pooled, _ = pool(states, mask=padding_mask(torch.tensor([4, 0])))
    pooled.pow(2).sum().backward()
    assert states.grad is not None and torch.isfinite(states.grad).all()
    for name, p in pool.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training() -> None:
    pool = AttentionPooling(D, num_queries=2, dropout=0.5).eval()
    states = torch.randn(2, 6, D)
    torch.testing.assert_close(pool(states)[0], pool(states)[0], rtol=0, atol=0)
    evaluated, weights = pool(states)
    pool.train()
    dropped, train_weights = pool(states)
    assert not torch.allclose(evaluated, dropped)
    torch.testing.assert_close(train_weights, weights)  # weights are reported before dropout


@pytest.mark.parametrize(("d", "q"), [(0, 1), (4, 0), (-1, 2)])
def test_rejects_bad_sizes(d: int, q: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        AttentionPooling(d, num_queries=q)


def test_default_score_is_scaled_dot() -> None:
    assert isinstance(AttentionPooling(D).score, ScaledDot)
    assert AttentionPooling(D).queries.shape == (1, D)
