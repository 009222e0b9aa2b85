"""``attend``: score -> masked softmax -> weighted sum of values, written once.

Every attention in seqattn (Bahdanau and Luong decoders, Transformer self- and cross-attention,
attention pooling) goes through :func:`attend`. Three paths compute it:

* **few-query kernel**: at inference on CPU in fp32 or bf16, a dot-product score over at most 16
  queries per row and head (decoding steps: one query, or the hypotheses of a sentence) runs
  in the compiled kernel of :mod:`seqattn.attention.native`, one pass over the keys and values
  per (row, head) instead of two batched matrix multiplies and a softmax; where it cannot be
  built, the two paths below serve;

* **fused**: when the score is a (scaled) dot product on its prepared keys and the weights are
  not requested, ``torch.nn.functional.scaled_dot_product_attention`` does all three steps in one
  kernel (FlashAttention / memory-efficient kernels on CUDA, the fused flash kernel on CPU in
  fp32 without dropout; for bf16, dropout, or decoding steps over many rows on CPU the explicit
  path is faster, see :func:`_fused_pays`);
* **explicit**: otherwise the scores are materialised, masked and normalised here, and the
  weights can be returned for plots and alignments.

All give the same context (tested to 1e-5 in fp32). A query row whose keys are all masked gets a
zero context and zero weights, never NaN, on both paths and in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from seqattn.attention import native
from seqattn.attention.masks import causal_mask, combine_masks
from seqattn.attention.scores import Score
from seqattn.dropout import dropout as apply_dropout

__all__ = ["PoolChunk", "PreparedKeys", "attend", "pooled_cache_attention", "prepare_keys"]


@dataclass(frozen=True)
class PreparedKeys:
    """Keys already passed through ``score.prepare_keys``, remembered with the score they suit.

    ``tensor`` is ``(..., Tk, Dp)``. Beam search reorders it like any other per-source tensor
    (:meth:`index_select`).
    """

    tensor: Tensor
    score: Score

    def index_select(self, dim: int, index: Tensor) -> PreparedKeys:
        return PreparedKeys(self.tensor.index_select(dim, index), self.score)


def prepare_keys(keys: Tensor, *, score: Score) -> PreparedKeys:
    """Do the key-side work of ``score`` once, for any number of later queries."""
    return PreparedKeys(score.prepare_keys(keys), score)


EXPLICIT_DECODING_ROWS = 128
"""One-query attentions over at least this many query rows (batch x heads) take the explicit
path on CPU in fp32; see :func:`_fused_pays`."""

EXPLICIT_BLOCK_QUERIES = 16
EXPLICIT_BLOCK_SCORES = 2048
"""Inference blocks of at most ``EXPLICIT_BLOCK_QUERIES`` queries (beam search: the hypotheses
of a sentence) with at most ``EXPLICIT_BLOCK_SCORES`` scores per head, over at least
:data:`EXPLICIT_DECODING_ROWS` query rows, take the explicit path too; see :func:`_fused_pays`."""


def _fused_pays(query: Tensor, dropout: float, num_keys: int) -> bool:
    """Whether the fused kernel is the faster path for ``query``'s device, dtype and shape.

    Everywhere but on CPU for reduced precision, with dropout, or for one query per row over
    many rows. For bf16 on CPU torch's flash kernel was 3-6x slower than the explicit path on the
    development machine (one query over 200 keys, 32 x 4 heads: 1.05 ms against 0.18 ms; 30 x 30
    training blocks: 1.97 against 0.67 ms). With dropout the CPU has no fused kernel at all: SDPA
    falls back to its unfused math path, which draws the mask with ``bernoulli_``; the explicit
    path with :func:`seqattn.dropout.dropout` made a Transformer training step 1.05x faster
    (paired A/B, attention dropout 0.1). In fp32 the flash kernel wins for training blocks and for
    decoding steps of a few sentences (16 x 4 heads, one query over 20 keys: 42 against 50 us),
    but the explicit path's two batched matrix multiplies win for decoding steps over many rows
    (on a 2-core Xeon: 32 x 4 heads 63 against 77 us, 64 x 4 141 -> 102 us, 320 x 4 752 -> 467
    us), from :data:`EXPLICIT_DECODING_ROWS` query rows on. Whole decodes of the benchmark
    Transformer (two sets of 6-8 paired runs, same outputs): beam 5 used 1.03-1.08x less CPU
    time, greedy 1.01-1.05x (greedy has fewer steps with that many rows).

    The same holds for small blocks of queries at inference, such as beam search's
    cross-attention (the ``K`` hypotheses of a sentence as ``K`` queries over its source), once
    the explicit path masks by addition (inference only, see :func:`attend`). Flash against
    explicit, 32 sentences x 4 heads (EPYC, 2 threads, one process): 5 queries over 21 / 101 /
    201 / 401 keys 392 / 616 / 1,081 / 2,115 against 205 / 404 / 742 / 2,013 us; 10 queries
    395 / 660 / 1,097 / 2,548 against 202 / 497 / 1,102 / 2,769; 16 queries over 201 keys 1,461
    against 1,604. Hence the explicit path for at most :data:`EXPLICIT_BLOCK_QUERIES` queries
    and :data:`EXPLICIT_BLOCK_SCORES` scores per head; with autograd the kernel stays.
    """
    if query.device.type != "cpu":
        return True
    if query.dtype != torch.float32 or dropout != 0.0:
        return False
    if query.numel() // query.size(-1) < EXPLICIT_DECODING_ROWS:
        return True
    queries = query.size(-2)
    if queries == 1:
        return False
    small_block = queries <= EXPLICIT_BLOCK_QUERIES and queries * num_keys <= EXPLICIT_BLOCK_SCORES
    return not (small_block and not (torch.is_grad_enabled() and query.requires_grad))


def attend(
    query: Tensor,
    keys: Tensor | PreparedKeys,
    values: Tensor,
    *,
    score: Score,
    mask: Tensor | None = None,
    causal: bool = False,
    need_weights: bool = False,
    dropout: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    """Attend from ``query`` over ``keys``/``values``.

    Shapes (any leading batch dims ``...``, e.g. ``B`` or ``B, H``):
        query  ``(..., Tq, Dq)``
        keys   ``(..., Tk, Dk)`` raw, or :class:`PreparedKeys` from :func:`prepare_keys`
        values ``(..., Tk, Dv)``
        mask   boolean, ``True`` = may attend, broadcastable to ``(..., Tq, Tk)``
        causal if set, query ``i`` (the queries being the last ``Tq`` of ``Tk`` positions) sees
               only keys ``j <= i + Tk - Tq``; combined with ``mask``. Kept apart from ``mask``
               so the fused kernels can use their causal fast path (no mask tensor at all).
    Returns:
        context ``(..., Tq, Dv)`` and, if ``need_weights``, weights ``(..., Tq, Tk)`` (before
        dropout; masked keys get exactly zero), else ``None``.

    ``dropout`` is applied to the weights whenever it is non-zero: pass ``0.0`` at inference
    (modules pass ``p if self.training else 0.0``).
    """
    if isinstance(keys, PreparedKeys):
        if keys.score is not score:
            raise ValueError("keys were prepared for a different score module")
        prepared = keys.tensor
    else:
        prepared = score.prepare_keys(keys)
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = may attend), got {mask.dtype}")

    num_queries, num_keys = query.size(-2), prepared.size(-2)
    kernel_causal = causal and mask is None and num_queries == num_keys
    if causal and not kernel_causal:
        mask = combine_masks(mask, causal_mask(num_queries, num_keys, device=query.device))

    scale = score.dot_scale(query.size(-1))
    if scale is not None and not need_weights and dropout == 0.0 and native.applies(query, prepared, values):
        if kernel_causal:
            mask = causal_mask(num_queries, num_keys, device=query.device)
        return native.few_query_attention(query, prepared, values, mask, scale=scale), None
    if scale is not None and not need_weights and _fused_pays(query, dropout, num_keys):
        context = F.scaled_dot_product_attention(
            query, prepared, values, attn_mask=mask, dropout_p=dropout, is_causal=kernel_causal, scale=scale
        )
        if mask is not None:
            # Some kernels return NaN (or an average) for rows without any key; pin them to 0.
            # torch.where keeps SDPA's output layout (masked_fill would copy to a new one).
            context = torch.where(mask.any(dim=-1, keepdim=True), context, 0.0)
        return context, None

    if kernel_causal:
        mask = causal_mask(num_queries, num_keys, device=query.device)
    scores = score(query, prepared)  # (..., Tq, Tk)
    lowest = torch.finfo(scores.dtype).min
    if mask is not None and not (torch.is_grad_enabled() and scores.requires_grad):
        # Inference: the mask as an additive 0 / lowest term, several times cheaper than
        # masked_fill with a mask broadcast over heads and queries. A masked key's weight is
        # then exactly 0 wherever its row has a key left; rows without any are zeroed after.
        scores = scores + _additive_mask(mask, scores, lowest)
        weights = torch.softmax(scores, dim=-1)
        attended = mask.any(dim=-1, keepdim=True)  # (..., Tq, 1)
        context = torch.where(attended, apply_dropout(weights, dropout) @ values, 0.0)
        return context, (torch.where(attended, weights, 0.0) if need_weights else None)
    if mask is not None:
        # A finite minimum, not -inf: a fully masked row then gives a uniform softmax (no NaN in
        # the forward or backward pass) that the second masked_fill turns into zeros.
        scores = scores.masked_fill(~mask, lowest)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    attn = apply_dropout(weights, dropout)  # the weights themselves when dropout is 0
    context = attn @ values  # (..., Tq, Dv)
    return context, (weights if need_weights else None)


@dataclass(frozen=True)
class PoolChunk:
    """Pools ``[start, stop)`` of a :class:`~seqattn.attention.KVCache`'s pools, read from entry
    ``first`` on (their earlier entries are dead for all of them). ``rows``: the batch rows of
    their hypotheses, pool by pool, when the pools are not in batch order (``None``: rows
    ``[start * g, stop * g)``)."""

    start: int
    stop: int
    first: int = 0
    rows: Tensor | None = None


def _additive_mask(mask: Tensor, like: Tensor, fill: float) -> Tensor:
    """``mask``'s shape, ``like``'s dtype: ``0`` where ``mask`` is true, ``fill`` elsewhere. Adding
    it to the scores ran ~10x faster than ``masked_fill_`` with a boolean mask broadcast over
    heads (32 x 4 x 5 x 365 scores: 21 against 210 us)."""
    return torch.where(mask, like.new_zeros(()), like.new_full((), fill))


def pooled_cache_attention(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    members: Tensor,
    *,
    scale: float,
    chunks: list[PoolChunk] | None = None,
) -> Tensor:
    """One decoding step of dot-product attention over a key/value cache whose rows come in
    groups that share one pool of entries (a :class:`~seqattn.attention.KVCache` under beam
    search: the hypotheses of a sentence).

    Shapes: ``query`` ``(B, H, 1, Dh)``; ``keys`` (prepared) and ``values`` ``(M, H, P, Dh)``,
    the ``P`` entries of each group's pool; ``members`` ``(B, P)`` bool: entry ``p`` of the pool
    of row ``r``'s group is a position of row ``r``'s history (``g = B / M`` rows a group; pool
    ``m`` serves rows ``[g * m, g * (m + 1))`` unless ``chunks`` say otherwise). Returns the
    context ``(B, H, 1, Dh)``, equal (up to float rounding) to attending over each row's own
    history: with dot-product scores, where an entry sits in the pool does not matter.

    The ``g`` queries of a group meet its pool in one product per head, and each query's
    scores outside its history are masked (``-inf``) before the softmax. Every row has at least
    one member (the position just appended), so no softmax row is empty. ``chunks`` (default:
    one chunk of all pools, in batch order) split the pools into runs that read only their
    live range of entries.
    """
    rows, heads, _, dim = query.shape
    group = rows // keys.size(0)
    query = query * scale
    if not chunks:
        chunks = [PoolChunk(0, keys.size(0))]
    if len(chunks) == 1 and chunks[0].rows is None and chunks[0].first == 0:
        return _pooled_attend(query, keys, values, members)
    context = query.new_empty(rows, heads, 1, dim)
    for chunk in chunks:
        pools = slice(chunk.start, chunk.stop)
        k, v = keys[pools, :, chunk.first :], values[pools, :, chunk.first :]
        if chunk.rows is None:
            batch = slice(chunk.start * group, chunk.stop * group)
            context[batch] = _pooled_attend(query[batch], k, v, members[batch, chunk.first :])
        else:
            q, m = query.index_select(0, chunk.rows), members.index_select(0, chunk.rows)
            context.index_copy_(0, chunk.rows, _pooled_attend(q, k, v, m[:, chunk.first :]))
    return context


def _pooled_attend(query: Tensor, keys: Tensor, values: Tensor, members: Tensor) -> Tensor:
    """:func:`pooled_cache_attention` over pools in batch order (``query`` already scaled)."""
    rows, heads, _, dim = query.shape
    groups = keys.size(0)
    group = rows // groups
    q = query.reshape(groups, group, heads, dim).transpose(1, 2)  # (M, H, g, Dh)
    if native.applies(q, keys, values):
        allowed = members.view(groups, 1, group, members.size(-1))
        context = native.few_query_attention(q, keys, values, allowed, scale=1.0)  # stored (M, g, H, Dh)
        return context.transpose(1, 2).reshape(rows, heads, 1, dim)
    if query.dtype in (torch.bfloat16, torch.float16):  # as in _dot: keys are a strided slice
        scores = torch.matmul(keys, q.transpose(-1, -2)).transpose(-1, -2)
    else:
        scores = torch.matmul(q, keys.transpose(-1, -2))  # (M, H, g, P)
    outside = _additive_mask(members, scores, float("-inf"))
    scores = scores.add_(outside.view(groups, 1, group, members.size(-1)))
    context = torch.matmul(torch.softmax(scores, dim=-1), values)  # (M, H, g, Dh)
    return context.transpose(1, 2).reshape(rows, heads, 1, dim)
