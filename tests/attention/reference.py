"""Naive float64 references for the attention core, written independently of the implementation.

Scores are computed one ``(query, key)`` pair at a time with python loops, the softmax only over
the allowed keys of each row, and multi-head attention one head at a time from hand-sliced
projection weights. Everything reads the modules' own parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqattn.attention import (
    Additive,
    Concat,
    Dot,
    General,
    Location,
    MultiHeadAttention,
    RelativeScaledDot,
    ScaledDot,
    Score,
)

SCORE_NAMES = ("dot", "scaled_dot", "general", "concat", "additive", "location", "relative")
DOT_LIKE = ("dot", "scaled_dot", "general")
MAX_LEN = 32


def make_score(
    name: str,
    dim: int,
    *,
    key_dim: int | None = None,
    hidden_dim: int | None = None,
    max_len: int = MAX_LEN,
    max_distance: int = 3,
) -> Score:
    """A score of the given kind for queries of size ``dim`` (and keys of size ``key_dim``).

    The relative score gets a small clipping distance so that clipping happens in tests.
    """
    if name == "dot":
        return Dot()
    if name == "scaled_dot":
        return ScaledDot()
    if name == "general":
        return General(dim, key_dim)
    if name == "concat":
        return Concat(dim, key_dim, hidden_dim=hidden_dim)
    if name == "additive":
        return Additive(dim, key_dim, hidden_dim=hidden_dim)
    if name == "location":
        return Location(dim, max_len=max_len)
    if name == "relative":
        return RelativeScaledDot(dim, max_distance=max_distance)
    raise ValueError(name)


def _d(t: Tensor) -> Tensor:
    return t.detach().double()


def pair_score(score: Score, q: Tensor, k: Tensor, i: int, j: int) -> Tensor:
    """Score of the query ``q`` at position ``i`` against the key ``k`` at position ``j``."""
    if isinstance(score, Dot):
        return (q * k).sum()
    if isinstance(score, ScaledDot):
        return (q * k).sum() / math.sqrt(q.numel())
    if isinstance(score, General):
        return torch.einsum("a,ab,b->", q, _d(score.key_proj.weight), k)
    if isinstance(score, Additive):
        hidden = _d(score.query_proj.weight) @ q + _d(score.query_proj.bias) + _d(score.key_proj.weight) @ k
        return (_d(score.v) * torch.tanh(hidden)).sum()
    if isinstance(score, Concat):
        hidden = _d(score.proj.weight) @ torch.cat([q, k])
        return (_d(score.v) * torch.tanh(hidden)).sum()
    if isinstance(score, Location):
        return (_d(score.proj.weight)[j] * q).sum() + _d(score.proj.bias)[j]
    if isinstance(score, RelativeScaledDot):
        r = score.max_distance
        distance = max(-r, min(r, j - i))
        return (q * (k + _d(score.relative)[distance + r])).sum() / math.sqrt(q.numel())
    raise TypeError(type(score))


def naive_scores(score: Score, query: Tensor, keys: Tensor) -> Tensor:
    """``(..., Tq, Dq)`` x ``(..., Tk, Dk)`` -> ``(..., Tq, Tk)`` raw scores, in float64.

    Query ``i`` sits at position ``Tk - Tq + i`` (the last ``Tq`` of the ``Tk`` positions).
    """
    lead = query.shape[:-2]
    tq, tk = query.size(-2), keys.size(-2)
    qf = _d(query).reshape(-1, tq, query.size(-1))
    kf = _d(keys).reshape(-1, tk, keys.size(-1))
    out = torch.zeros(qf.size(0), tq, tk, dtype=torch.float64)
    for b in range(qf.size(0)):
        for i in range(tq):
            for j in range(tk):
                out[b, i, j] = pair_score(score, qf[b, i], kf[b, j], tk - tq + i, j)
    return out.reshape(*lead, tq, tk)


def naive_causal(tq: int, tk: int) -> Tensor:
    """Query ``i`` is position ``tk - tq + i`` of a ``tk``-long sequence and sees keys up to it."""
    allowed = torch.zeros(tq, tk, dtype=torch.bool)
    for i in range(tq):
        for j in range(tk):
            allowed[i, j] = j <= tk - tq + i
    return allowed


def naive_attention(
    score: Score,
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
) -> tuple[Tensor, Tensor]:
    """Context ``(..., Tq, Dv)`` and weights ``(..., Tq, Tk)`` in float64; empty rows give zeros."""
    scores = naive_scores(score, query, keys)
    lead, (tq, tk) = scores.shape[:-2], scores.shape[-2:]
    allowed = torch.ones(*lead, tq, tk, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask.expand(*lead, tq, tk)
    if causal:
        allowed = allowed & naive_causal(tq, tk)
    sf = scores.reshape(-1, tq, tk)
    af = allowed.reshape(-1, tq, tk)
    vf = _d(values).reshape(-1, tk, values.size(-1))
    weights = torch.zeros_like(sf)
    context = torch.zeros(sf.size(0), tq, vf.size(-1), dtype=torch.float64)
    for b in range(sf.size(0)):
        for i in range(tq):
            keep = [j for j in range(tk) if af[b, i, j]]
            if not keep:
                continue
            top = max(float(sf[b, i, j]) for j in keep)
            total = sum(math.exp(float(sf[b, i, j]) - top) for j in keep)
            for j in keep:
                weights[b, i, j] = math.exp(float(sf[b, i, j]) - top) / total
                context[b, i] += weights[b, i, j] * vf[b, j]
    return context.reshape(*lead, tq, -1), weights.reshape(*lead, tq, tk)


def reference_mha(
    mha: MultiHeadAttention,
    x: Tensor,
    memory: Tensor | None = None,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
) -> tuple[Tensor, Tensor]:
    """Multi-head attention head by head: output ``(B, Tq, D)`` and weights ``(B, H, Tq, Tk)``."""
    d, heads = mha.d_model, mha.num_heads
    dh = d // heads
    weight = _d(mha.in_proj.weight)
    bias = _d(mha.in_proj.bias) if mha.in_proj.bias is not None else torch.zeros(3 * d, dtype=torch.float64)
    w_q, w_k, w_v = weight[:d], weight[d : 2 * d], weight[2 * d :]
    b_q, b_k, b_v = bias[:d], bias[d : 2 * d], bias[2 * d :]
    source = x if memory is None else memory
    q = _d(x) @ w_q.T + b_q  # (B, Tq, D)
    k = _d(source) @ w_k.T + b_k  # (B, Tk, D)
    v = _d(source) @ w_v.T + b_v  # (B, Tk, D)
    b, tq, tk = x.size(0), x.size(1), source.size(1)
    full_mask = None if mask is None else mask.expand(b, heads, tq, tk)
    contexts, weights = [], []
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        head_mask = None if full_mask is None else full_mask[:, h]
        ctx, w = naive_attention(
            mha.score, q[..., cols], k[..., cols], v[..., cols], mask=head_mask, causal=causal
        )
        contexts.append(ctx)
        weights.append(w)
    context = torch.cat(contexts, dim=-1)  # (B, Tq, D)
    out_bias = _d(mha.out_proj.bias) if mha.out_proj.bias is not None else 0.0
    out = context @ _d(mha.out_proj.weight).T + out_bias
    return out, torch.stack(weights, dim=1)
