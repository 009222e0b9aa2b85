"""The tiny real models that the decoding equivalence tests build with
:func:`~seqattn.models.build.build_seq2seq`: both RNN attention styles and a Transformer, over a
shared vocabulary of ``VOCAB`` ids, dropout off."""

from __future__ import annotations

from seqattn.config import RNNConfig, TransformerConfig

VOCAB = 20
CONFIGS = {
    "rnn-bahdanau": RNNConfig(
        style="bahdanau", score="additive", embed_dim=16, hidden_size=16, decoder_size=32, dropout=0.0
    ),
    "rnn-luong": RNNConfig(
        style="luong",
        score="general",
        embed_dim=16,
        hidden_size=16,
        decoder_size=32,
        num_layers=2,
        dropout=0.0,
    ),
    "transformer": TransformerConfig(
        d_model=16, num_heads=4, ffn_dim=32, encoder_layers=2, decoder_layers=2, dropout=0.0, tie="all"
    ),
}
