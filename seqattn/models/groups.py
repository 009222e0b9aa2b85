"""Hypotheses that share a source: one copy of the encoded source per sentence, not per row.

During beam search every sentence has ``K`` hypothesis rows, and all of them attend over the
same encoded source. Keeping that source once per hypothesis would mean reordering
``K``-fold copies of the encoder states, prepared keys and (for a Transformer) every layer's
projected memory after every step, and reading ``K`` copies inside every attention. Instead a
decoder state keeps the source once per *sentence* (``M`` memory rows) and the hypothesis rows
in groups: rows ``[g*i, g*(i+1))`` all belong to memory row ``i``. The ``g`` queries of a group
are scored against their memory row together, as ``g`` query positions of one attention call
(the attention core handles any number of queries), so the source is read once per sentence.

:func:`regroup` maps a reorder of the hypothesis rows to the memory side: nothing at all while
beams only move within their sentences (every beam step but those where sentences finish), a
gather of the surviving sentences when some finish, and one row per hypothesis (``g = 1``) for
any reorder that does not keep rows grouped, so every ``index`` stays valid.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["regroup"]


def regroup(index: Tensor, *, group: int, memory_rows: int) -> tuple[Tensor | None, int]:
    """How the memory side follows a reorder of the hypothesis rows.

    Args:
        index: ``(R',)`` the old hypothesis row of each new row (``reorder_state``'s index).
        group: rows per memory row before the reorder (row ``r`` used memory row ``r // group``).
        memory_rows: memory rows before the reorder (``M``).
    Returns:
        ``(take, new_group)``: ``take`` is ``None`` when the memory stays as it is, else the
        ``(M',)`` memory rows to keep (in order); afterwards row ``r`` uses memory row
        ``r // new_group``.
    """
    sources = index.div(group, rounding_mode="floor") if group > 1 else index  # (R',)
    rows = sources.numel()
    if rows == 0:
        return sources, 1
    distinct = torch.unique_consecutive(sources)  # (M',)
    count = distinct.numel()
    if rows % count == 0:
        new_group = rows // count
        if torch.equal(sources, distinct.repeat_interleave(new_group)):
            unchanged = count == memory_rows and torch.equal(
                distinct, torch.arange(count, device=distinct.device)
            )
            return (None if unchanged else distinct), new_group
    return sources, 1
