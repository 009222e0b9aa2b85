"""A finished translation and how it is scored.

Every search returns, per source sentence, an n-best list of :class:`Hypothesis` sorted by
``score``. A hypothesis keeps what alignment plots and rescoring need: the tokens (without
``BOS``/``EOS``), the raw log-probability, the per-token log-probabilities and the attention of
every produced token over the real source positions.

Length normalisation is GNMT's (Wu et al. 2016): ``score = log_prob / lp(L)`` with
``lp(L) = ((5 + L) / 6) ** alpha`` and ``L`` the number of produced tokens **including** the
final ``EOS`` (the convention of OpenNMT-py; ``alpha = 0`` ranks by the raw log-probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Hypothesis", "gnmt_penalty", "normalise"]


@dataclass(eq=False)
class Hypothesis:
    """One finished output sequence."""

    tokens: list[int]
    """Produced ids, without ``BOS`` and ``EOS``."""
    score: float
    """Length-normalised log-probability (see :func:`normalise`); n-best lists sort by it."""
    log_prob: float
    """Sum of the log-probabilities of the tokens and of the final ``EOS``."""
    attention: Tensor
    """``(len(tokens) + 1, S_real)`` float32 on the CPU: row ``i`` is the attention that produced
    token ``i`` (the last row produced ``EOS``) over the real (unpadded) source positions."""
    token_log_probs: Tensor
    """``(len(tokens) + 1,)`` float32 on the CPU: log-probability of each token, ``EOS`` last."""


def gnmt_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``((5 + L) / 6) ** alpha`` of lengths ``L`` (``EOS`` counted), float64.

    Computed in float64 on the CPU (some accelerators lack float64) and then cast and moved, so
    every search divides by exactly the same value.
    """
    return ((5.0 + lengths.cpu().to(torch.float64)) / 6.0) ** alpha


def normalise(log_probs: Tensor, lengths: Tensor, *, alpha: float) -> Tensor:
    """Length-normalised scores ``log_probs / gnmt_penalty(lengths, alpha)``, in ``log_probs``' dtype."""
    return log_probs / gnmt_penalty(lengths, alpha).to(log_probs)


def build_hypotheses(
    tokens: Tensor,
    lengths: Tensor,
    attention: Tensor,
    token_log_probs: Tensor,
    log_probs: Tensor,
    scores: Tensor,
    src_lengths: Tensor,
) -> list[Hypothesis]:
    """Batched results -> hypotheses, with one transfer to the CPU.

    Shapes (``H`` hypotheses, ``T`` the longest, ``S`` the padded source length):
        tokens ``(H, >=T)`` ids (anything after a hypothesis' length is ignored),
        lengths ``(H,)`` number of tokens without ``EOS``, attention ``(H, >=T+1, S)``,
        token_log_probs ``(H, >=T+1)``, log_probs / scores / src_lengths ``(H,)``.
    """
    tokens_list = tokens.tolist()
    lengths_list = lengths.tolist()
    attention = attention.float().cpu()
    token_log_probs = token_log_probs.float().cpu()
    log_probs_list = log_probs.tolist()
    scores_list = scores.tolist()
    src_list = src_lengths.tolist()
    result = []
    for h, (length, src_len) in enumerate(zip(lengths_list, src_list, strict=True)):
        result.append(
            Hypothesis(
                tokens=tokens_list[h][:length],
                score=scores_list[h],
                log_prob=log_probs_list[h],
                attention=attention[h, : length + 1, :src_len].clone(),
                token_log_probs=token_log_probs[h, : length + 1].clone(),
            )
        )
    return result
