"""The one place where a model config becomes constructor arguments."""

from __future__ import annotations

import dataclasses

from torch import nn

from seqattn.config import ClassifierConfig, RNNConfig, TransformerConfig
from seqattn.models.classifier import AttentionClassifier, HierarchicalClassifier
from seqattn.models.rnn import RNNSeq2Seq
from seqattn.models.transformer import TransformerSeq2Seq

__all__ = ["build_classifier", "build_seq2seq"]


def build_seq2seq(config: RNNConfig | TransformerConfig, *, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """A freshly initialised sequence-to-sequence model for ``config``."""
    options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "arch"}
    if isinstance(config, RNNConfig):
        return RNNSeq2Seq(src_vocab, tgt_vocab, **options)
    if isinstance(config, TransformerConfig):
        return TransformerSeq2Seq(src_vocab, tgt_vocab, **options)
    raise TypeError(f"not a sequence-to-sequence model config: {type(config).__name__}")


def build_classifier(config: ClassifierConfig, *, vocab_size: int, num_classes: int) -> nn.Module:
    """A freshly initialised (flat or hierarchical) attention-pooling classifier."""
    skip = {"arch", "hierarchical", "max_sentences", "max_sentence_len"}
    options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in skip}
    cls = HierarchicalClassifier if config.hierarchical else AttentionClassifier
    return cls(vocab_size, num_classes, **options)
