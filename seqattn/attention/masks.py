"""Attention masks.

One convention everywhere in seqattn: a mask is a **boolean tensor where ``True`` means "may
attend"** (the convention of ``torch.nn.functional.scaled_dot_product_attention``). A mask must
broadcast against the score tensor ``(..., Tq, Tk)``; for multi-head attention that is
``(B, H, Tq, Tk)``, so a key-padding mask of shape ``(B, Tk)`` is passed as ``(B, 1, 1, Tk)``
(see :func:`key_mask`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["causal_mask", "combine_masks", "key_mask", "padding_mask"]


def padding_mask(lengths: Tensor, *, max_len: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` boolean mask, ``True`` at real (non-pad) positions."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D, got shape {tuple(lengths.shape)}")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len, device=lengths.device)  # (T,)
    return positions[None, :] < lengths[:, None]  # (B, T)


def causal_mask(
    num_queries: int,
    num_keys: int | None = None,
    *,
    offset: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(Tq, Tk)`` mask letting query ``i`` see keys ``j <= i + offset``.

    ``offset`` defaults to ``Tk - Tq``: the queries are the *last* ``Tq`` positions of a
    sequence whose first ``Tk`` positions are keys, which is the incremental-decoding case
    (with a key/value cache holding ``Tk - Tq`` earlier positions). With ``Tq == Tk`` it is the
    usual lower-triangular mask.
    """
    num_keys = num_queries if num_keys is None else num_keys
    offset = num_keys - num_queries if offset is None else offset
    q = torch.arange(num_queries, device=device)[:, None]  # (Tq, 1)
    k = torch.arange(num_keys, device=device)[None, :]  # (1, Tk)
    return k <= q + offset  # (Tq, Tk)


def key_mask(padding: Tensor, *, heads: bool = True) -> Tensor:
    """A ``(B, Tk)`` padding mask reshaped to broadcast over scores.

    ``heads=True`` gives ``(B, 1, 1, Tk)`` for ``(B, H, Tq, Tk)`` scores; ``heads=False`` gives
    ``(B, 1, Tk)`` for single-head ``(B, Tq, Tk)`` scores.
    """
    return padding[:, None, None, :] if heads else padding[:, None, :]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of the given masks (broadcasting); ``None`` entries are ignored."""
    result: Tensor | None = None
    for mask in masks:
        if mask is None:
            continue
        if mask.dtype != torch.bool:
            raise TypeError(f"masks must be boolean, got {mask.dtype}")
        result = mask if result is None else result & mask
    return result
