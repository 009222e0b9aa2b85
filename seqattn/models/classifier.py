"""Attention-pooling text classifiers, flat and hierarchical.

Flat (:class:`AttentionClassifier`): embeddings -> an encoder (a BiLSTM, a Transformer encoder
from the attention core, or none) -> :class:`~seqattn.attention.AttentionPooling` -> a linear
output layer. The pooling is the text-classification attention: the encoder states are keys and
values and learned vectors are the queries (scaled dot product by default, additive as in Yang
et al. 2016, several queries as in Lin et al. 2017). Padding receives exactly zero weight.

Hierarchical (:class:`HierarchicalClassifier`, Yang et al. 2016): the same word-level encoder
and pooling turn every sentence of a document into a vector, a sentence-level encoder and
pooling turn the sentence vectors into a document vector. It returns word weights inside each
sentence and sentence weights inside the document.

Shapes: ``B`` batch, ``T`` tokens, ``S`` sentences, ``D`` encoder output size, ``Q`` pooling
queries, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqattn.attention import AttentionPooling, build_score, key_mask, padding_mask
from seqattn.data.tokenizer import PAD_ID, UNK_ID
from seqattn.dropout import Dropout
from seqattn.errors import ConfigError
from seqattn.models.lstm import run_lstm
from seqattn.models.transformer import EncoderLayer, sinusoidal_table

__all__ = ["AttentionClassifier", "ClassifierOutput", "HierarchicalClassifier", "SequenceEncoder"]

ENCODERS = ("bilstm", "transformer", "none")


@dataclass(frozen=True)
class ClassifierOutput:
    logits: Tensor
    """``(B, C)`` class scores."""
    weights: Tensor
    """``(B, Q, T)`` token weights (flat) or ``(B, S, Q, T)`` word weights (hierarchical)."""
    sentence_weights: Tensor | None = None
    """``(B, Q, S)`` sentence weights (hierarchical only)."""
    embedded: Tensor | None = None
    """The token embeddings the encoder read (after word dropout, before dropout): ``(B, T, E)``
    (flat) or ``(N, T, E)`` for the ``N`` real sentences (hierarchical). Adversarial training
    differentiates the loss with respect to them and runs again on a perturbed copy."""


class SequenceEncoder(nn.Module):
    """Contextualise ``(B, T, E)`` vectors: a BiLSTM, Transformer encoder layers, or nothing."""

    def __init__(
        self, input_dim: int, *, kind: str, hidden_size: int, num_layers: int, num_heads: int, dropout: float
    ) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ConfigError(f"model.encoder: expected one of {', '.join(ENCODERS)}, got {kind!r}")
        self.kind = kind
        if kind == "bilstm":
            self.lstm = nn.LSTM(
                input_dim,
                hidden_size,
                num_layers=num_layers,
                batch_first=True,
                bidirectional=True,
                dropout=dropout if num_layers > 1 else 0.0,
            )
            self.output_dim = 2 * hidden_size
        elif kind == "transformer":
            if input_dim % num_heads:
                raise ConfigError(
                    f"model.embed_dim ({input_dim}) must be a multiple of num_heads ({num_heads})"
                )
            self.register_buffer("positions", sinusoidal_table(4096, input_dim), persistent=False)
            self.layers = nn.ModuleList(
                EncoderLayer(
                    input_dim,
                    num_heads,
                    4 * input_dim,
                    dropout=dropout,
                    attn_dropout=0.0,
                    pre_norm=True,
                    relative=0,
                )
                for _ in range(num_layers)
            )
            self.norm = nn.LayerNorm(input_dim)
            self.output_dim = input_dim
        else:
            self.output_dim = input_dim

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``(B, T, E)`` and ``(B,)`` lengths (>= 1) -> ``(B, T, D)``; padding rows are zeros."""
        if self.kind == "bilstm":
            states, _ = run_lstm(self.lstm, x, lengths)  # by length in fp32 CPU training
            return states
        if self.kind == "transformer":
            mask = key_mask(padding_mask(lengths, max_len=x.size(1)))  # (B, 1, 1, T)
            h = x + self.positions[: x.size(1)]
            for layer in self.layers:
                h = layer(h, mask)
            return self.norm(h) * padding_mask(lengths, max_len=x.size(1)).unsqueeze(-1)
        return x


def _pooling(dim: int, *, score: str, queries: int, dropout: float) -> AttentionPooling:
    return AttentionPooling(
        dim, num_queries=queries, score=build_score(score, query_dim=dim), dropout=dropout
    )


class AttentionClassifier(nn.Module):
    """Embeddings -> encoder -> attention pooling -> output layer.

    Args:
        vocab_size, num_classes: sizes.
        embed_dim: embedding size.
        encoder: ``bilstm``, ``transformer`` or ``none``.
        hidden_size: BiLSTM size per direction.
        num_layers: encoder layers; num_heads: Transformer encoder heads.
        pooling_score: ``scaled_dot`` (default) or ``additive`` (or any core score).
        pooling_queries: number of learned queries (their pooled vectors are concatenated).
        dropout: on embeddings, encoder outputs and the pooled vector.
        word_dropout: in training, each real token is replaced by ``<unk>`` with this
            probability (word dropout, Iyyer et al. 2015; Bowman et al. 2016): the model cannot
            lean on a few memorised words, which matters on small datasets.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        embed_dim: int = 128,
        encoder: str = "bilstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        num_heads: int = 4,
        pooling_score: str = "scaled_dot",
        pooling_queries: int = 1,
        dropout: float = 0.3,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.word_dropout = word_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.encoder = SequenceEncoder(
            embed_dim,
            kind=encoder,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
        )
        dim = self.encoder.output_dim
        self.pooling = _pooling(dim, score=pooling_score, queries=pooling_queries, dropout=0.0)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(pooling_queries * dim, num_classes)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, E)`` embeddings, with word dropout in training."""
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = ids.masked_fill(dropped & ids.ne(PAD_ID), UNK_ID)
        return self.embed(ids)

    def encode(
        self, ids: Tensor, lengths: Tensor, *, embedded: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, T)`` ids -> pooled ``(B, Q*D)``, weights ``(B, Q, T)`` and the embeddings used.

        ``embedded`` (``(B, T, E)``) replaces the embedding lookup (a perturbed copy of an earlier
        call's embeddings, for adversarial training).
        """
        lengths = lengths.clamp(min=1)  # an empty text attends to its single pad position
        if embedded is None:
            embedded = self.embed_tokens(ids)
        states = self.dropout(self.encoder(self.dropout(embedded), lengths))  # (B, T, D)
        pooled, weights = self.pooling(states, mask=padding_mask(lengths, max_len=ids.size(1)))  # (B, Q, D)
        return pooled.flatten(1), weights, embedded

    def forward(self, ids: Tensor, lengths: Tensor, *, embedded: Tensor | None = None) -> ClassifierOutput:
        pooled, weights, embedded = self.encode(ids, lengths, embedded=embedded)
        return ClassifierOutput(self.output(self.dropout(pooled)), weights, embedded=embedded)


class HierarchicalClassifier(nn.Module):
    """Word attention inside each sentence, then sentence attention (Yang et al. 2016).

    Same arguments as :class:`AttentionClassifier`, applied at both levels (the sentence-level
    encoder is a BiLSTM/Transformer/none over sentence vectors).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        embed_dim: int = 128,
        encoder: str = "bilstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        num_heads: int = 4,
        pooling_score: str = "scaled_dot",
        pooling_queries: int = 1,
        dropout: float = 0.3,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.words = AttentionClassifier(
            vocab_size,
            1,
            embed_dim=embed_dim,
            encoder=encoder,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            pooling_score=pooling_score,
            pooling_queries=1,
            dropout=dropout,
            word_dropout=word_dropout,
        )
        del self.words.output  # only its encoder and pooling are used
        word_dim = self.words.encoder.output_dim
        self.sentences = SequenceEncoder(
            word_dim,
            kind=encoder,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
        )
        dim = self.sentences.output_dim
        self.pooling = _pooling(dim, score=pooling_score, queries=pooling_queries, dropout=0.0)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(pooling_queries * dim, num_classes)

    def forward(
        self,
        ids: Tensor,
        word_lengths: Tensor,
        sentence_counts: Tensor,
        *,
        embedded: Tensor | None = None,
    ) -> ClassifierOutput:
        """``ids`` ``(B, S, T)``, ``word_lengths`` ``(B, S)`` (0 for missing sentences),
        ``sentence_counts`` ``(B,)``; ``embedded`` ``(N, T, E)`` replaces the embeddings of the
        ``N`` real sentences (see :attr:`ClassifierOutput.embedded`)."""
        b, s, t = ids.shape
        present = padding_mask(sentence_counts.clamp(min=1), max_len=s)  # (B, S)
        flat_ids = ids[present]  # (N, T): only real sentences are encoded
        vectors, word_weights, embedded = self.words.encode(
            flat_ids, word_lengths[present], embedded=embedded
        )  # (N, D), (N, 1, T), (N, T, E)
        sentences = vectors.new_zeros(b, s, vectors.size(-1))
        sentences[present] = vectors
        weights = word_weights.new_zeros(b, s, 1, t)
        weights[present] = word_weights
        counts = sentence_counts.clamp(min=1)
        states = self.dropout(self.sentences(sentences, counts))  # (B, S, D)
        pooled, sentence_weights = self.pooling(states, mask=present)  # (B, Q, D), (B, Q, S)
        logits = self.output(self.dropout(pooled.flatten(1)))
        return ClassifierOutput(logits, weights, sentence_weights, embedded)
