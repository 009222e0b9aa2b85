"""Score functions against naive float64 references, key preparation and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from seqattn.attention import (
    SCORES,
    Additive,
    Concat,
    Dot,
    General,
    Location,
    PreparedKeys,
    RelativeScaledDot,
    ScaledDot,
    Score,
    attend,
    build_score,
    prepare_keys,
)
from tests.attention.reference import SCORE_NAMES, make_score, naive_scores

D = 6


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_score_matches_naive_reference(name: str) -> None:
    score = make_score(name, D).double()
    query = torch.randn(2, 3, 4, D, dtype=torch.float64)  # (B, H, Tq, D)
    keys = torch.randn(2, 3, 5, D, dtype=torch.float64)  # (B, H, Tk, D)
    got = score(query, score.prepare_keys(keys))
    assert got.shape == (2, 3, 4, 5)
    torch.testing.assert_close(got, naive_scores(score, query, keys), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["general", "concat", "additive"])
def test_score_with_key_size_and_hidden_size(name: str) -> None:
    hidden = None if name == "general" else 7
    score = make_score(name, D, key_dim=5, hidden_dim=hidden).double()
    query = torch.randn(2, 3, D, dtype=torch.float64)
    keys = torch.randn(2, 4, 5, dtype=torch.float64)
    got = score(query, score.prepare_keys(keys))
    torch.testing.assert_close(got, naive_scores(score, query, keys), rtol=1e-12, atol=1e-12)


def test_reference_is_sensitive_to_parameters() -> None:
    """The references read the parameters: changing one changes both sides alike."""
    score = Additive(D).double()
    query = torch.randn(1, 2, D, dtype=torch.float64)
    keys = torch.randn(1, 3, D, dtype=torch.float64)
    before = naive_scores(score, query, keys)
    with torch.no_grad():
        score.v.add_(1.0)
    after = score(query, score.prepare_keys(keys))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, naive_scores(score, query, keys), rtol=1e-12, atol=1e-12)


def test_dot_scores_report_their_scale() -> None:
    assert Dot().dot_scale(16) == 1.0
    assert ScaledDot().dot_scale(16) == pytest.approx(0.25)
    assert General(4).dot_scale(4) == 1.0
    for score in (Additive(4), Concat(4), Location(4, max_len=3), RelativeScaledDot(4)):
        assert score.dot_scale(4) is None


def test_location_ignores_key_contents_and_limits_length() -> None:
    score = Location(D, max_len=4)
    query = torch.randn(2, 3, D)
    a = score(query, score.prepare_keys(torch.randn(2, 4, D)))
    b = score(query, score.prepare_keys(100 * torch.randn(2, 4, D)))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert score(query, torch.randn(2, 2, D)).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="at most 4"):
        score(query, torch.randn(2, 5, D))
    with pytest.raises(ValueError):
        Location(D, max_len=0)


def test_relative_score_depends_on_clipped_distance_only() -> None:
    """With zero keys the score is ``q . a_clip(j - i) / sqrt(d)``; far keys share one vector."""
    score = RelativeScaledDot(D, max_distance=2).requires_grad_(False)
    query = torch.randn(1, 1, D).expand(1, 6, D)  # the same query at every position
    scores = score(query, torch.zeros(1, 6, D))[0]  # (Tq, Tk)
    for i in range(6):
        for j in range(6):
            r = max(-2, min(2, j - i))
            assert float(scores[i, j]) == pytest.approx(
                float(query[0, 0] @ score.relative[r + 2]) / D**0.5, abs=1e-6
            )
    assert scores[0, 5] == scores[0, 3] == scores[1, 5]
    # Queries are the last Tq positions: one query over 6 keys is the last row of the full scores.
    torch.testing.assert_close(score(query[:, :1], torch.zeros(1, 6, D))[0, 0], scores[5])
    with pytest.raises(ValueError, match="max_distance"):
        RelativeScaledDot(D, max_distance=0)


@pytest.mark.parametrize("name", SCORE_NAMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_prepared_keys_serve_many_queries(name: str, need_weights: bool) -> None:
    """Preparing keys once and scoring many query steps == scoring the raw keys every step."""
    score = make_score(name, D)
    keys = torch.randn(2, 5, D)
    values = torch.randn(2, 5, 3)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]  # (B, 1, Tk)
    prepared = prepare_keys(keys, score=score)
    assert isinstance(prepared, PreparedKeys)
    assert prepared.score is score
    torch.testing.assert_close(prepared.tensor, score.prepare_keys(keys), rtol=0, atol=0)
    for _ in range(4):
        query = torch.randn(2, 1, D)
        ctx_p, w_p = attend(query, prepared, values, score=score, mask=mask, need_weights=need_weights)
        ctx_r, w_r = attend(query, keys, values, score=score, mask=mask, need_weights=need_weights)
        torch.testing.assert_close(ctx_p, ctx_r)
        if need_weights:
            torch.testing.assert_close(w_p, w_r)


def test_prepared_keys_index_select() -> None:
    score = General(D)
    keys = torch.randn(3, 4, D)
    index = torch.tensor([2, 2, 0])
    selected = prepare_keys(keys, score=score).index_select(0, index)
    assert selected.score is score
    torch.testing.assert_close(selected.tensor, score.prepare_keys(keys[index]))


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_attend_refuses_keys_prepared_for_another_score(name: str) -> None:
    score, other = make_score(name, D), make_score(name, D)
    keys = torch.randn(1, 3, D)
    prepared = prepare_keys(keys, score=other)
    with pytest.raises(ValueError, match="different score"):
        attend(torch.randn(1, 2, D), prepared, torch.randn(1, 3, D), score=score)


def test_build_score() -> None:
    assert set(SCORES) == set(SCORE_NAMES)
    for name in SCORE_NAMES:
        score = build_score(name, query_dim=D, hidden_dim=5, max_len=7)
        assert type(score) is SCORES[name]
    additive = build_score("additive", query_dim=D, key_dim=3, hidden_dim=5)
    assert isinstance(additive, Additive)
    assert additive.key_proj.weight.shape == (5, 3)
    assert build_score("location", query_dim=D, max_len=7).proj.out_features == 7
    relative = build_score("relative", query_dim=D)
    assert isinstance(relative, RelativeScaledDot) and relative.max_distance == 16
    assert relative.relative.shape == (33, D)
    assert build_score("relative", query_dim=D, max_len=5).max_distance == 5
    with pytest.raises(ValueError, match="unknown attention score"):
        build_score("cosine", query_dim=D)
    with pytest.raises(ValueError, match="max_len"):
        build_score("location", query_dim=D)


class _Scored(nn.Module):
    """``score(q, prepare_keys(k))`` as one module, so parameters can be passed functionally."""

    def __init__(self, score: Score) -> None:
        super().__init__()
        self.score = score

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.score(query, self.score.prepare_keys(keys))


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_score_gradcheck(name: str) -> None:
    """Analytic gradients w.r.t. query, keys and every parameter match finite differences."""
    module = _Scored(make_score(name, 3, hidden_dim=4, max_len=5)).double()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]
    query = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)

    def fn(q: torch.Tensor, k: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
        return functional_call(module, dict(zip(names, flat, strict=True)), (q, k))

    assert torch.autograd.gradcheck(fn, (query, keys, *params))


@pytest.mark.parametrize("name", ["dot", "scaled_dot", "general"])
@pytest.mark.parametrize("queries", [1, 3])
def test_dot_scores_in_bf16_match_float64(name: str, queries: int) -> None:
    """One bf16 query is scored as ``(keys @ q^T)^T`` over a strided key cache; same values."""
    score = make_score(name, 16).to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(4, 2, queries, 16, generator=generator).to(torch.bfloat16)
    buffer = torch.randn(4, 2, 20, 16, generator=generator).to(torch.bfloat16)
    keys = buffer[:, :, :13]  # a cache slice: not packed
    got = score(query, score.prepare_keys(keys))
    expected = score.double()(query.double(), score.prepare_keys(keys.double()))
    assert got.shape == (4, 2, queries, 13) and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=2e-2)
