"""Multi-head attention: projections and heads around :func:`~seqattn.attention.attend`.

One module serves self-attention (``forward(x)``) and cross-attention (``forward(x, memory)``).
Its input projection is one ``(3D, D)`` matrix: self-attention computes Q, K and V with a single
matrix multiply (fused QKV); cross-attention uses the first third for the queries and the other
two thirds for the memory's keys and values. Any score from :mod:`seqattn.attention.scores` can
be used inside every head (built for the head size ``D / H``).

Decoding state lives outside the module, in objects the caller owns:

* :class:`KVCache` holds the keys and values of the positions a decoder has produced so far, so
  each new step projects only its own position;
* :class:`ProjectedMemory` holds a source's cross-attention keys (already score-prepared) and
  values, computed once per source by :meth:`MultiHeadAttention.project_memory`.

Both can be reordered along the batch dimension for beam search.

Shapes: ``B`` batch, ``T``/``Tq`` query positions, ``Tk`` key positions, ``D`` model size,
``H`` heads, ``Dh = D / H`` head size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqattn.attention.core import PreparedKeys, attend, grouped_cache_attention
from seqattn.attention.scores import ScaledDot, Score
from seqattn.quantization import linear_rows

__all__ = ["KVCache", "MultiHeadAttention", "ProjectedMemory"]


class KVCache:
    """Keys and values of earlier decoding steps for one self-attention layer (inference only).

    Tensors are ``(B, H, T, Dh)``; keys are stored score-prepared. Appending grows the storage
    by doubling, so adding one position is amortised O(1) rather than a copy of everything so
    far.

    **Beam reorders without copies.** Beam search reorders the hypotheses after every step, and
    copying every row's cache to its new place reads and writes the whole cache: at 200
    positions, 31% of a beam-5 decode of the benchmark Transformer. When the caller says the
    rows come in groups (``reorder(index, group=K)``: the ``K`` hypotheses of one sentence, each
    new group drawn from one old group), the cache moves nothing: it records, per row and
    position, which row of the group holds that position of the hypothesis's history
    (:attr:`ancestry`), and a step's new position is written to the hypothesis's own row.
    :func:`grouped_cache_attention` reads a group's rows once for all its hypotheses and picks
    each position from the recorded row. Only sentences that leave the batch cost a copy (of
    the surviving groups, as they are). A reorder that is not grouped, or an attention that
    cannot read a grouped cache, first writes every history into its own row
    (:meth:`resolve`). ``KVCache(grouped=False)`` always copies: for an attention whose scores
    need more than a query and a key (:attr:`MultiHeadAttention.reads_grouped_cache`).

    A copying reorder writes the filled positions into a buffer of exactly one more position,
    so after the next append the cache is *packed*: each row's ``(T, Dh)`` matrices follow each
    other in memory. The CPU's bf16 batched matmul copies any operand that is not packed.

    Buffers are views of flat arenas that the cache recycles: a reorder writes into the arena
    the previous reorder released. Fresh buffers of tens of MB cost page faults (6 ms for one
    42 MB buffer on the development machine, against 0.9 ms for the copy), so a search
    allocates only when the cache outgrows its arenas. Tensors returned by :meth:`append` are
    therefore valid only until the next :meth:`reorder`.
    """

    def __init__(self, *, grouped: bool = True) -> None:
        self.grouped = grouped
        self._keys: Tensor | None = None  # (B, H, capacity, Dh) view of self._arenas[0]
        self._values: Tensor | None = None  # (B, H, capacity, Dh) view of self._arenas[1]
        self._arenas: list[Tensor] = []  # flat buffers behind _keys and _values
        self._released: list[Tensor] = []  # flat buffers free for reuse
        self._ancestry: Tensor | None = None  # (B, capacity) long, see ancestry
        self.group = 1
        self.length = 0

    @property
    def ancestry(self) -> Tensor | None:
        """``(B, length)`` long: for row ``r`` and position ``j``, the row of ``r``'s group
        (``0 .. group - 1``, rows ``[group * (r // group), ...)``) that holds position ``j`` of
        row ``r``'s history; ``None`` when every row holds its own history."""
        return None if self._ancestry is None else self._ancestry[:, : self.length]

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``(B, H, t, Dh)`` new keys/values; return all ``(B, H, length, Dh)`` so far
        (the rows as stored: with :attr:`ancestry` set, a row holds the positions that
        :attr:`ancestry` assigns to it)."""
        rows, end = keys.size(0), self.length + keys.size(2)
        if self._keys is None or self._values is None or end > self._keys.size(2):
            capacity = max(end, 2 * (self._keys.size(2) if self._keys is not None else 8))
            self._move(torch.arange(rows, device=keys.device), capacity, like=(keys, values))
        assert self._keys is not None and self._values is not None
        self._keys[:, :, self.length : end] = keys
        self._values[:, :, self.length : end] = values
        if self._ancestry is not None:  # new positions go to each hypothesis's own row
            if self._ancestry.size(1) < end:
                grown = self._ancestry.new_empty(rows, self._keys.size(2))
                grown[:, : self.length] = self._ancestry[:, : self.length]
                self._ancestry = grown
            own = torch.arange(rows, device=keys.device) % self.group
            self._ancestry[:, self.length : end] = own.unsqueeze(1)
        self.length = end
        return self._keys[:, :, :end], self._values[:, :, :end]

    def reorder(self, index: Tensor, *, group: int = 1) -> None:
        """Keep batch rows ``index`` (beam search: the surviving hypotheses' parents).

        ``group > 1`` promises that the rows come in groups of ``group`` before and after, and
        that the rows of each new group all come from one old group (beam search's reorders;
        :func:`~seqattn.models.groups.regroup` checks this): then nothing is copied unless whole
        groups leave, and those that stay are copied as they are."""
        if self._keys is None:
            return
        rows, device = self._keys.size(0), index.device
        if not self.grouped or group == 1 or index.numel() % group or rows % group:
            self._move(index, self.length + 1, where=self._where(index))
            self._ancestry, self.group = None, 1
            return
        if self._ancestry is None or self.group != group:
            self.resolve()
            own = torch.arange(rows, device=device) % group
            self._ancestry = own.unsqueeze(1).expand(rows, self.length + 1).contiguous()
            self.group = group
        ancestry = self._ancestry[index]  # (B', capacity): each new row's history, by slot
        blocks = index[::group].div(group, rounding_mode="floor")  # (M',) old group of each new one
        if blocks.numel() != rows // group or not torch.equal(
            blocks, torch.arange(rows // group, device=device)
        ):
            slots = torch.arange(group, device=device)
            self._move((blocks.unsqueeze(1) * group + slots).flatten(), self.length + 1)
        self._ancestry = ancestry

    def resolve(self) -> None:
        """Write every row's history into its own row (afterwards :attr:`ancestry` is ``None``)."""
        if self._ancestry is not None and self._keys is not None:
            index = torch.arange(self._keys.size(0), device=self._keys.device)
            self._move(index, self.length + 1, where=self._where(index))
        self._ancestry, self.group = None, 1

    def _where(self, index: Tensor) -> Tensor | None:
        """``(B', length)``: the stored row of every position of rows ``index``' histories
        (``None`` when each row holds its own)."""
        ancestry = self.ancestry
        if ancestry is None:
            return None
        base = index.div(self.group, rounding_mode="floor") * self.group
        return base.unsqueeze(1) + ancestry[index]

    def _move(
        self,
        index: Tensor,
        capacity: int,
        like: tuple[Tensor, Tensor] | None = None,
        *,
        where: Tensor | None = None,
    ) -> None:
        """Rows ``index`` of the filled positions into new ``capacity``-position buffers; with
        ``where`` (``(B', length)`` stored rows), position ``j`` of new row ``i`` from row
        ``where[i, j]``."""
        old = (self._keys, self._values) if self._keys is not None else None
        shapes = like if like is not None else old
        assert shapes is not None
        rows, arenas, buffers = index.numel(), [], []
        for template in shapes:
            _, h, _, d = template.shape
            numel = rows * h * capacity * d
            arenas.append(self._arena(numel, template))
            buffers.append(arenas[-1][:numel].view(rows, h, capacity, d))
        length = self.length
        if old is not None and length:
            positions = torch.arange(length, device=index.device)
            for source, target in zip(old, buffers, strict=True):
                if where is None:
                    torch.index_select(source[:, :, :length], 0, index, out=target[:, :, :length])
                else:  # (B', T, H, Dh) gathered position by position
                    target[:, :, :length] = (
                        source[:, :, :length].transpose(1, 2)[where, positions].transpose(1, 2)
                    )
        self._released.extend(self._arenas)
        self._arenas = arenas
        self._keys, self._values = buffers

    def _arena(self, numel: int, like: Tensor) -> Tensor:
        """A free flat buffer of at least ``numel`` elements (new ones get room to grow)."""
        for i, arena in enumerate(self._released):
            if arena.numel() >= numel and arena.dtype == like.dtype and arena.device == like.device:
                return self._released.pop(i)
        self._released.clear()  # too small for what comes next: let them go
        return like.new_empty(2 * numel)


@dataclass(frozen=True)
class ProjectedMemory:
    """A source's cross-attention keys (score-prepared) and values, ``(B, H, Tk, Dh)`` each."""

    keys: PreparedKeys
    values: Tensor

    def index_select(self, dim: int, index: Tensor) -> ProjectedMemory:
        return ProjectedMemory(self.keys.index_select(dim, index), self.values.index_select(dim, index))


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with any score per head.

    Args:
        d_model: model size ``D`` (queries, keys, values and output).
        num_heads: number of heads ``H``; must divide ``D``.
        score: score used inside each head, built for size ``D / H``. Default: scaled dot
            product, which runs on the fused SDPA kernels when weights are not requested.
        dropout: dropout on the attention weights (training only).
        bias: whether the projections have biases.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        score: Score | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if d_model <= 0 or num_heads <= 0 or d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be a positive multiple of num_heads ({num_heads})")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.score = score if score is not None else ScaledDot()
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)  # [W_q; W_k; W_v]
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        nn.init.xavier_uniform_(self.in_proj.weight)
        if bias:
            nn.init.zeros_(self.in_proj.bias)
            nn.init.zeros_(self.out_proj.bias)

    # -- helpers -----------------------------------------------------------------------------

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def _project(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Apply rows ``[start*D, stop*D)`` of the input projection (0=Q, 1=K, 2=V)."""
        return linear_rows(self.in_proj, x, start * self.d_model, stop * self.d_model)

    def project_memory(self, memory: Tensor, *, contiguous: bool = True) -> ProjectedMemory:
        """``(B, Tk, D)`` encoder states -> cross-attention keys/values, once per source.

        With ``contiguous`` (the default, for reuse over decoding steps) both are laid out
        ``(B, H, Tk, Dh)`` in memory once, so the explicit attention path's matrix multiplies
        read them in place instead of copying them at every step; a one-off forward pass
        skips that copy.
        """
        keys, values = self._project(memory, 1, 3).chunk(2, dim=-1)  # (B, Tk, D) each
        keys, values = self._split_heads(keys), self._split_heads(values)  # (B, H, Tk, Dh) views
        if contiguous:
            keys, values = keys.contiguous(), values.contiguous()
        return ProjectedMemory(PreparedKeys(self.score.prepare_keys(keys), self.score), values)

    @property
    def reads_grouped_cache(self) -> bool:
        """Whether one-query steps can attend over a :class:`KVCache` whose beam reorders
        moved nothing (:func:`~seqattn.attention.grouped_cache_attention`): dot-product scores,
        which depend on the query and the key alone."""
        return self.score.dot_scale(self.head_dim) is not None

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        memory: Tensor | ProjectedMemory | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` ``(B, Tq, D)`` over itself or over ``memory``.

        Args:
            memory: ``None`` for self-attention; encoder states ``(B, Tk, D)`` or the result of
                :meth:`project_memory` for cross-attention.
            mask: boolean, ``True`` = may attend, broadcastable to ``(B, H, Tq, Tk)``; for key
                padding pass ``(B, 1, 1, Tk)`` (see :func:`~seqattn.attention.masks.key_mask`).
            causal: query ``i`` sees only keys up to its own position (with a cache, up to
                ``cache.length`` earlier positions plus its own).
            cache: self-attention only; the new positions' keys/values are appended to it and
                the queries attend over everything in it (incremental decoding, no grad).
            need_weights: also return the per-head weights ``(B, H, Tq, Tk)``.

        Returns:
            ``(B, Tq, D)`` output and the weights or ``None``.
        """
        b, tq, _ = x.shape
        if memory is None:
            q, k, v = self.in_proj(x).view(b, tq, 3, self.num_heads, self.head_dim).unbind(2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, Dh)
            prepared = self.score.prepare_keys(k)
            if cache is not None:
                scale = self.score.dot_scale(self.head_dim)
                grouped = (
                    tq == 1
                    and mask is None
                    and scale is not None
                    and not need_weights
                    and not (self.training and self.dropout)
                )
                if cache.ancestry is not None and not grouped:
                    cache.resolve()
                prepared, v = cache.append(prepared, v)  # (B, H, Tk, Dh)
                if cache.ancestry is not None:
                    assert scale is not None
                    context = grouped_cache_attention(
                        q, prepared, v, cache.ancestry, group=cache.group, scale=scale
                    )  # (B, H, 1, Dh)
                    return self.out_proj(context.transpose(1, 2).reshape(b, tq, self.d_model)), None
            keys = PreparedKeys(prepared, self.score)
        else:
            if cache is not None:
                raise ValueError("a key/value cache is for self-attention only")
            if not isinstance(memory, ProjectedMemory):
                memory = self.project_memory(memory, contiguous=False)
            q = self._split_heads(self._project(x, 0, 1))  # (B, H, Tq, Dh)
            keys, v = memory.keys, memory.values
        # One new position attending over a cache needs no causal mask: everything is in its past.
        causal = causal and not (cache is not None and tq == 1)
        context, weights = attend(
            q,
            keys,
            v,
            score=self.score,
            mask=mask,
            causal=causal,
            need_weights=need_weights,
            dropout=self.dropout if self.training else 0.0,
        )
        context = context.transpose(1, 2).reshape(b, tq, self.d_model)  # (B, Tq, D)
        return self.out_proj(context), weights
