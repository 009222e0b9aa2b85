"""Forced decoding: the attention a model pays while reading a given target.

Teacher forcing runs :meth:`~seqattn.models.protocol.Seq2Seq.forward` on ``BOS + target``; row
``i`` of the result is the attention that predicts target token ``i`` and the last row the one
that predicts ``EOS``, the same layout as :attr:`Hypothesis.attention
<seqattn.decoding.hypothesis.Hypothesis.attention>`, so reference and decoded alignments can be
compared and plotted alike. With ``heads=True`` the model's ``attention_heads`` gives every
decoder layer and head instead, ``(L, H, T + 1, S)`` per sentence (``(1, 1, T + 1, S)`` for a
single-attention RNN).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqattn.models.protocol import Seq2Seq

__all__ = ["force_decode"]


@torch.no_grad()
def force_decode(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    tgt: Tensor,
    *,
    tgt_lengths: Tensor | None = None,
    heads: bool = False,
) -> list[Tensor]:
    """Attention of ``model`` over ``src`` while it reads ``tgt``.

    Args:
        model: any :class:`~seqattn.models.protocol.Seq2Seq`.
        src: ``(B, S)`` source ids, right-padded with ``PAD_ID``; ``src_lengths`` ``(B,)``.
        tgt: ``(B, T)`` target ids without ``BOS``/``EOS``, right-padded with ``PAD_ID``.
        tgt_lengths: ``(B,)`` real target lengths; by default the number of non-``PAD`` ids.
        heads: every layer's and head's attention (the model must have ``attention_heads``).
    Returns:
        Per sentence, in input order, a float32 CPU tensor ``(T_real + 1, S_real)``, or
        ``(L, H, T_real + 1, S_real)`` with ``heads=True``.
    """
    batch, width = tgt.shape
    device = src.device
    tgt = tgt.to(device)
    src_lengths = src_lengths.to(device)
    tgt_lengths = tgt.ne(PAD_ID).sum(dim=1) if tgt_lengths is None else tgt_lengths.to(device)
    if bool(((tgt_lengths < 0) | (tgt_lengths > width)).any()):
        raise ValueError(f"tgt_lengths must be between 0 and the padded target length {width}")
    real = torch.arange(width, device=device).unsqueeze(0) < tgt_lengths.unsqueeze(1)  # (B, T)
    if bool((real & (tgt.eq(BOS_ID) | tgt.eq(EOS_ID))).any()):
        raise ValueError("tgt must not contain BOS or EOS: force_decode adds them itself")
    bos = torch.full((batch, 1), BOS_ID, dtype=tgt.dtype, device=device)
    tgt_in = torch.cat([bos, tgt.masked_fill(~real, PAD_ID)], dim=1)  # (B, T+1)
    if heads:
        if not hasattr(model, "attention_heads"):
            raise TypeError(
                f"{type(model).__name__} has no attention_heads(): per-head attention unavailable"
            )
        attention = model.attention_heads(src, src_lengths, tgt_in)  # (B, L, H, T+1, S)
    else:
        attention = model.forward(src, src_lengths, tgt_in)[1]  # (B, T+1, S)
    attention = attention.float().cpu()
    return [
        attention[i, ..., : t + 1, :s].clone()
        for i, (t, s) in enumerate(zip(tgt_lengths.tolist(), src_lengths.tolist(), strict=True))
    ]
