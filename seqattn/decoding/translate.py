"""Decoding a whole list of sources: length-sorted batches under a token budget, results back in
input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from seqattn.data.batching import inference_batches, pad_batch, restore_order
from seqattn.decoding.beam import beam_search
from seqattn.decoding.hypothesis import Hypothesis
from seqattn.models.protocol import Seq2Seq

__all__ = ["Search", "translate_batches"]

Search = Callable[..., list[list[Hypothesis]]]
"""A search such as :func:`~seqattn.decoding.beam.beam_search`: ``(model, src, src_lengths,
**options) -> n-best lists``."""


def translate_batches(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    *,
    max_tokens: int,
    max_sentences: int | None = None,
    search: Search = beam_search,
    device: torch.device | str | None = None,
    **options: Any,
) -> list[list[Hypothesis]]:
    """Decode ``sources`` (id lists without special tokens) and return their n-best lists.

    Sources are sorted by length and cut into batches of at most ``max_tokens`` padded source
    tokens (and ``max_sentences`` sentences) with :func:`~seqattn.data.batching.inference_batches`;
    each batch is padded with ``PAD_ID`` and decoded by ``search(model, src, src_lengths,
    **options)`` (e.g. ``beam_size=5`` for beam search). The budget counts source tokens only:
    beam search holds ``beam_size`` copies of each sentence, so size ``max_tokens`` accordingly.

    ``device`` defaults to the device of the model's parameters (CPU if it has none).
    Returns one n-best list per source, in input order.
    """
    if device is None:
        device = _device_of(model)
    plan = inference_batches([len(s) for s in sources], max_tokens=max_tokens, max_sentences=max_sentences)
    outputs = []
    for batch in plan:
        src, src_lengths = pad_batch([sources[i] for i in batch])  # (B, S), (B,)
        outputs.append(search(model, src.to(device), src_lengths.to(device), **options))
    return restore_order(plan, outputs)


def _device_of(model: object) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        first: Tensor | None = next(iter(parameters()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")
