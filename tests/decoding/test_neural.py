"""Greedy, beam and forced decoding on a tiny seeded neural model: equivalences and invariances."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from seqattn.data.batching import pad_batch
from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqattn.decoding import Hypothesis, beam_search, force_decode, greedy_search, translate_batches
from tests.decoding.toy_models import TinyAttentionModel

VOCAB = 12
LENGTHS = [3, 7, 1, 5, 9, 2, 6, 4]

Search = Callable[..., list[list[Hypothesis]]]
SEARCHES: dict[str, tuple[Search, dict]] = {
    "greedy": (greedy_search, {}),
    "beam": (beam_search, {"beam_size": 4, "n_best": 3}),
}


@pytest.fixture(scope="module")
def model() -> TinyAttentionModel:
    return TinyAttentionModel(vocab_size=VOCAB, dim=16, seed=1, eos_slope=0.5)


@pytest.fixture(scope="module")
def rows() -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in LENGTHS]


def assert_same(left: list[Hypothesis], right: list[Hypothesis]) -> None:
    assert [h.tokens for h in left] == [h.tokens for h in right]
    for a, b in zip(left, right, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.log_prob == pytest.approx(b.log_prob, abs=1e-5)
        torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=0)


def test_outputs_end_early_and_at_the_maximum(model: TinyAttentionModel, rows: list[list[int]]) -> None:
    """The fixture model exercises both ways of finishing (so the other tests cover both)."""
    results = greedy_search(model, *pad_batch(rows))
    maxima = [int(1.5 * n + 5) for n in LENGTHS]
    lengths = [len(hyps[0].tokens) for hyps in results]
    assert any(n == m for n, m in zip(lengths, maxima, strict=True))
    assert any(n < m for n, m in zip(lengths, maxima, strict=True))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("min_len_b", [0, 3])
def test_beam_size_one_is_greedy(
    model: TinyAttentionModel, rows: list[list[int]], alpha: float, min_len_b: int
) -> None:
    src, lengths = pad_batch(rows)
    options = {"length_penalty": alpha, "min_len_b": min_len_b}
    greedy = greedy_search(model, src, lengths, **options)
    beam = beam_search(model, src, lengths, beam_size=1, **options)
    for g, b in zip(greedy, beam, strict=True):
        assert_same(g, b)
        torch.testing.assert_close(g[0].token_log_probs, b[0].token_log_probs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", SEARCHES)
def test_outputs_do_not_depend_on_the_batch(
    model: TinyAttentionModel, rows: list[list[int]], name: str
) -> None:
    search, options = SEARCHES[name]
    together = search(model, *pad_batch(rows), **options)
    alone = [search(model, *pad_batch([row]), **options)[0] for row in rows]
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    shuffled = search(model, *pad_batch([rows[i] for i in order]), **options)
    unshuffled = [None] * len(rows)
    for position, index in enumerate(order):
        unshuffled[index] = shuffled[position]
    for i in range(len(rows)):
        assert_same(together[i], alone[i])
        assert_same(together[i], unshuffled[i])


@pytest.mark.parametrize("name", SEARCHES)
def test_attention_rows_are_distributions_over_the_real_source(
    model: TinyAttentionModel, rows: list[list[int]], name: str
) -> None:
    search, options = SEARCHES[name]
    for row, hyps in zip(rows, search(model, *pad_batch(rows), **options), strict=True):
        assert hyps
        for hyp in hyps:
            assert hyp.attention.shape == (len(hyp.tokens) + 1, len(row))
            assert hyp.attention.dtype == torch.float32
            assert hyp.attention.device.type == "cpu"
            torch.testing.assert_close(hyp.attention.sum(dim=1), torch.ones(len(hyp.tokens) + 1))
            assert not {BOS_ID, EOS_ID, PAD_ID} & set(hyp.tokens)


def test_beam_scores_are_the_model_log_probabilities(
    model: TinyAttentionModel, rows: list[list[int]]
) -> None:
    """Rescoring every n-best hypothesis with teacher forcing gives back its log-probability,
    per-token log-probabilities and attention."""
    src, lengths = pad_batch(rows)
    results = beam_search(model, src, lengths, beam_size=4, n_best=3, length_penalty=0.6)
    for i, hyps in enumerate(results):
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for hyp in hyps:
            tgt_in = torch.tensor([[BOS_ID, *hyp.tokens]])
            logits, attention = model(src[i : i + 1, : lengths[i]], lengths[i : i + 1], tgt_in)
            lprobs = torch.log_softmax(logits[0], dim=-1)  # (T+1, V)
            expected = lprobs.gather(1, torch.tensor([*hyp.tokens, EOS_ID]).unsqueeze(1)).squeeze(1)
            torch.testing.assert_close(hyp.token_log_probs, expected, atol=1e-5, rtol=0)
            assert hyp.log_prob == pytest.approx(expected.sum().item(), abs=1e-5)
            assert hyp.score == pytest.approx(hyp.log_prob / ((5 + len(hyp.tokens) + 1) / 6) ** 0.6, abs=1e-5)
            torch.testing.assert_close(hyp.attention, attention[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SEARCHES)
def test_translate_batches_restores_input_order(
    model: TinyAttentionModel, rows: list[list[int]], name: str
) -> None:
    search, options = SEARCHES[name]
    results = translate_batches(model, rows, max_tokens=12, search=search, **options)
    assert len(results) == len(rows)
    for row, hyps in zip(rows, results, strict=True):
        assert_same(hyps, search(model, *pad_batch([row]), **options)[0])
    assert translate_batches(model, [], max_tokens=12) == []


def test_force_decode_attention_matches_decoding(model: TinyAttentionModel, rows: list[list[int]]) -> None:
    src, lengths = pad_batch(rows)
    hyps = [h[0] for h in greedy_search(model, src, lengths)]
    tgt, tgt_lengths = pad_batch([h.tokens for h in hyps])
    forced = force_decode(model, src, lengths, tgt)
    for row, hyp, attention in zip(rows, hyps, forced, strict=True):
        assert attention.shape == (len(hyp.tokens) + 1, len(row))
        torch.testing.assert_close(attention, hyp.attention, atol=1e-5, rtol=0)
    shorter = (tgt_lengths - 1).clamp(min=0)
    prefixes = force_decode(model, src, lengths, tgt, tgt_lengths=shorter)
    for hyp, attention, length in zip(hyps, prefixes, shorter.tolist(), strict=True):
        torch.testing.assert_close(attention, hyp.attention[: length + 1], atol=1e-5, rtol=0)


def test_force_decode_rejects_special_tokens(model: TinyAttentionModel) -> None:
    src, lengths = pad_batch([[4, 5, 6]])
    with pytest.raises(ValueError, match="BOS or EOS"):
        force_decode(model, src, lengths, torch.tensor([[7, EOS_ID]]))
