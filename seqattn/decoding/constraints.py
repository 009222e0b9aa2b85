"""What a search may emit at a step: length bounds relative to the source, and the masks on
log-probabilities that enforce them.

Lengths count produced tokens **without** ``EOS`` (fairseq's convention). For a source of real
length ``n``::

    max_len(n) = min(floor(max_len_a * n + max_len_b), max_len)
    min_len(n) = min(floor(min_len_a * n + min_len_b), max_len(n))

At step ``t`` (``t`` tokens produced so far) ``EOS`` is forbidden while ``t < min_len`` and is
the only choice once ``t == max_len``, so a hypothesis that reaches the maximum is finished with
``EOS`` appended and scored with the model's own ``EOS`` log-probability, as in fairseq. ``PAD``
and ``BOS`` are never produced. Masked log-probabilities are set to ``-inf`` and the rest are
**not** renormalised (fairseq, OpenNMT-py): scores stay the model's log-probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = ["constrain_log_probs", "length_bounds"]

_FLOOR_SLACK = 1e-6
"""Added before ``floor`` so ``1.15 * 20`` gives 23 and not 22 (``22.999999999999996``)."""


def length_bounds(
    src_lengths: Tensor,
    *,
    max_len_a: float,
    max_len_b: int,
    min_len_a: float,
    min_len_b: int,
    max_len: int | None,
) -> tuple[Tensor, Tensor]:
    """``(B,)`` real source lengths -> ``(min_lens, max_lens)``, both ``(B,)`` long, on the
    device of ``src_lengths`` (computed in float64 on the CPU).

    ``max_len`` is a hard cap on every sentence (``None``: none). A minimum above the maximum is
    lowered to it: the maximum wins.
    """
    if max_len is not None and max_len < 0:
        raise ValueError(f"max_len must be non-negative, got {max_len}")
    real = src_lengths.cpu().to(torch.float64)
    max_lens = torch.floor(max_len_a * real + max_len_b + _FLOOR_SLACK).long().clamp(min=0)
    if max_len is not None:
        max_lens = max_lens.clamp(max=max_len)
    min_lens = torch.floor(min_len_a * real + min_len_b + _FLOOR_SLACK).long().clamp(min=0)
    device = src_lengths.device
    return torch.minimum(min_lens, max_lens).to(device), max_lens.to(device)


def constrain_log_probs(log_probs: Tensor, *, step: int, min_lens: Tensor, max_lens: Tensor | None) -> Tensor:
    """Mask ``log_probs`` ``(..., V)`` in place for step ``step`` and return it.

    ``min_lens`` and ``max_lens`` are broadcastable to ``log_probs.shape[:-1]`` (``(R,)`` for
    ``(R, V)`` rows, ``(A, 1)`` for ``(A, K, V)`` beams). ``max_lens=None`` skips the maximum
    check, for steps before the shortest maximum of the batch.
    """
    log_probs[..., PAD_ID] = -math.inf
    log_probs[..., BOS_ID] = -math.inf
    log_probs[..., EOS_ID].masked_fill_(min_lens > step, -math.inf)
    if max_lens is not None:
        not_eos = torch.ones(log_probs.size(-1), dtype=torch.bool, device=log_probs.device)
        not_eos[EOS_ID] = False
        at_max = (max_lens <= step).unsqueeze(-1)  # (..., 1)
        log_probs.masked_fill_(at_max & not_eos, -math.inf)
    return log_probs


def next_log_probs(logits: Tensor) -> Tensor:
    """``(..., V)`` logits -> log-probabilities, in float32 at least (half logits are upcast)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype), dim=-1)
