"""Length-bucketed batches under a token budget, and the padding that goes with them.

A batch's cost is counted on its **padded** size: ``examples x longest sequence``, where an
example's length is the longer of its source and target (fairseq's ``max_tokens`` rule). Sorting
by length before cutting batches keeps padding low (pairs also sort by a second key inside equal
lengths, so that the shorter side is padded less too); shuffling the *order of batches* (and the
tie-break inside equal lengths) from ``seed + epoch`` keeps training stochastic and reproducible.

Training plans (:func:`token_batches`) contain every kept example exactly once per epoch; examples
longer than ``max_len`` (or alone over the budget) are filtered and counted. Inference plans
(:func:`inference_batches`) sort by length and remember positions so outputs can be put back in
input order (:func:`restore_order`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor

from seqattn.data.tokenizer import PAD_ID

__all__ = ["BatchPlan", "inference_batches", "pad_batch", "restore_order", "token_batches"]

T = TypeVar("T")


@dataclass
class BatchPlan:
    """Batches of example indices plus what planning them cost."""

    batches: list[list[int]]
    filtered: list[int] = field(default_factory=list)
    """Indices of examples dropped as too long."""
    real_tokens: int = 0
    padded_tokens: int = 0

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / padded tokens (1.0 means no padding at all)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _cut(
    order: Sequence[int], lengths: Sequence[int], max_tokens: int, max_sentences: int | None
) -> BatchPlan:
    """Greedily cut ``order`` (sorted by length) into batches whose padded size fits the budget."""
    plan = BatchPlan(batches=[])
    batch: list[int] = []
    longest = 0
    for index in order:
        length = lengths[index]
        grown = max(longest, length)
        full = max_sentences is not None and len(batch) >= max_sentences
        if batch and (grown * (len(batch) + 1) > max_tokens or full):
            plan.batches.append(batch)
            plan.padded_tokens += longest * len(batch)
            batch, grown = [], length
        batch.append(index)
        longest = grown
        plan.real_tokens += length
    if batch:
        plan.batches.append(batch)
        plan.padded_tokens += longest * len(batch)
    return plan


def token_batches(
    lengths: Sequence[int],
    *,
    max_tokens: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    max_len: int | None = None,
    max_sentences: int | None = None,
    within: Sequence[int] | None = None,
) -> BatchPlan:
    """Plan one training epoch.

    Args:
        lengths: per-example length (for pairs, ``max(len(src), len(tgt))``, special tokens included).
        max_tokens: budget on ``examples x longest`` per batch.
        seed, epoch: together they fix the tie-break order and the batch order.
        shuffle: shuffle the batch order (``False``: shortest batches first).
        max_len: examples longer than this are filtered (as are examples alone over the budget).
        max_sentences: optional cap on examples per batch.
        within: optional second sort key inside equal ``lengths``. For pairs, ``len(src) -
            len(tgt)`` (:func:`~seqattn.training.translation.pair_order`) groups pairs whose
            shorter side has a similar length, so both sides of a batch need little padding
            (fairseq sorts by target and then source length for the same reason).
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if within is not None and len(within) != len(lengths):
        raise ValueError(f"within has {len(within)} keys for {len(lengths)} lengths")
    limit = max_tokens if max_len is None else min(max_len, max_tokens)
    kept = [i for i, n in enumerate(lengths) if n <= limit]
    filtered = [i for i, n in enumerate(lengths) if n > limit]
    rng = random.Random(seed * 1_000_003 + epoch)
    tiebreak = {i: rng.random() for i in kept} if shuffle else {}
    second = within if within is not None else [0] * len(lengths)
    kept.sort(key=lambda i: (lengths[i], second[i], tiebreak.get(i, 0.0)))
    plan = _cut(kept, lengths, max_tokens, max_sentences)
    if shuffle:
        rng.shuffle(plan.batches)
    plan.filtered = filtered
    return plan


def inference_batches(
    lengths: Sequence[int], *, max_tokens: int, max_sentences: int | None = None
) -> BatchPlan:
    """Batches sorted by length (longest first, so memory peaks early); nothing is filtered."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    plan = _cut(order, lengths, max_tokens, max_sentences)
    # _cut on a descending order starts each batch with its longest example, so an example over
    # the budget simply forms a batch of its own.
    return plan


def restore_order(plan: BatchPlan, outputs: Sequence[Sequence[T]]) -> list[T]:
    """Per-batch outputs (in plan order) -> one list in the original input order."""
    total = sum(len(batch) for batch in plan.batches)
    result: list[T | None] = [None] * total
    for batch, batch_outputs in zip(plan.batches, outputs, strict=True):
        if len(batch) != len(batch_outputs):
            raise ValueError("each batch needs exactly one output per example")
        for index, output in zip(batch, batch_outputs, strict=True):
            result[index] = output
    return result  # type: ignore[return-value]


def pad_batch(sequences: Sequence[Sequence[int]], *, pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Id sequences -> ``(B, T)`` padded tensor and ``(B,)`` lengths.

    ``T`` is at least 1, so a batch of empty sequences still has one (pad) position to attend to.
    """
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = max(int(lengths.max()), 1) if len(sequences) else 0
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return out, lengths
