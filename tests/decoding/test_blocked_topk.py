"""blocked_topk: exactly topk's values (and indices of those values), and beam search unchanged."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.config import TransformerConfig
from seqattn.data.batching import pad_batch
from seqattn.decoding import beam as beam_module
from seqattn.decoding import beam_search
from seqattn.models.build import build_seq2seq


@settings(max_examples=80, deadline=None)
@given(
    rows=st.integers(1, 5),
    n=st.integers(1, 6000),
    k=st.integers(1, 12),
    ties=st.booleans(),
    masked=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**16),
)
def test_same_values_as_topk(rows: int, n: int, k: int, ties: bool, masked: float, seed: int) -> None:
    k = min(k, n)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=generator)
    if ties:  # many equal values, as with rounded scores
        x = (x * 4).round() / 4
    x[torch.rand(rows, n, generator=generator) < masked] = -torch.inf  # constrained candidates
    values, index = beam_module.blocked_topk(x, k)
    want = x.topk(k, dim=1).values
    assert torch.equal(values, want)
    assert torch.equal(x.gather(1, index), values)
    assert all(len(set(row)) == k for row in index.tolist())  # k distinct positions


def test_uses_blocks_on_wide_rows() -> None:
    """A 64 x 40,005 row set (64 sentences x 5 beams x 8,001 pieces) takes the blocked path."""
    x = torch.randn(64, 40005).log_softmax(dim=1)
    called = []
    original = torch.Tensor.amax

    def spy(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        called.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "amax", spy)
        values, _ = beam_module.blocked_topk(x, 10)
    assert called and len(called[0]) == 3  # the (rows, blocks, block) view
    assert torch.equal(values, x.topk(10, dim=1).values)


def test_beam_search_is_unchanged_with_a_large_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    vocab = 3000  # 5 beams x 3,000 candidates: the blocked path
    config = TransformerConfig(
        d_model=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    model = build_seq2seq(config, src_vocab=vocab, tgt_vocab=vocab).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)  # sharper, more varied distributions than at initialisation
    generator = torch.Generator().manual_seed(1)
    sources = [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in (3, 9, 5, 12)]
    src, lengths = pad_batch(sources)
    options = {"beam_size": 5, "n_best": 3, "max_len_a": 1.0, "max_len_b": 3}
    blocked = beam_search(model, src, lengths, **options)
    monkeypatch.setattr(beam_module, "blocked_topk", lambda x, k: x.topk(k, dim=1))
    plain = beam_search(model, src, lengths, **options)
    for got, want in zip(blocked, plain, strict=True):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == [h.score for h in want]
