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

from seqattn.attention.core import PoolChunk, PreparedKeys, attend, pooled_cache_attention
from seqattn.attention.scores import ScaledDot, Score
from seqattn.quantization import linear_rows

__all__ = ["KVCache", "MultiHeadAttention", "ProjectedMemory"]


class KVCache:
    """Keys and values of earlier decoding steps for one self-attention layer (inference only).

    Tensors are ``(B, H, T, Dh)``; keys are stored score-prepared. Appending grows the storage
    by doubling, so adding one position is amortised O(1) rather than a copy of everything so
    far.

    **Beam search: one pool per sentence.** Beam search reorders the hypotheses after every
    step; copying every row's cache to its new place reads and writes the whole cache (at 200
    positions, 31% of a beam-5 decode of the benchmark Transformer), and the hypotheses of a
    sentence mostly share their histories (83-91% of positions held by all five). When the
    caller says the rows come in groups (``reorder(index, group=K)``: the ``K`` hypotheses of
    one sentence, each new group drawn from one old group), the cache keeps each group's keys
    and values as one *pool* of entries, ``(M, H, P, Dh)`` for ``M`` groups, and each row's
    history as a membership mask over its group's pool (:attr:`members`). A step appends one
    entry per row; a reorder gathers only the masks. Entries that no hypothesis holds any more
    are dropped once reading them costs enough (:attr:`COMPACT_FRACTION`): a gather of the live
    entries, in their order, which also takes care of sentences leaving the batch.
    :func:`~seqattn.attention.pooled_cache_attention` then reads each shared entry once for all
    the hypotheses that hold it.

    Pools have one length, but sentences do not keep equally many entries alive (at 140
    positions, 32 sentences of a trained model: 163 live entries in the median pool, 365 in the
    largest). So compaction also sorts the pools by their number of live entries, right-aligns
    each pool's live entries (dead ones, if any, before them) and splits the pools into
    :attr:`chunks` of similar counts, each read only from its longest pool's first live entry
    on; the split minimises the entries read plus :attr:`CHUNK_COST` per chunk.

    A reorder that is not grouped, or an attention that cannot read a pooled cache, first
    writes every history into its own row (:meth:`resolve`). ``KVCache(grouped=False)`` always
    copies: for an attention whose scores need more than a query and a key
    (:attr:`MultiHeadAttention.reads_grouped_cache`).

    Pool entries stay in the order they were appended (compaction keeps it), so a row's
    members, read left to right, are its history in time order.

    A copying reorder writes the filled positions into a buffer of exactly one more position,
    so after the next append the cache is *packed*: each row's ``(T, Dh)`` matrices follow each
    other in memory. The CPU's bf16 batched matmul copies any operand that is not packed.

    Buffers are views of flat arenas that the cache recycles: a reorder writes into the arena
    the previous reorder released. Fresh buffers of tens of MB cost page faults (6 ms for one
    42 MB buffer on the development machine, against 0.9 ms for the copy), so a search
    allocates only when the cache outgrows its arenas. Tensors returned by :meth:`append` are
    therefore valid only until the next :meth:`reorder`.
    """

    COMPACT_FRACTION = 0.25
    """A pooled cache is compacted when the entries a step reads would shrink by at least this
    fraction of the entries the compaction copies (all pools, as long as the longest's live
    entries); liveness is checked no more often than after that much growth of the pools (at
    least two entries per row of a group)."""

    CHUNK_COST = 512
    """The overhead of one more chunk (its own products, index gathers and softmax), counted in
    pool entries read: about 60 us on the development machine, against 0.13 us per entry of a
    pool (4 heads of 64 keys and values, fp32)."""

    def __init__(self, *, grouped: bool = True) -> None:
        self.grouped = grouped
        self._keys: Tensor | None = None  # (B, H, capacity, Dh), pooled: (M, H, capacity, Dh)
        self._values: Tensor | None = None  # as _keys
        self._arenas: list[Tensor] = []  # flat buffers behind _keys and _values
        self._released: list[Tensor] = []  # flat buffers free for reuse
        self._members: Tensor | None = None  # pooled only: (B, capacity) bool, see members
        self.group = 1
        self.length = 0  # positions in each row's history
        self._filled = 0  # pooled only: entries in use in each group's pool
        self._checked = 0  # pooled only: _filled when liveness was last checked
        self._groups: Tensor | None = None  # pooled only: (M,) group of each pool (None: same)
        self._chunks: list[PoolChunk] = []  # pooled only, see chunks

    @property
    def members(self) -> Tensor | None:
        """``(B, P)`` bool when pooled: entry ``p`` of the pool of row ``r``'s group (rows
        ``[group * (r // group), ...)``) is a position of row ``r``'s history; ``None`` when
        every row holds its own history."""
        return None if self._members is None else self._members[:, : self._filled]

    @property
    def chunks(self) -> list[PoolChunk]:
        """When pooled: runs of pools (in storage order) with the first entry each must read,
        and the rows each serves when the pools are not in batch order; see
        :func:`~seqattn.attention.pooled_cache_attention`."""
        return self._chunks

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Add ``(B, H, t, Dh)`` new keys/values; return all ``(B, H, length, Dh)`` so far
        (when pooled, the ``(M, H, P, Dh)`` pools: row ``r``'s history is the entries
        :attr:`members` marks)."""
        if self._members is not None:
            return self._append_pooled(keys, values)
        rows, end = keys.size(0), self.length + keys.size(2)
        if self._keys is None or self._values is None or end > self._keys.size(2):
            capacity = max(end, 2 * (self._keys.size(2) if self._keys is not None else 8))
            self._move(torch.arange(rows, device=keys.device), capacity, like=(keys, values))
        assert self._keys is not None and self._values is not None
        self._keys[:, :, self.length : end] = keys
        self._values[:, :, self.length : end] = values
        self.length = end
        return self._keys[:, :, :end], self._values[:, :, :end]

    def reorder(self, index: Tensor, *, group: int = 1) -> None:
        """Keep batch rows ``index`` (beam search: the surviving hypotheses' parents).

        ``group > 1`` promises that the rows come in groups of ``group`` before and after, and
        that the rows of each new group all come from one old group (beam search's reorders;
        :func:`~seqattn.models.groups.regroup` checks this): then only the membership masks are
        gathered, and the pools are copied only when whole groups leave or enough entries
        have died (compaction)."""
        if self._keys is None:
            return
        device = index.device
        rows = self._members.size(0) if self._members is not None else self._keys.size(0)
        if not self.grouped or group == 1 or not index.numel() or index.numel() % group or rows % group:
            self._own_rows(index)
            return
        if self._members is None or self.group != group:
            self._own_rows(torch.arange(rows, device=device))
            self._pool(group)
        assert self._members is not None
        self._members = self._members[index]  # (B', capacity): each new row's history
        blocks = index[::group].div(group, rounding_mode="floor")  # (M',) old group of each new one
        moved = blocks.numel() != rows // group or not torch.equal(
            blocks, torch.arange(rows // group, device=device)
        )
        if moved or self._filled - self._checked >= self._slack(self._checked):
            self._compact(blocks, moved=moved)

    def resolve(self) -> None:
        """Write every row's history into its own row (afterwards :attr:`members` is ``None``)."""
        if self._members is not None:
            self._own_rows(torch.arange(self._members.size(0), device=self._members.device))

    # -- pooled storage ----------------------------------------------------------------------

    def _slack(self, live: int) -> int:
        """Dead entries worth a compaction of a pool with ``live`` live entries."""
        return max(2 * self.group, int(self.COMPACT_FRACTION * live))

    def _pool(self, group: int) -> None:
        """Turn own-row storage into one pool per group of ``group`` rows: position ``j`` of
        row ``g * m + i`` becomes entry ``g * j + i`` of pool ``m`` (time order)."""
        assert self._keys is not None and self._values is not None
        rows, length = self._keys.size(0), self.length
        groups, filled = rows // group, length * group
        capacity = max(2 * filled, 8 * group)
        keys, values = self._keys[:, :, :length], self._values[:, :, :length]
        self._install(*self._allocate(groups, capacity, (keys, values)))
        self._members = torch.zeros(rows, capacity, dtype=torch.bool, device=keys.device)
        self.group, self._filled, self._checked = group, 0, 0
        self._groups, self._chunks = None, [PoolChunk(0, groups)]
        self._write_entries(keys, values)  # the old arenas stay intact until the next allocation

    def _own_slots(self, rows: int, group: int) -> Tensor:
        """``(rows, group)`` bool: row ``r`` marks slot ``r % group``."""
        assert self._keys is not None
        slots = torch.arange(group, device=self._keys.device)
        return slots.repeat(rows // group).unsqueeze(1) == slots

    def _append_pooled(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        assert self._keys is not None and self._values is not None and self._members is not None
        self._write_entries(keys, values)
        self.length += keys.size(2)
        return self._keys[:, :, : self._filled], self._values[:, :, : self._filled]

    def _write_entries(self, keys: Tensor, values: Tensor) -> None:
        """Append ``(B, H, t, Dh)`` positions as pool entries: position ``j`` of row
        ``g * m + i`` becomes entry ``filled + g * j + i`` of group ``m``'s pool (time order),
        a member of row ``g * m + i`` only."""
        assert self._keys is not None and self._values is not None and self._members is not None
        rows, heads, steps, dim = keys.shape
        group = self.group
        groups, start, end = rows // group, self._filled, self._filled + steps * group
        if end > self._keys.size(2):  # grow: the same entries in twice the room
            self._repool(None, None, max(end, 2 * self._keys.size(2)))
            grown = self._members.new_zeros(rows, self._keys.size(2))
            grown[:, :start] = self._members[:, :start]
            self._members = grown
        for source, target in ((keys, self._keys), (values, self._values)):
            grouped = source.view(groups, group, heads, steps, dim)
            if self._groups is not None:  # into the pools' order
                grouped = grouped.index_select(0, self._groups)
            target[:, :, start:end].view(groups, heads, steps, group, dim).copy_(
                grouped.permute(0, 2, 3, 1, 4)
            )
        new = self._members[:, start:end].view(rows, steps, group)
        new.copy_(self._own_slots(rows, group).unsqueeze(1))
        self._filled = end

    def _compact(self, blocks: Tensor, *, moved: bool) -> None:
        """Keep the live entries of each new group's pool (new group ``i`` from old group
        ``blocks[i]``), in order, right-aligned, with the pools sorted by their live entries and
        split into chunks; with nothing moved, only when it cuts enough of a step's reads."""
        assert self._keys is not None and self._members is not None
        rows, filled, group = self._members.size(0), self._filled, self.group
        groups = rows // group
        members = self._members[:, :filled].view(groups, group, filled)
        live = members.any(dim=1)  # (M', filled), by new group
        counts = live.sum(dim=1)
        by_count = torch.argsort(counts, descending=True, stable=True)  # new pool -> new group
        sorted_counts = counts[by_count].tolist()
        keep = sorted_counts[0]
        plan, cost = self._plan(sorted_counts)
        now = sum((c.stop - c.start) * (filled - c.first) + self.CHUNK_COST for c in self._chunks)
        if not moved and now - cost < self.COMPACT_FRACTION * groups * keep:  # the copy's size
            self._checked = filled
            return
        # Per group: its dead entries, then its live ones (both in order); the last `keep`.
        columns = torch.argsort(live, dim=1, stable=True)[:, filled - keep :]  # (M', keep)
        old_pools = blocks if moved else torch.arange(groups, device=blocks.device)
        if self._groups is not None:  # the pool each old group is in
            old_pools = torch.argsort(self._groups)[old_pools]
        self._repool(old_pools[by_count], columns[by_count], self._keys.size(2))
        kept = self._members.new_zeros(rows, self._keys.size(2))
        kept[:, :keep] = members.gather(2, columns.unsqueeze(1).expand(-1, group, -1)).view(rows, keep)
        self._members, self._filled, self._checked = kept, keep, keep
        same = torch.equal(by_count, torch.arange(groups, device=by_count.device))
        self._groups = None if same else by_count
        slots = torch.arange(group, device=by_count.device)
        self._chunks = [
            PoolChunk(
                start,
                stop,
                keep - sorted_counts[start],
                None if self._groups is None else (self._groups[start:stop, None] * group + slots).flatten(),
            )
            for start, stop in plan
        ]

    def _plan(self, counts: list[int]) -> tuple[list[tuple[int, int]], int]:
        """Split pools with ``counts`` live entries (descending) into runs ``[start, stop)``
        that minimise the entries read (each pool reads as many as its run's first) plus
        :attr:`CHUNK_COST` per run; and that cost. Runs start at multiples of ``M // 16``."""
        size = len(counts)
        step = max(1, size // 16)
        cuts = [*range(0, size, step), size]
        best = [0] + [0] * (len(cuts) - 1)
        came = [0] * len(cuts)
        for j in range(1, len(cuts)):
            best[j], came[j] = min(
                (best[i] + (cuts[j] - cuts[i]) * counts[cuts[i]] + self.CHUNK_COST, i) for i in range(j)
            )
        runs, j = [], len(cuts) - 1
        while j:
            runs.append((cuts[came[j]], cuts[j]))
            j = came[j]
        return runs[::-1], best[-1]

    def _repool(self, pools: Tensor | None, columns: Tensor | None, capacity: int) -> None:
        """New pools of ``capacity`` entries: new pool ``i`` takes old pool ``pools[i]``'s
        entries ``columns[i]`` (both ``None``: all pools' filled entries, as they are)."""
        assert self._keys is not None and self._values is not None
        old = (self._keys, self._values)
        groups = old[0].size(0) if pools is None else pools.numel()
        filled = self._filled if columns is None else columns.size(1)
        arenas, buffers = self._allocate(groups, capacity, old)
        for source, target in zip(old, buffers, strict=True):
            if columns is None:
                target[:, :, :filled] = source[:, :, :filled]
            else:  # rows of (pool, head, entry): index_select ran 2.4x faster than indexing
                _, heads, capacity_then, dim = source.shape
                which = torch.arange(groups, device=columns.device) if pools is None else pools
                head = torch.arange(heads, device=columns.device).view(1, -1, 1)
                rows = (
                    (which.view(-1, 1, 1) * heads + head) * capacity_then + columns.unsqueeze(1)
                ).flatten()
                gathered = source.reshape(-1, dim).index_select(0, rows)
                target[:, :, :filled] = gathered.view(groups, heads, filled, dim)
        self._install(arenas, buffers)
        self._filled = filled

    def _own_rows(self, index: Tensor) -> None:
        """Rows ``index``' histories, each into its own row (a copy)."""
        if self._members is None:
            self._move(index, self.length + 1)
            return
        assert self._keys is not None and self._values is not None
        length, old = self.length, (self._keys, self._values)
        arenas, buffers = self._allocate(index.numel(), length + 1, old)
        if length:
            # Each row has exactly `length` members, in time order.
            slots = self._members[index, : self._filled].nonzero()[:, 1].view(-1, 1, length)
            pools = index.div(self.group, rounding_mode="floor")
            pools = (pools if self._groups is None else torch.argsort(self._groups)[pools]).view(-1, 1, 1)
            heads = torch.arange(self._keys.size(1), device=index.device).view(1, -1, 1)
            for source, target in zip(old, buffers, strict=True):
                target[:, :, :length] = source[pools, heads, slots]
        self._install(arenas, buffers)
        self._members, self.group, self._filled, self._checked = None, 1, 0, 0
        self._groups, self._chunks = None, []

    # -- buffers -----------------------------------------------------------------------------

    def _move(self, index: Tensor, capacity: int, like: tuple[Tensor, Tensor] | None = None) -> None:
        """Rows ``index`` of the filled positions into new ``capacity``-position buffers."""
        old = (self._keys, self._values) if self._keys is not None else None
        shapes = like if like is not None else old
        assert shapes is not None
        arenas, buffers = self._allocate(index.numel(), capacity, shapes)
        length = self.length
        if old is not None and length:
            for source, target in zip(old, buffers, strict=True):
                torch.index_select(source[:, :, :length], 0, index, out=target[:, :, :length])
        self._install(arenas, buffers)

    def _allocate(
        self, rows: int, capacity: int, shapes: tuple[Tensor, Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``(rows, H, capacity, Dh)`` buffers shaped like ``shapes`` (keys, values)."""
        arenas, buffers = [], []
        for template in shapes:
            _, h, _, d = template.shape
            numel = rows * h * capacity * d
            arenas.append(self._arena(numel, template))
            buffers.append(arenas[-1][:numel].view(rows, h, capacity, d))
        return arenas, buffers

    def _install(self, arenas: list[Tensor], buffers: list[Tensor]) -> None:
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
        """Whether one-query steps can attend over a pooled :class:`KVCache` (beam search,
        :func:`~seqattn.attention.pooled_cache_attention`): dot-product scores, which depend
        on the query and the key alone, not on where the key sits."""
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
                if cache.members is not None and not grouped:
                    cache.resolve()
                prepared, v = cache.append(prepared, v)  # (B, H, Tk, Dh), pooled (M, H, P, Dh)
                members = cache.members
                if members is not None:
                    assert scale is not None
                    context = pooled_cache_attention(
                        q, prepared, v, members, scale=scale, chunks=cache.chunks
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
