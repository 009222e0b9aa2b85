"""The decoders driving the real models: beam 1 == greedy, batch invariance, forced decoding."""

from __future__ import annotations

import pytest
import torch

from seqattn.decoding import beam_search, force_decode, greedy_search, translate_batches
from tests.models.test_seq2seq_models import MODELS, batch

NAMES = [
    "rnn-bahdanau-additive",
    "rnn-luong-general",
    "transformer-pre-sinusoidal",
    "transformer-relative-tied-all",
]


@pytest.fixture(params=NAMES)
def model(request: pytest.FixtureRequest):
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_beam_one_equals_greedy(model) -> None:
    src, lengths = batch([7, 5, 2, 6])
    greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=4)
    beam = beam_search(model, src, lengths, beam_size=1, max_len_a=1.0, max_len_b=4)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_outputs_do_not_depend_on_batch_size_or_order(model, search) -> None:
    lengths = [7, 5, 2, 6, 3, 7, 1]
    src, _ = batch(lengths)
    sources = [src[i, :n].tolist() for i, n in enumerate(lengths)]
    options = {"max_len_a": 1.0, "max_len_b": 4}
    if search is beam_search:
        options |= {"beam_size": 3, "n_best": 2}
    together = translate_batches(model, sources, max_tokens=1000, search=search, **options)
    one_by_one = translate_batches(model, sources, max_tokens=1, search=search, **options)
    order = [3, 0, 6, 2, 5, 1, 4]
    shuffled = translate_batches(model, [sources[i] for i in order], max_tokens=16, search=search, **options)
    for i in range(len(sources)):
        for a, b, c in zip(together[i], one_by_one[i], shuffled[order.index(i)], strict=True):
            assert a.tokens == b.tokens == c.tokens
            assert a.score == pytest.approx(b.score, abs=1e-5)
            assert a.score == pytest.approx(c.score, abs=1e-5)


def test_forced_decoding_reproduces_search_attention(model) -> None:
    src, lengths = batch([7, 4])
    hypotheses = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3, min_len_b=2)
    targets = [h[0].tokens for h in hypotheses]
    tgt, _ = batch([len(t) for t in targets])
    for row, tokens in enumerate(targets):
        tgt[row, : len(tokens)] = torch.tensor(tokens)
    forced = force_decode(model, src, lengths, tgt)
    for row, attention in enumerate(forced):
        torch.testing.assert_close(attention, hypotheses[row][0].attention, atol=1e-5, rtol=1e-5)
