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


class Dot(Score):
    """Luong's dot score ``q . k`` (query and key of the same size)."""

    def dot_scale(self, query_dim: int) -> float:
        return 1.0

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return query @ prepared.transpose(-2, -1)  # (..., Tq, Tk)


class ScaledDot(Score):
    """Scaled dot product ``q . k / sqrt(d)`` (Vaswani et al. 2017)."""

    def dot_scale(self, query_dim: int) -> float:
        return 1.0 / math.sqrt(query_dim)

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return (query @ prepared.transpose(-2, -1)) * self.dot_scale(query.size(-1))


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
        return query @ prepared.transpose(-2, -1)  # (..., Tq, Tk)


def _additive(query_part: Tensor, key_part: Tensor, v: Tensor) -> Tensor:
    """``v^T tanh(a_i + b_j)`` for ``(..., Tq, A)`` and ``(..., Tk, A)`` -> ``(..., Tq, Tk)``."""
    hidden = torch.tanh(query_part.unsqueeze(-2) + key_part.unsqueeze(-3))  # (..., Tq, Tk, A)
    return hidden @ v  # (..., Tq, Tk)


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
        return self.key_proj(keys)  # (..., Tk, A)

    def forward(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _additive(self.query_proj(query), prepared, self.v)


class Concat(Score):
    """Luong's concat score ``v^T tanh(W_a [q; k])``.

    The same function family as :class:`Additive`, kept with Luong's parametrisation: one
    matrix ``W_a`` over the concatenation and no bias. ``W_a [q; k] = W_q q + W_k k``, so the key
    half is applied once in preparation exactly as for the additive score.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, *, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.query_dim = query_dim
        hidden_dim = hidden_dim or query_dim
        self.proj = nn.Linear(query_dim + (key_dim or query_dim), hidden_dim, bias=False)
        self.v = nn.Parameter(torch.empty(hidden_dim))
        nn.init.uniform_(self.v, -1.0 / math.sqrt(hidden_dim), 1.0 / math.sqrt(hidden_dim))

    def prepare_keys(self, keys: Tensor) -> Tensor:
        key_weight = self.proj.weight[:, self.query_dim :]  # (A, Dk)
        return nn.functional.linear(keys, key_weight)  # (..., Tk, A)

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


SCORES: dict[str, type[Score]] = {
    "dot": Dot,
    "scaled_dot": ScaledDot,
    "general": General,
    "concat": Concat,
    "additive": Additive,
    "location": Location,
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
    ``location``) from the sizes it may need; sizes a score does not use are ignored."""
    if name not in SCORES:
        raise ValueError(f"unknown attention score {name!r}; choose one of {', '.join(SCORES)}")
    if name in ("dot", "scaled_dot"):
        return SCORES[name]()
    if name == "general":
        return General(query_dim, key_dim)
    if name == "location":
        if max_len is None:
            raise ValueError("location attention needs max_len")
        return Location(query_dim, max_len=max_len)
    return SCORES[name](query_dim, key_dim, hidden_dim=hidden_dim)
