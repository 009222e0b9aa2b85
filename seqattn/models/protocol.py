"""The one protocol every sequence-to-sequence model implements.

Decoding (greedy, beam search, forced decoding for alignments) is written against this protocol
only, so it never asks which model it drives::

    encode(src, src_lengths)            -> state    encoder states, source mask, prepared keys
    step(prev_tokens, state)            -> StepOutput(logits, attention), state
    reorder_state(state, index)         -> state    keep/duplicate batch rows (beam search)
    forward(src, src_lengths, tgt_in, *, need_attention) -> logits, attention  (teacher forcing)

``state`` is an opaque object owned by the caller (a model's decoder state plus its encoded
source); models never keep per-batch tensors on ``self``. ``step`` and ``reorder_state`` may
update the state they are given in place (key/value caches grow and are reordered without
copies), so callers use only the state they get back. ``step`` consumes one target position
per call: the ids of the previous tokens ``(B,)`` (``BOS`` at the first step) and returns
log-probabilities-to-be (logits) over the target vocabulary and the attention over the source
positions that produced them.

Models may also offer ``attention_heads(src, src_lengths, tgt_in) -> (B, L, H, T, S)``: the
teacher-forced attention of every layer and head (``L = H = 1`` for a single attention), used by
per-head plots; :func:`~seqattn.decoding.forced.force_decode` asks for it with ``heads=True``.

Shapes: ``B`` batch (or batch x beam), ``S`` source length, ``T`` target length, ``V`` target
vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Seq2Seq", "StepOutput"]


@dataclass(frozen=True)
class StepOutput:
    """What one decoder step produces."""

    logits: Tensor
    """``(B, V)`` unnormalised scores of the next token."""
    attention: Tensor
    """``(B, S)`` attention over the source positions (zero on padding)."""
    vocab: Tensor | None = None
    """``(C,)`` the target id of each logit column when a step scores a subset of the
    vocabulary (a shortlist, :mod:`seqattn.decoding.shortlist`): sorted, starting with the
    special ids, so a special token's column is its id. ``None``: column ``i`` is id ``i``."""


@runtime_checkable
class Seq2Seq(Protocol):
    """A model the decoders can drive."""

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any:
        """``(B, S)`` ids and ``(B,)`` lengths -> decoding state for the first step."""
        ...

    def step(self, prev_tokens: Tensor, state: Any) -> tuple[StepOutput, Any]:
        """``(B,)`` previous ids -> the next position's output and the new state.

        The RNN and the Transformer also take ``output=``: a layer that replaces their output
        projection for this step (the columns of a shortlist)."""
        ...

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Select (and repeat) batch rows ``index`` ``(B',)`` of every tensor in ``state``."""
        ...

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        *,
        need_attention: bool = True,
        positions: Tensor | None = None,
        project: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: ``(B, T)`` target inputs -> ``(B, T, V)`` logits and ``(B, T, S)``
        attention (``None`` allowed when ``need_attention`` is false, e.g. in training).

        ``positions``, a ``(B, T)`` bool mask, asks for the logits of those positions only,
        ``(N, V)`` in row-major order: training skips the output projection (and its
        ``(B, T, V)`` gradient) on padding. ``project=False`` returns the states that the
        model's ``output`` layer (an ``nn.Linear``) would take instead of the logits, so that
        training can project and score them in one operation
        (:func:`seqattn.training.projected_loss.projected_cross_entropy`)."""
        ...
