"""Attention score functions: the one place where the attention variants differ.

Every score maps a query ``q`` and a key ``k`` to a scalar. Scores work in two stages:

* ``prepare_keys(keys)`` does the key-side work once per source: projecting ``U k`` for
  Bahdanau's additive score, ``W k`` for Luong's general score. A decoder calls it once after
  encoding and then scores every target step against the result.
* ``forward(query, prepared)`` scores queries ``(..., Tq, Dq)`` against prepared keys
  ``(..., Tk, Dp)`` and returns raw scores ``(..., Tq, Tk)`` (before masking and softmax).

Modules hold parameters only, never per-batch tensors, so one module can serve many batches
and beams at once and can be reordered freely by beam search (nothing is cached on ``self``).

A score that is a scaled dot product between the query and the prepared keys reports its scale
through :meth:`Score.dot_scale`; :func:`seqattn.attention.attend` then hands the work to the
fused ``scaled_dot_product_attention`` kernel. After preparation, ``Dot``, ``ScaledDot`` and
``General`` are all of that form.

References: Bahdanau et al. 2015 (additive); Luong et al. 2015 (dot, general, concat, location);
Vaswani et al. 2017 (scaled dot product).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "SCORES",
    "Additive",
    "Concat",
    "Dot",
    "General",
    "Location",
    "RelativeScaledDot",
    "ScaledDot",
    "Score",
    "build_score",
]


class Score(nn.Module):
    """Base class. Subclasses override :meth:`forward` and, if useful, :meth:`prepare_keys`."""

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """``(..., Tk, Dk)`` keys -> ``(..., Tk, Dp)`` prepared keys. Default: unchanged."""
        return keys

    def dot_scale(self, query_dim: int) -> float | None:
        """Scale ``s`` if ``score(q, p) = s * q . p`` on prepared keys ``p``; otherwise ``None``."""
        return None

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _dot(query: Tensor, keys: Tensor) -> Tensor:
    """``(..., Tq, D) @ (..., Tk, D)^T -> (..., Tq, Tk)``.

    For one query in reduced precision the product is taken as ``(keys @ query^T)^T``: a
    decoder's key cache is a slice of a larger buffer, and the CPU's bf16 batched matmul copies
    a transposed strided operand whole (160 x 4 heads over 200 cached keys: 1.96 ms against
    0.73 ms the other way round). Same values; fp32 keeps the direct form, which is faster there.
    """
    if query.size(-2) == 1 and query.dtype in (torch.bfloat16, torch.float16):
        return (keys @ query.transpose(-2, -1)).transpose(-2, -1)
    return query @ keys.transpose(-2, -1)


class Dot(Score):
    """Luong's dot score ``q . k`` (query and key of the same size)."""

    def dot_scale(self, query_dim: int) -> float:
        return 1.0

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _dot(query, prepared)  # (..., Tq, Tk)


class ScaledDot(Score):
    """Scaled dot product ``q . k / sqrt(d)`` (Vaswani et al. 2017)."""

    def dot_scale(self, query_dim: int) -> float:
        return 1.0 / math.sqrt(query_dim)

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _dot(query, prepared) * self.dot_scale(query.size(-1))


class General(Score):
    """Luong's general (bilinear) score ``q^T W k``; ``W k`` is computed once in preparation."""

    def __init__(self, query_dim: int, key_dim: int | None = None) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_dim or query_dim, query_dim, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (..., Tk, Dq)

    def dot_scale(self, query_dim: int) -> float:
        return 1.0

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _dot(query, prepared)  # (..., Tq, Tk)


def _additive(query_part: Tensor, doubled_keys: Tensor, v: Tensor) -> Tensor:
    """``v^T tanh(a_i + b_j)`` for ``(..., Tq, A)`` queries ``a`` and ``(..., Tk, A)`` keys
    given as ``2 b`` -> ``(..., Tq, Tk)``.

    Computed as ``2 v^T sigmoid(2 (a_i + b_j)) - sum(v)`` (``tanh x = 2 sigmoid(2x) - 1``): the
    ``(..., Tq, Tk, A)`` elementwise pass dominates additive attention, and on CPU ``sigmoid``
    is several times cheaper than ``tanh`` (benchmarks/attention.py, decode rows). The doubling
    is applied to the small ``(Tq, A)`` operand here and to the keys once, when they are
    prepared; the sigmoid runs in place, so the large tensor is allocated once per call. Without
    autograd, a tensor over :data:`ADDITIVE_BLOCKED_FROM` is not built whole: see
    :func:`_additive_blocked`.
    """
    doubled_queries = 2 * query_part
    if _blocked(doubled_queries, doubled_keys, v):
        return _additive_blocked(doubled_queries, doubled_keys, v)
    hidden = (doubled_queries.unsqueeze(-2) + doubled_keys.unsqueeze(-3)).sigmoid_()  # (..., Tq, Tk, A)
    return 2 * (hidden @ v) - v.sum()  # (..., Tq, Tk)


ADDITIVE_BLOCK_BYTES = 4 << 20
"""Without autograd, an additive score whose ``(..., Tq, Tk, A)`` tensor would exceed
:data:`ADDITIVE_BLOCKED_FROM` is computed this many bytes of it at a time."""

ADDITIVE_BLOCKED_FROM = 16 << 20
"""The size of the ``(..., Tq, Tk, A)`` tensor from which the additive score is blocked."""


def _blocked(doubled_queries: Tensor, doubled_keys: Tensor, v: Tensor) -> bool:
    """Whether :func:`_additive` takes the blocked path: on CPU, with no autograd graph to keep,
    no autocast, one dtype, and an elementwise tensor too large for the caches.

    A beam-5 step of the benchmark RNN over 200-piece sources builds a ``(32, 5, 200, 256)``
    tensor, 33 MB: the sum, the sigmoid and the product with ``v`` then each stream it through
    memory (the product single-threaded, at 9 GB/s). In 4 MB blocks it stays in cache: 6.0-6.5
    -> 3.6-3.7 ms for that step's score on a 2-core EPYC (``(160, 1, 200)``: 6.5-6.6 -> 4.2-4.4
    ms). Below 16 MB the whole tensor already stays in the last-level cache and blocking only
    adds calls (``(32, 1, 200)``, 6.5 MB: 0.65 -> 0.74 ms), so it is not used. GPUs were not
    measured and keep the one-tensor path.
    """
    if doubled_queries.device.type != "cpu":
        return False
    if torch.is_grad_enabled() and (
        doubled_queries.requires_grad or doubled_keys.requires_grad or v.requires_grad
    ):
        return False
    if torch.is_autocast_enabled(doubled_queries.device.type):
        return False
    if not doubled_queries.dtype == doubled_keys.dtype == v.dtype:
        return False
    lead = _broadcast(doubled_queries.shape[:-2], doubled_keys.shape[:-2])
    elements = math.prod(lead) * doubled_queries.size(-2) * doubled_keys.size(-2) * v.numel()
    return elements * v.element_size() > ADDITIVE_BLOCKED_FROM


def _broadcast(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of two shapes that broadcast (``torch.broadcast_shapes`` costs about 37 us,
    more than a small score, on every decoding step)."""
    rank = max(len(first), len(second))
    first, second = (1,) * (rank - len(first)) + first, (1,) * (rank - len(second)) + second
    return tuple(b if a == 1 else a for a, b in zip(first, second, strict=True))


def _additive_blocked(doubled_queries: Tensor, doubled_keys: Tensor, v: Tensor) -> Tensor:
    """:func:`_additive` over the leading dimensions a block at a time, through one reused
    ``(rows, Tq, Tk, A)`` buffer of at most :data:`ADDITIVE_BLOCK_BYTES` (at least one row)."""
    lead = _broadcast(doubled_queries.shape[:-2], doubled_keys.shape[:-2])
    (tq, dim), tk = doubled_queries.shape[-2:], doubled_keys.size(-2)
    queries = doubled_queries.expand(*lead, tq, dim).reshape(-1, tq, dim)  # (N, Tq, A)
    keys = doubled_keys.expand(*lead, tk, dim).reshape(-1, tk, dim)  # (N, Tk, A)
    n = queries.size(0)
    rows = max(1, ADDITIVE_BLOCK_BYTES // (tq * tk * dim * v.element_size()))
    hidden = queries.new_empty(min(rows, n), tq, tk, dim)
    scores = queries.new_empty(n, tq, tk)
    for start in range(0, n, rows):
        end = min(n, start + rows)
        block = hidden[: end - start]
        torch.add(queries[start:end].unsqueeze(-2), keys[start:end].unsqueeze(-3), out=block)
        torch.mv(block.sigmoid_().view(-1, dim), v, out=scores[start:end].view(-1))
    return scores.mul_(2).sub_(v.sum()).view(*lead, tq, tk)


class Additive(Score):
    """Bahdanau's additive score ``v^T tanh(W q + U k + b)``; ``U k`` is computed once.

    ``Uk`` is the expensive half when keys are many and queries arrive one decoder step at a
    time, so it lives in :meth:`prepare_keys`.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, *, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or query_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=True)
        self.key_proj = nn.Linear(key_dim or query_dim, hidden_dim, bias=False)
        self.v = nn.Parameter(torch.empty(hidden_dim))
        nn.init.uniform_(self.v, -1.0 / math.sqrt(hidden_dim), 1.0 / math.sqrt(hidden_dim))

    def prepare_keys(self, keys: Tensor) -> Tensor:
        return 2 * self.key_proj(keys)  # (..., Tk, A): 2 U k, as _additive takes it

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _additive(self.query_proj(query), prepared, self.v)


class Concat(Score):
    """Luong's concat score ``v^T tanh(W_a [q; k])``.

    The same function family as :class:`Additive`, kept with Luong's parametrisation: one
    matrix ``W_a`` over the concatenation and no bias. ``W_a [q; k] = W_q q + W_k k``, so the key
    half is applied once in preparation exactly as for the additive score.
    """

    int8_exempt = frozenset({"proj"})
    """Read as a matrix (its query and key halves), never called: stays float under int8."""

    def __init__(self, query_dim: int, key_dim: int | None = None, *, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.query_dim = query_dim
        hidden_dim = hidden_dim or query_dim
        self.proj = nn.Linear(query_dim + (key_dim or query_dim), hidden_dim, bias=False)
        self.v = nn.Parameter(torch.empty(hidden_dim))
        nn.init.uniform_(self.v, -1.0 / math.sqrt(hidden_dim), 1.0 / math.sqrt(hidden_dim))

    def prepare_keys(self, keys: Tensor) -> Tensor:
        key_weight = self.proj.weight[:, self.query_dim :]  # (A, Dk)
        return 2 * nn.functional.linear(keys, key_weight)  # (..., Tk, A): doubled for _additive

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        query_weight = self.proj.weight[:, : self.query_dim]  # (A, Dq)
        return _additive(nn.functional.linear(query, query_weight), prepared, self.v)


class Location(Score):
    """Luong's location-based score ``a = W_a q``: one score per source *position*.

    The keys' contents are ignored; only their number ``Tk`` is used, so sources may be at most
    ``max_len`` long. Preparation returns the keys unchanged (their length is all it needs).
    """

    def __init__(self, query_dim: int, *, max_len: int) -> None:
        super().__init__()
        if max_len <= 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.max_len = max_len
        self.proj = nn.Linear(query_dim, max_len)

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        num_keys = prepared.size(-2)
        if num_keys > self.max_len:
            raise ValueError(f"location attention supports at most {self.max_len} keys, got {num_keys}")
        return self.proj(query)[..., :num_keys]  # (..., Tq, Tk)


class RelativeScaledDot(Score):
    """Scaled dot product plus Shaw et al. (2018)'s relative-position term, for self-attention.

    ``e_ij = q_i . (k_j + a_clip(j - i)) / sqrt(d)`` with one learned vector ``a_r`` per clipped
    distance ``r`` in ``[-max_distance, max_distance]`` -- the 1-D form of the relative
    self-attention used in attention-augmented convolution (Bello et al. 2019). Only the key-side
    term is kept: Shaw et al. report no gain from the value-side one.

    Queries are taken to be the last ``Tq`` of the ``Tk`` key positions, which holds for full
    self-attention (``Tq == Tk``) and for incremental decoding with a key/value cache. The extra
    term rules out the fused kernel (``dot_scale`` is ``None``).
    """

    def __init__(self, head_dim: int, *, max_distance: int = 16) -> None:
        super().__init__()
        if max_distance <= 0:
            raise ValueError(f"max_distance must be positive, got {max_distance}")
        self.max_distance = max_distance
        self.relative = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))
        nn.init.normal_(self.relative, std=head_dim**-0.5)

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        num_queries, num_keys = query.size(-2), prepared.size(-2)
        q_pos = torch.arange(num_keys - num_queries, num_keys, device=query.device)
        k_pos = torch.arange(num_keys, device=query.device)
        distance = (k_pos[None, :] - q_pos[:, None]).clamp(-self.max_distance, self.max_distance)  # (Tq, Tk)
        content = query @ prepared.transpose(-2, -1)  # (..., Tq, Tk)
        by_distance = query @ self.relative.t()  # (..., Tq, 2R+1)
        index = (distance + self.max_distance).expand(*by_distance.shape[:-1], num_keys)
        position = by_distance.gather(-1, index)  # (..., Tq, Tk)
        return (content + position) / math.sqrt(query.size(-1))


SCORES: dict[str, type[Score]] = {
    "dot": Dot,
    "scaled_dot": ScaledDot,
    "general": General,
    "concat": Concat,
    "additive": Additive,
    "location": Location,
    "relative": RelativeScaledDot,
}


def build_score(
    name: str,
    *,
    query_dim: int,
    key_dim: int | None = None,
    hidden_dim: int | None = None,
    max_len: int | None = None,
) -> Score:
    """Build a score by name (``dot``, ``scaled_dot``, ``general``, ``concat``, ``additive``,
    ``location``, ``relative``) from the sizes it may need; sizes a score does not use are
    ignored. ``max_len`` is the number of positions for ``location`` and the clipping distance
    for ``relative``."""
    if name not in SCORES:
        raise ValueError(f"unknown attention score {name!r}; choose one of {', '.join(SCORES)}")
    if name in ("dot", "scaled_dot"):
        return SCORES[name]()
    if name == "general":
        return General(query_dim, key_dim)
    if name == "relative":
        return RelativeScaledDot(query_dim, max_distance=max_len or 16)
    if name == "location":
        if max_len is None:
            raise ValueError("location attention needs max_len")
        return Location(query_dim, max_len=max_len)
    return SCORES[name](query_dim, key_dim, hidden_dim=hidden_dim)
