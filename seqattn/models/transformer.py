"""Transformer encoder-decoder (Vaswani et al. 2017) built from the core's MultiHeadAttention.

* pre-norm (Wang et al. 2019; the default, stable without warm-up tricks) or post-norm (the
  original);
* positions: ``sinusoidal`` (the original), ``learned`` (Gehring et al. 2017), or ``relative``
  (Shaw et al. 2018: clipped relative distances inside the self-attention scores, see
  :class:`~seqattn.attention.RelativeScaledDot`; cross-attention stays scaled dot-product). With
  absolute positions every attention is scaled dot-product, so training and decoding without
  weights run on the fused SDPA kernels;
* tied embeddings: ``none``, ``decoder`` (target input embedding = output projection, Press &
  Wolf 2017) or ``all`` (source embedding too; needs one joint vocabulary);
* incremental decoding: every decoder self-attention keeps a :class:`KVCache` (under beam
  search one pool of entries per sentence, whose reorders move only membership masks, see
  there), and each layer's cross-attention keys/values are projected once per source
  (:class:`ProjectedMemory`).

The attention a step reports (for alignments and plots) is the cross-attention of one decoder
layer averaged over a set of heads: ``alignment_layer`` (default: the penultimate layer, which
Garg et al. 2019 found to align best; the only layer of a one-layer decoder) and
``alignment_heads`` (default: all). Both are plain attributes and may be changed after loading.
:meth:`TransformerSeq2Seq.attention_heads` gives every layer's and head's cross-attention at
once (per-head plots; choosing the layer that aligns best for a language pair).

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` model size, ``V``
vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqattn.attention import (
    KVCache,
    MultiHeadAttention,
    ProjectedMemory,
    RelativeScaledDot,
    key_mask,
    padding_mask,
)
from seqattn.data.tokenizer import PAD_ID
from seqattn.dropout import Dropout, relu_dropout
from seqattn.errors import ConfigError
from seqattn.models.groups import regroup
from seqattn.models.protocol import StepOutput

__all__ = ["TransformerSeq2Seq", "TransformerState"]

POSITIONS = ("sinusoidal", "learned", "relative")
TIES = ("none", "decoder", "all")


def sinusoidal_table(max_len: int, dim: int) -> Tensor:
    """``(max_len, dim)`` sin/cos position table (Vaswani et al. 2017, section 3.5)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class Embedding(nn.Module):
    """Token embedding times sqrt(D), plus absolute positions (none for ``relative``)."""

    def __init__(self, vocab_size: int, dim: int, *, positions: str, max_len: int, dropout: float) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        nn.init.normal_(self.tokens.weight, std=dim**-0.5)
        nn.init.zeros_(self.tokens.weight[PAD_ID])
        self.scale = math.sqrt(dim)
        self.positions = positions
        self.max_len = max_len
        if positions == "learned":
            self.learned = nn.Embedding(max_len, dim)
            nn.init.normal_(self.learned.weight, std=dim**-0.5)
        elif positions == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, ids: Tensor, *, offset: int = 0) -> Tensor:
        """``(B, T)`` ids at positions ``offset ..`` -> ``(B, T, D)``."""
        x = self.tokens(ids) * self.scale
        if self.positions != "relative":
            end = offset + ids.size(1)
            if end > self.max_len:
                raise ValueError(f"sequence of {end} positions exceeds max_positions={self.max_len}")
            if self.positions == "learned":
                x = x + self.learned.weight[offset:end]
            else:
                x = x + self.table[offset:end]
        return self.dropout(x)


class FeedForward(nn.Sequential):
    """``Linear -> ReLU -> Dropout -> Linear`` (the modules, and so the state dict, of that
    sequence); in training the ReLU and the dropout run as one operation (:func:`relu_dropout`)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        expand, activation, drop, contract = self
        if drop.training:
            return contract(relu_dropout(expand(x), drop.p))
        return contract(drop(activation(expand(x))))


class EncoderLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        ffn: int,
        *,
        dropout: float,
        attn_dropout: float,
        pre_norm: bool,
        relative: int,
    ) -> None:
        super().__init__()
        score = RelativeScaledDot(dim // heads, max_distance=relative) if relative else None
        self.self_attn = MultiHeadAttention(dim, heads, score=score, dropout=attn_dropout)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            x = self.dropout.add(x, self.self_attn(h, mask=mask)[0])
            return self.dropout.add(x, self.ffn(self.norm2(x)))
        x = self.norm1(self.dropout.add(x, self.self_attn(x, mask=mask)[0]))
        return self.norm2(self.dropout.add(x, self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        ffn: int,
        *,
        dropout: float,
        attn_dropout: float,
        pre_norm: bool,
        relative: int,
    ) -> None:
        super().__init__()
        score = RelativeScaledDot(dim // heads, max_distance=relative) if relative else None
        self.self_attn = MultiHeadAttention(dim, heads, score=score, dropout=attn_dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout=attn_dropout)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(
        self,
        x: Tensor,
        memory: ProjectedMemory,
        memory_mask: Tensor,
        *,
        cache: KVCache | None = None,
        need_weights: bool = False,
        group: int = 1,
    ) -> tuple[Tensor, Tensor | None]:
        """``(B, T, D)`` -> ``(B, T, D)`` and, if asked, cross-attention weights ``(B, H, T, S)``.

        ``group > 1`` (decoding steps, ``T = 1``): ``memory`` has one row per ``group`` rows of
        ``x`` (:mod:`seqattn.models.groups`)."""
        if self.pre_norm:
            x = self.dropout.add(x, self.self_attn(self.norm1(x), causal=True, cache=cache)[0])
            attended, weights = self._cross(self.norm2(x), memory, memory_mask, need_weights, group)
            x = self.dropout.add(x, attended)
            return self.dropout.add(x, self.ffn(self.norm3(x))), weights
        x = self.norm1(self.dropout.add(x, self.self_attn(x, causal=True, cache=cache)[0]))
        attended, weights = self._cross(x, memory, memory_mask, need_weights, group)
        x = self.norm2(self.dropout.add(x, attended))
        return self.norm3(self.dropout.add(x, self.ffn(x))), weights

    def _cross(
        self, x: Tensor, memory: ProjectedMemory, memory_mask: Tensor, need_weights: bool, group: int
    ) -> tuple[Tensor, Tensor | None]:
        """Cross-attention; a group's rows become query positions of their shared memory row."""
        if group == 1:
            return self.cross_attn(x, memory, mask=memory_mask, need_weights=need_weights)
        rows, length, dim = x.shape
        if length != 1:
            raise ValueError(f"grouped cross-attention needs one position per row, got {length}")
        attended, weights = self.cross_attn(
            x.reshape(rows // group, group, dim), memory, mask=memory_mask, need_weights=need_weights
        )  # (M, g, D), (M, H, g, S)
        if weights is not None:
            weights = weights.transpose(1, 2).reshape(rows, weights.size(1), 1, weights.size(-1))
        return attended.reshape(rows, 1, dim), weights


@dataclass
class TransformerState:
    """Decoding state: per-layer projected memories (once per sentence) and self-attention
    caches (per hypothesis row; rows ``[g*i, g*(i+1))`` attend over memory row ``i``,
    ``g = group``, see :mod:`seqattn.models.groups`)."""

    memories: list[ProjectedMemory]  # (M, H, S, Dh) keys and values per layer
    memory_mask: Tensor  # (M, 1, 1, S)
    caches: list[KVCache]  # (B, H, t, Dh), B = M * group; under beam search pools (M, H, P, Dh)
    position: int = 0
    group: int = 1

    def index_select(self, index: Tensor) -> TransformerState:
        take, group = regroup(index, group=self.group, memory_rows=self.memory_mask.size(0))
        within = group if group == self.group else 1  # beams moved within their sentences
        for cache in self.caches:
            cache.reorder(index, group=within)
        return TransformerState(
            memories=self.memories if take is None else [m.index_select(0, take) for m in self.memories],
            memory_mask=self.memory_mask if take is None else self.memory_mask.index_select(0, take),
            caches=self.caches,
            position=self.position,
            group=group,
        )


class TransformerSeq2Seq(nn.Module):
    """Transformer encoder-decoder implementing the :mod:`~seqattn.models.protocol`.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes (equal for ``tie="all"``).
        d_model, num_heads, ffn_dim: sizes.
        encoder_layers, decoder_layers: depths.
        dropout: on embeddings, sublayer outputs and inside the FFN; attn_dropout on weights.
        pre_norm: pre-norm (default) or post-norm residual blocks.
        positions: ``sinusoidal``, ``learned`` or ``relative``.
        max_positions: longest sequence for absolute positions.
        relative_distance: clipping distance for relative positions.
        tie: ``none``, ``decoder`` or ``all``.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        d_model: int = 256,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        pre_norm: bool = True,
        positions: str = "sinusoidal",
        max_positions: int = 1024,
        relative_distance: int = 16,
        tie: str = "decoder",
    ) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ConfigError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
        if tie not in TIES:
            raise ConfigError(f"tie must be one of {', '.join(TIES)}, got {tie!r}")
        if tie == "all" and src_vocab != tgt_vocab:
            raise ConfigError(
                f"tie='all' needs one joint vocabulary (source {src_vocab} != target {tgt_vocab})"
            )
        if d_model % num_heads:
            raise ConfigError(f"d_model ({d_model}) must be a multiple of num_heads ({num_heads})")
        relative = relative_distance if positions == "relative" else 0
        layer_args = {
            "dropout": dropout,
            "attn_dropout": attn_dropout,
            "pre_norm": pre_norm,
            "relative": relative,
        }
        self.src_embed = Embedding(
            src_vocab, d_model, positions=positions, max_len=max_positions, dropout=dropout
        )
        self.tgt_embed = Embedding(
            tgt_vocab, d_model, positions=positions, max_len=max_positions, dropout=dropout
        )
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, num_heads, ffn_dim, **layer_args) for _ in range(encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, **layer_args) for _ in range(decoder_layers)
        )
        # Pre-norm stacks end with a norm; post-norm layers already end normalised.
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.output = nn.Linear(d_model, tgt_vocab, bias=False)
        nn.init.normal_(self.output.weight, std=d_model**-0.5)
        if tie in ("decoder", "all"):
            self.output.weight = self.tgt_embed.tokens.weight
        if tie == "all":
            self.src_embed.tokens.weight = self.tgt_embed.tokens.weight
        self.alignment_layer = -2 if decoder_layers > 1 else -1
        self.alignment_heads: list[int] | None = None

    # -- protocol --------------------------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerState:
        mask = key_mask(padding_mask(src_lengths, max_len=src.size(1)))  # (B, 1, 1, S)
        memory = self._encode(src, mask)
        return TransformerState(
            memories=[layer.cross_attn.project_memory(memory) for layer in self.decoder],
            memory_mask=mask,
            caches=[KVCache(grouped=layer.self_attn.reads_grouped_cache) for layer in self.decoder],
        )

    def step(
        self, prev_tokens: Tensor, state: TransformerState, *, output: nn.Module | None = None
    ) -> tuple[StepOutput, TransformerState]:
        x = self.tgt_embed(prev_tokens[:, None], offset=state.position)  # (B, 1, D)
        x, attention = self._decode(
            x, state.memories, state.memory_mask, caches=state.caches, group=state.group
        )
        state.position += 1
        assert attention is not None
        return StepOutput((output or self.output)(x[:, 0]), attention[:, 0]), state

    def reorder_state(self, state: TransformerState, index: Tensor) -> TransformerState:
        return state.index_select(index)

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
        """``(B, T)`` target inputs -> logits ``(B, T, V)`` (``(N, V)`` for the ``(B, T)`` mask
        ``positions``; the states ``self.output`` takes, ``D`` wide, with ``project=False``) and
        attention ``(B, T, S)`` (or ``None`` with ``need_attention=False``, which keeps every
        layer on the fused kernels)."""
        x, attention = self._teacher_forced(
            src, src_lengths, tgt_in, attention="alignment" if need_attention else "none"
        )
        if positions is not None:
            x = x[positions]  # (N, D)
        return (self.output(x) if project else x), attention

    def attention_heads(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: the cross-attention of every decoder layer and head,
        ``(B, L, H, T, S)`` (``L`` decoder layers, ``H`` heads; zero on padded source positions).

        ``attention_heads(...)[:, alignment_layer, alignment_heads].mean(2)`` is the attention
        :meth:`forward` reports."""
        attention = self._teacher_forced(src, src_lengths, tgt_in, attention="all")[1]
        assert attention is not None
        return attention

    # -- internals -------------------------------------------------------------------------------

    def _teacher_forced(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, attention: str
    ) -> tuple[Tensor, Tensor | None]:
        mask = key_mask(padding_mask(src_lengths, max_len=src.size(1)))
        memory = self._encode(src, mask)
        memories = [layer.cross_attn.project_memory(memory) for layer in self.decoder]
        return self._decode(self.tgt_embed(tgt_in), memories, mask, attention=attention)

    def _encode(self, src: Tensor, mask: Tensor) -> Tensor:
        x = self.src_embed(src)  # (B, S, D)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def _decode(
        self,
        x: Tensor,
        memories: list[ProjectedMemory],
        memory_mask: Tensor,
        *,
        caches: list[KVCache] | None = None,
        attention: str = "alignment",
        group: int = 1,
    ) -> tuple[Tensor, Tensor | None]:
        """Run the decoder stack; returns ``(B, T, D)`` and, by ``attention``, nothing
        (``"none"``), the alignment attention ``(B, T, S)`` (``"alignment"``: the chosen layer
        averaged over the chosen heads) or every layer's and head's ``(B, L, H, T, S)`` (``"all"``).
        """
        chosen = self.alignment_layer % len(self.decoder)
        selected: Tensor | None = None
        every: list[Tensor] = []
        for i, layer in enumerate(self.decoder):
            cache = caches[i] if caches is not None else None
            wanted = attention == "all" or (attention == "alignment" and i == chosen)
            x, weights = layer(x, memories[i], memory_mask, cache=cache, need_weights=wanted, group=group)
            if weights is None:
                continue
            every.append(weights)  # (B, H, T, S)
            if i == chosen:
                heads = self.alignment_heads
                selected = (weights if heads is None else weights[:, heads]).mean(dim=1)
        if attention == "all":
            return self.decoder_norm(x), torch.stack(every, dim=1)
        return self.decoder_norm(x), selected
