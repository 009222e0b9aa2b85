"""Attention pooling: learned queries attend over a sequence of states.

This is the attention of attention-based text classifiers: the encoder states are both keys and
values and a learned vector is the query (Yang et al. 2016's word/sentence attention uses the
additive form ``u_w^T tanh(W h + b)``, which is :class:`~seqattn.attention.scores.Additive` with a
learned query; Lin et al. 2017 use several queries, one per "view" of the sentence).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqattn.attention.core import attend
from seqattn.attention.scores import ScaledDot, Score

__all__ = ["AttentionPooling"]


class AttentionPooling(nn.Module):
    """Pool ``(B, T, D)`` states into ``(B, Q, D)`` vectors with ``Q`` learned queries.

    Args:
        d_model: state size ``D`` (also the query size).
        num_queries: number of learned queries ``Q``.
        score: score between query and states; default scaled dot product.
        dropout: dropout on the attention weights (training only).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_queries: int = 1,
        score: Score | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model <= 0 or num_queries <= 0:
            raise ValueError(f"d_model and num_queries must be positive, got {d_model}, {num_queries}")
        self.score = score if score is not None else ScaledDot()
        self.dropout = dropout
        self.queries = nn.Parameter(torch.empty(num_queries, d_model))
        nn.init.normal_(self.queries, std=1.0 / math.sqrt(d_model))

    def forward(self, states: Tensor, *, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``states`` ``(B, T, D)``, ``mask`` ``(B, T)`` (``True`` = real token).

        Returns the pooled vectors ``(B, Q, D)`` and the weights ``(B, Q, T)``; padding gets
        exactly zero weight and each row of weights over a non-empty sequence sums to one.
        """
        b = states.size(0)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)  # (B, Q, D)
        pooled, weights = attend(
            queries,
            states,
            states,
            score=self.score,
            mask=None if mask is None else mask[:, None, :],  # (B, 1, T)
            need_weights=True,
            dropout=self.dropout if self.training else 0.0,
        )
        assert weights is not None
        return pooled, weights
