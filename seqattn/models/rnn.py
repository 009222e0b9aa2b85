"""LSTM encoder-decoder with attention, in Bahdanau's and Luong's styles.

Encoder: embeddings -> a bidirectional multi-layer LSTM over each source's own positions (no
work on padding, :mod:`seqattn.models.lstm`). Its final states, both directions concatenated,
initialise the decoder through a ``tanh`` bridge.

Decoder, one target position per step, attention from :mod:`seqattn.attention` with any score:

* **Bahdanau** (Bahdanau et al. 2015): the *previous* decoder state queries the source; the
  context is fed into the LSTM step together with the previous token's embedding.
* **Luong** (Luong et al. 2015, global attention): the LSTM steps first; its new state queries the
  source and the attentional hidden state ``h~ = tanh(W_c [c; h])`` predicts the token. With
  input feeding, ``h~`` of the previous step is concatenated to the next step's input.

Both styles end in the same attentional vector ``o_t = tanh(W [c_t; h_t])`` (for Bahdanau this is
the readout layer) and the output projection. The encoder states are prepared once per source
for the score (``U h_j`` for the additive score), so a decoder step only scores its query.

Teacher forcing runs the same step function position by position -- the recurrence requires it
-- and applies the output projection once to all positions.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size, ``H``
encoder hidden size per direction, ``D`` decoder hidden size, ``V`` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from seqattn.attention import PreparedKeys, Score, attend, build_score, padding_mask
from seqattn.data.tokenizer import PAD_ID
from seqattn.dropout import Dropout
from seqattn.errors import ConfigError
from seqattn.models.groups import regroup
from seqattn.models.lstm import fp32_cpu_training, run_lstm
from seqattn.models.protocol import StepOutput

__all__ = ["RNNEncoder", "RNNSeq2Seq", "RNNState"]

STYLES = ("bahdanau", "luong")


class RNNEncoder(nn.Module):
    """Embeddings and a bidirectional LSTM over each source's own length.

    The LSTM runs through :func:`~seqattn.models.lstm.run_lstm`: packed for inference; in fp32
    CPU training once per source length, unpadded, where that pays (oneDNN's kernels instead of
    torch's packed ones; the same results up to float rounding).
    """

    def __init__(
        self, vocab_size: int, *, embed_dim: int, hidden_size: int, num_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(dropout)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``(B, S)`` ids -> states ``(B, S, 2H)`` (zeros on padding) and final ``(h, c)``, each
        ``(L, B, 2H)`` with both directions concatenated."""
        embedded = self.dropout(self.embed(src))  # (B, S, E)
        states, (h, c) = run_lstm(self.lstm, embedded, lengths)  # (B, S, 2H), (2L, B, H)
        layers = self.lstm.num_layers

        def merge(x: Tensor) -> Tensor:  # (L*2, B, H) -> (L, B, 2H)
            x = x.view(layers, 2, x.size(1), x.size(2))
            return torch.cat([x[:, 0], x[:, 1]], dim=-1)

        return self.dropout(states), (merge(h), merge(c))


@dataclass(frozen=True)
class RNNState:
    """Decoding state: the encoded source (once per sentence) and the decoder's recurrent state
    (per hypothesis row; rows ``[g*i, g*(i+1))`` attend over memory row ``i``, ``g = group``,
    see :mod:`seqattn.models.groups`)."""

    memory: Tensor  # (M, S, 2H) encoder states: the values
    keys: PreparedKeys  # (M, S, *) encoder states prepared for the score
    mask: Tensor  # (M, S) True at real source positions
    hidden: tuple[Tensor, Tensor]  # (L, B, D) each, B = M * group
    feed: Tensor  # (B, D) previous attentional vector (zeros before the first step)
    group: int = 1

    def index_select(self, index: Tensor) -> RNNState:
        take, group = regroup(index, group=self.group, memory_rows=self.memory.size(0))
        return RNNState(
            memory=self.memory if take is None else self.memory.index_select(0, take),
            keys=self.keys if take is None else self.keys.index_select(0, take),
            mask=self.mask if take is None else self.mask.index_select(0, take),
            hidden=(self.hidden[0].index_select(1, index), self.hidden[1].index_select(1, index)),
            feed=self.feed.index_select(0, index),
            group=group,
        )


class RNNSeq2Seq(nn.Module):
    """Attentive LSTM encoder-decoder implementing the :mod:`~seqattn.models.protocol`.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes.
        embed_dim: embedding size (source and target).
        hidden_size: encoder LSTM size per direction.
        decoder_size: decoder LSTM size (also the attentional vector's size).
        num_layers: encoder layers; decoder_layers defaults to the same number.
        style: ``bahdanau`` or ``luong``.
        score: attention score name (see :func:`~seqattn.attention.build_score`).
        input_feeding: Luong's input feeding (feed the previous attentional vector into the step;
            for Bahdanau it adds the previous attentional vector to the step input too).
        dropout: on embeddings, between LSTM layers and on the attentional vector.
        tie_embeddings: share the decoder's input embedding and output projection (needs
            ``embed_dim == decoder_size``).
        max_source_len: needed by the ``location`` score only.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        embed_dim: int = 256,
        hidden_size: int = 256,
        decoder_size: int = 512,
        num_layers: int = 1,
        decoder_layers: int | None = None,
        style: str = "luong",
        score: str = "general",
        input_feeding: bool = True,
        dropout: float = 0.1,
        tie_embeddings: bool = False,
        max_source_len: int | None = None,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ConfigError(f"model style must be one of {', '.join(STYLES)}, got {style!r}")
        memory_dim = 2 * hidden_size
        if score in ("dot", "scaled_dot") and memory_dim != decoder_size:
            raise ConfigError(
                f"the {score} score needs decoder_size == 2 * hidden_size ({decoder_size} != {memory_dim}); "
                "use the general, concat or additive score"
            )
        if tie_embeddings and embed_dim != decoder_size:
            raise ConfigError(
                f"tie_embeddings needs embed_dim == decoder_size ({embed_dim} != {decoder_size})"
            )
        self.style = style
        self.input_feeding = input_feeding
        self.decoder_size = decoder_size
        decoder_layers = decoder_layers or num_layers
        self.encoder = RNNEncoder(
            src_vocab, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout
        )
        self.bridge = nn.Linear(memory_dim, decoder_size)  # encoder final state -> decoder init
        self.decoder_layers = decoder_layers
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_dim, padding_idx=PAD_ID)
        step_input = (
            embed_dim + (memory_dim if style == "bahdanau" else 0) + (decoder_size if input_feeding else 0)
        )
        self.lstm = nn.LSTM(
            step_input,
            decoder_size,
            num_layers=decoder_layers,
            dropout=dropout if decoder_layers > 1 else 0.0,
        )
        self.score: Score = build_score(
            score, query_dim=decoder_size, key_dim=memory_dim, max_len=max_source_len
        )
        self.attentional = nn.Linear(memory_dim + decoder_size, decoder_size, bias=False)  # W_c [c; h]
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(decoder_size, tgt_vocab)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    # -- protocol --------------------------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> RNNState:
        memory, (h, c) = self.encoder(src, src_lengths)
        h0, c0 = torch.tanh(self.bridge(h)), torch.tanh(self.bridge(c))  # (Lenc, B, D)
        h0, c0 = self._match_layers(h0), self._match_layers(c0)
        return RNNState(
            memory=memory,
            keys=PreparedKeys(self.score.prepare_keys(memory), self.score),
            mask=padding_mask(src_lengths, max_len=src.size(1)),
            hidden=(h0.contiguous(), c0.contiguous()),
            feed=memory.new_zeros(src.size(0), self.decoder_size),
        )

    def step(
        self, prev_tokens: Tensor, state: RNNState, *, output: nn.Module | None = None
    ) -> tuple[StepOutput, RNNState]:
        embedded = self.dropout(self.tgt_embed(prev_tokens))  # (B, E)
        vector, attention, state = self._step(embedded, state)
        return StepOutput((output or self.output)(vector), attention), state

    def reorder_state(self, state: RNNState, index: Tensor) -> RNNState:
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
    ) -> tuple[Tensor, Tensor]:
        """``(B, T)`` target inputs -> logits ``(B, T, V)`` (``(N, V)`` for the ``(B, T)``
        mask ``positions``; the states ``self.output`` takes with ``project=False``) and
        attention ``(B, T, S)`` (always computed: the decoder needs it anyway)."""
        state = self.encode(src, src_lengths)
        # All positions' embeddings at once: one lookup, and one (V, E) embedding gradient in the
        # backward pass instead of one per position (each a zero-filled V x E tensor to add up).
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        vectors, attentions = [], []
        for t in range(tgt_in.size(1)):
            vector, attention, state = self._step(embedded[:, t], state)
            vectors.append(vector)
            attentions.append(attention)
        hidden = torch.stack(vectors, dim=1)  # (B, T, D)
        if positions is not None:
            hidden = hidden[positions]  # (N, D)
        logits = self.output(hidden) if project else hidden  # one projection for all steps
        return logits, torch.stack(attentions, dim=1)

    def attention_heads(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: the attention as ``(B, 1, 1, T, S)`` -- one layer with one head, the
        same shape the Transformer gives for all its layers and heads."""
        return self.forward(src, src_lengths, tgt_in)[1][:, None, None]

    # -- internals -------------------------------------------------------------------------------

    def _match_layers(self, x: Tensor) -> Tensor:
        """Encoder final states for each decoder layer: reuse the top ones if counts differ."""
        if x.size(0) == self.decoder_layers:
            return x
        if x.size(0) > self.decoder_layers:
            return x[-self.decoder_layers :]
        return torch.cat([x, x[-1:].expand(self.decoder_layers - x.size(0), -1, -1)], dim=0)

    def _attend(self, query: Tensor, state: RNNState) -> tuple[Tensor, Tensor]:
        """``(B, D)`` query -> context ``(B, 2H)`` and weights ``(B, S)``; the ``group`` rows of a
        sentence are that sentence's ``group`` query positions, so its memory is read once."""
        rows = query.size(0)
        memory_rows = state.memory.size(0)
        context, weights = attend(
            query.reshape(memory_rows, rows // memory_rows, -1),  # (M, g, D)
            state.keys,
            state.memory,
            score=self.score,
            mask=state.mask[:, None, :],
            need_weights=True,
        )
        assert weights is not None
        return context.reshape(rows, -1), weights.reshape(rows, -1)

    def _run_lstm(self, x: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The decoder LSTM over one position ``(1, B, in)``.

        For fp32 training on CPU this bypasses oneDNN: torch picks oneDNN's RNN primitive for
        fp32 CPU tensors, and for one position of the benchmark RNN (about 250 sentences, 2 x 256)
        its backward took 3.9 ms a layer; torch's own LSTM cell made a whole training step
        1.03-1.05x faster (three paired A/Bs). Inference (where the native cell was 0.93x) and
        reduced precision keep the default.
        """
        if fp32_cpu_training(self, x):
            enabled = torch._C._get_mkldnn_enabled()  # torch.backends.mkldnn.flags() warns about TF32
            torch._C._set_mkldnn_enabled(False)
            try:
                return self.lstm(x, hidden)
            finally:
                torch._C._set_mkldnn_enabled(enabled)
        return self.lstm(x, hidden)

    def _step(self, embedded: Tensor, state: RNNState) -> tuple[Tensor, Tensor, RNNState]:
        """One position: the previous tokens' embeddings ``(B, E)`` (dropout applied) ->
        attentional vector ``(B, D)``, attention ``(B, S)``, state."""
        inputs = [embedded]
        if self.style == "bahdanau":
            context, weights = self._attend(state.hidden[0][-1], state)  # query: previous top state
            inputs.append(context)
        if self.input_feeding:
            inputs.append(state.feed)
        output, hidden = self._run_lstm(torch.cat(inputs, dim=-1).unsqueeze(0), state.hidden)  # (1, B, D)
        top = output.squeeze(0)  # (B, D)
        if self.style == "luong":
            context, weights = self._attend(top, state)  # query: the new state
        vector = self.dropout(torch.tanh(self.attentional(torch.cat([context, top], dim=-1))))  # (B, D)
        return vector, weights, replace(state, hidden=hidden, feed=vector)
