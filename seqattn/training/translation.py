"""The translation task: batches of sentence pairs, label-smoothed loss, BLEU/chrF validation.

Input convention (the same at training and inference): a source is its pieces followed by
``</s>``; the decoder reads ``<s>`` + target pieces and predicts target pieces + ``</s>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqattn.data.batching import BatchPlan, pad_batch, token_batches
from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seqattn.decoding import beam_search, greedy_search, translate_batches
from seqattn.metrics import corpus_bleu, corpus_chrf, exact_match
from seqattn.training.loss import LossOutput, label_smoothed_cross_entropy
from seqattn.training.projected_loss import projected_cross_entropy

__all__ = ["PairBatch", "TranslationTask", "pair_lengths"]


@dataclass(frozen=True)
class PairBatch:
    src: Tensor  # (B, S) source ids + EOS, padded
    src_lengths: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) BOS + target ids, padded
    tgt_out: Tensor  # (B, T) target ids + EOS, padded

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)
            )
        )


def pair_lengths(sources: list[list[int]], targets: list[list[int]]) -> list[int]:
    """Per-pair length for batching: the longer side, special tokens included."""
    return [max(len(s), len(t)) + 1 for s, t in zip(sources, targets, strict=True)]


def pair_order(sources: list[list[int]], targets: list[list[int]]) -> list[int]:
    """Second batching key inside equal :func:`pair_lengths`: ``len(src) - len(tgt)``.

    Pairs of one length ``L`` run from a short source and an ``L``-long target to an ``L``-long
    source and a short target, so neighbours in this order pad both sides little (on the
    Multi30k benchmark batches: 6%/9% source/target padding without it, 4%/6% with it)."""
    return [len(s) - len(t) for s, t in zip(sources, targets, strict=True)]


def collate_pairs(sources: list[list[int]], targets: list[list[int]]) -> PairBatch:
    src, src_lengths = pad_batch([[*s, EOS_ID] for s in sources])
    tgt_in, _ = pad_batch([[BOS_ID, *t] for t in targets])
    tgt_out, _ = pad_batch([[*t, EOS_ID] for t in targets])
    return PairBatch(src, src_lengths, tgt_in, tgt_out)


FUSED_LOSS_MIN_VOCAB = 4096
"""Targets with at least this many classes train through
:func:`~seqattn.training.projected_loss.projected_cross_entropy`; below it, the projection and
the loss computed separately were faster (2-core EPYC: 4,000 x 2,000 81 against 85 ms, 1,500 x 300
4.6 against 5.0 ms; the dates recipe's Bahdanau model about 4% faster per update), and the
logits are small anyway."""


class TranslationTask:
    """Training batches, loss and validation for a sequence-to-sequence model.

    Args:
        train_src, train_tgt: encoded training pairs (piece ids, no special tokens).
        valid_src, valid_tgt: encoded validation pairs (for the loss).
        valid_references: the raw validation target sentences (for BLEU/chrF/exact match).
        target_tokenizer: to detokenize hypotheses.
        max_tokens: batch budget (padded tokens); max_len: longer pairs are skipped.
        seed: with the epoch, fixes each epoch's batches.
        label_smoothing: epsilon of the training loss.
        beam: validation decoding beam (1 = greedy); valid_max_sentences: decode only the first N.
        device: where batches go.
    """

    def __init__(
        self,
        *,
        train_src: list[list[int]],
        train_tgt: list[list[int]],
        valid_src: list[list[int]],
        valid_tgt: list[list[int]],
        valid_references: list[str],
        target_tokenizer: Tokenizer,
        max_tokens: int,
        max_len: int,
        seed: int,
        label_smoothing: float,
        beam: int = 1,
        valid_max_sentences: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.train_src, self.train_tgt = train_src, train_tgt
        self.valid_src, self.valid_tgt = valid_src, valid_tgt
        self.valid_references = valid_references
        self.target_tokenizer = target_tokenizer
        self.max_tokens, self.max_len, self.seed = max_tokens, max_len, seed
        self.label_smoothing = label_smoothing
        self.beam = beam
        self.valid_max_sentences = valid_max_sentences
        self.device = torch.device(device)
        self.lengths = pair_lengths(train_src, train_tgt)
        self.order = pair_order(train_src, train_tgt)
        first = self.plan_epoch(0)
        self.filtered = len(first.filtered)
        self.padding_efficiency = first.padding_efficiency
        self.signature = ""

    # -- Task protocol ---------------------------------------------------------------------------

    def plan_epoch(self, epoch: int) -> BatchPlan:
        return token_batches(
            self.lengths,
            max_tokens=self.max_tokens,
            seed=self.seed,
            epoch=epoch,
            max_len=self.max_len + 1,
            within=self.order,
        )

    def plan(self, epoch: int) -> list[list[int]]:
        return self.plan_epoch(epoch).batches

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        pairs = self._collate(batch, self.train_src, self.train_tgt)
        return self._scored(model, pairs, smoothing=self.label_smoothing)

    def validate(self, model: nn.Module) -> dict[str, float]:
        nll, tokens = 0.0, 0
        plan = token_batches(
            pair_lengths(self.valid_src, self.valid_tgt),
            max_tokens=self.max_tokens,
            shuffle=False,
            within=pair_order(self.valid_src, self.valid_tgt),
        )
        for batch in plan.batches:
            out = self._scored(model, self._collate(batch, self.valid_src, self.valid_tgt), smoothing=0.0)
            nll += float(out.nll)
            tokens += out.tokens
        loss = nll / max(tokens, 1)
        count = (
            len(self.valid_src)
            if self.valid_max_sentences is None
            else min(self.valid_max_sentences, len(self.valid_src))
        )
        hypotheses = self.translate(model, self.valid_src[:count])
        references = self.valid_references[:count]
        bleu, chrf = corpus_bleu(hypotheses, references), corpus_chrf(hypotheses, references)
        self.signature = f"BLEU {bleu.signature} | chrF {chrf.signature}"
        return {
            "loss": round(loss, 4),
            "ppl": round(math.exp(min(loss, 100.0)), 2),
            "bleu": round(bleu.score, 2),
            "chrf": round(chrf.score, 2),
            "exact_match": round(exact_match(hypotheses, references), 2),
        }

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _scored(model: nn.Module, pairs: PairBatch, *, smoothing: float) -> LossOutput:
        """The loss of a collated batch: the output projection runs on real target positions only,
        fused with the loss when the model's ``output`` layer is a plain ``nn.Linear`` with at
        least ``FUSED_LOSS_MIN_VOCAB`` outputs. A
        ``DistributedDataParallel`` wrapper shows no ``output``: it keeps the separate projection,
        inside the wrapper's forward, where its gradient hooks expect every parameter."""
        real = pairs.tgt_out.ne(PAD_ID)  # (B, T)
        target = pairs.tgt_out[real]  # (N,)
        output = getattr(model, "output", None)
        if type(output) is nn.Linear and output.out_features >= FUSED_LOSS_MIN_VOCAB:
            hidden, _ = model(
                pairs.src,
                pairs.src_lengths,
                pairs.tgt_in,
                need_attention=False,
                positions=real,
                project=False,
            )
            return projected_cross_entropy(
                hidden, output.weight, target, bias=output.bias, smoothing=smoothing
            )
        logits, _ = model(pairs.src, pairs.src_lengths, pairs.tgt_in, need_attention=False, positions=real)
        return label_smoothed_cross_entropy(logits, target, smoothing=smoothing, overwrite_logits=True)

    def translate(self, model: nn.Module, sources: list[list[int]], *, beam: int | None = None) -> list[str]:
        """Detokenized best hypotheses for encoded sources (without EOS; it is added here)."""
        beam = self.beam if beam is None else beam
        search = greedy_search if beam == 1 else beam_search
        options = {} if beam == 1 else {"beam_size": beam}
        results = translate_batches(
            model, [[*s, EOS_ID] for s in sources], max_tokens=self.max_tokens, search=search, **options
        )
        return [self.target_tokenizer.decode(nbest[0].tokens) if nbest else "" for nbest in results]

    def _collate(self, batch: list[int], sources: list[list[int]], targets: list[list[int]]) -> PairBatch:
        return collate_pairs([sources[i] for i in batch], [targets[i] for i in batch]).to(self.device)
