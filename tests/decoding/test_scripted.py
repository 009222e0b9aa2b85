"""Greedy and beam search driven by scripted probability tables, with results worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seqattn.data.batching import pad_batch
from seqattn.data.tokenizer import EOS_ID
from seqattn.decoding import Hypothesis, beam_search, greedy_search
from tests.decoding.toy_models import Script, ScriptedModel, enumerate_outputs

E = EOS_ID
log = math.log


def gnmt(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


def sources(*rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded sources; the first id of each row picks the script."""
    return pad_batch(list(rows))


# Greedy takes 4 (0.6) and ends with [4, 6] (0.21); the best output is [5] (0.36).
GARDEN_PATH: Script = {
    (): {4: 0.6, 5: 0.4},
    (4,): {6: 0.35, 7: 0.33, E: 0.32},
    (5,): {E: 0.9, 6: 0.1},
}

# Outputs: [] 0.45, [4] 0.055, [4, 5] 0.0495, [4, 5, 6] 0.4455: the empty output wins on raw
# log-probability, [4, 5, 6] once the length penalty is on.
LONG_WINS: Script = {
    (): {E: 0.45, 4: 0.55},
    (4,): {5: 0.9, E: 0.1},
    (4, 5): {6: 0.9, E: 0.1},
}

# Seven outputs, no two with the same probability, at most five live prefixes per depth.
BRANCHY: Script = {
    (): {4: 0.5, 5: 0.3, E: 0.2},
    (4,): {6: 0.65, E: 0.35},
    (5,): {6: 0.55, 7: 0.45},
    (4, 6): {E: 0.7, 7: 0.3},
    (5, 7): {E: 0.2, 4: 0.8},
}


def test_beam_finds_the_best_output_greedy_misses() -> None:
    model = ScriptedModel({4: GARDEN_PATH})
    src, lengths = sources([4, 9, 9])
    [[greedy]] = greedy_search(model, src, lengths, length_penalty=0.0)
    [[beam]] = beam_search(model, src, lengths, beam_size=2, length_penalty=0.0)
    assert greedy.tokens == [4, 6]
    assert greedy.log_prob == pytest.approx(log(0.6 * 0.35 * 1.0), abs=1e-6)
    assert beam.tokens == [5]
    assert beam.log_prob == pytest.approx(log(0.4 * 0.9), abs=1e-6)
    assert beam.score == pytest.approx(beam.log_prob, abs=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_scores_with_and_without_length_penalty(alpha: float) -> None:
    model = ScriptedModel({4: GARDEN_PATH})
    src, lengths = sources([4, 9, 9])
    [[beam]] = beam_search(model, src, lengths, beam_size=2, length_penalty=alpha)
    [[greedy]] = greedy_search(model, src, lengths, length_penalty=alpha)
    assert beam.log_prob == pytest.approx(log(0.36), abs=1e-6)
    assert beam.score == pytest.approx(log(0.36) / gnmt(2, alpha), abs=1e-6)  # [5] + EOS: L = 2
    assert greedy.score == pytest.approx(log(0.21) / gnmt(3, alpha), abs=1e-6)  # [4, 6] + EOS: L = 3
    torch.testing.assert_close(beam.token_log_probs, torch.tensor([log(0.4), log(0.9)]))


def test_length_penalty_changes_the_winner() -> None:
    model = ScriptedModel({4: LONG_WINS})
    src, lengths = sources([4, 9, 9])
    [[raw]] = beam_search(model, src, lengths, beam_size=4, length_penalty=0.0)
    [[normalised]] = beam_search(model, src, lengths, beam_size=4, length_penalty=1.0)
    assert raw.tokens == []
    assert raw.score == pytest.approx(log(0.45), abs=1e-6)
    assert normalised.tokens == [4, 5, 6]
    assert normalised.log_prob == pytest.approx(log(0.55 * 0.9 * 0.9), abs=1e-6)
    assert normalised.score == pytest.approx(log(0.4455) / gnmt(4, 1.0), abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("n_best", [1, 3, 7])
def test_n_best_is_the_exhaustive_top_n(alpha: float, n_best: int) -> None:
    """With a beam as wide as the whole output tree, beam search is exhaustive search."""
    model = ScriptedModel({4: BRANCHY})
    src, lengths = sources([4, 9, 9])
    [hyps] = beam_search(model, src, lengths, beam_size=7, n_best=n_best, length_penalty=alpha)
    outputs = enumerate_outputs(BRANCHY, model.fallback, max_len=9)
    assert len(outputs) == 7
    expected = sorted(outputs, key=lambda out: outputs[out] / gnmt(len(out) + 1, alpha), reverse=True)
    assert [h.tokens for h in hyps] == [list(out) for out in expected[:n_best]]
    for hyp in hyps:
        assert hyp.log_prob == pytest.approx(outputs[tuple(hyp.tokens)], abs=1e-6)
        assert hyp.score == pytest.approx(hyp.log_prob / gnmt(len(hyp.tokens) + 1, alpha), abs=1e-6)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_min_length_forbids_eos_relative_to_each_source() -> None:
    script: Script = {(): {E: 0.6, 4: 0.4}, (4,): {E: 0.7, 5: 0.3}}
    model = ScriptedModel({4: script}, fallback={E: 0.6, 6: 0.4})
    src, lengths = sources([4], [4, 9], [4, 9, 9, 9])  # min lengths 1, 2 and 4 (lowered to max 3)
    options = {"length_penalty": 0.0, "min_len_a": 1.0, "max_len_a": 0.0, "max_len_b": 3}
    for search, extra in ((greedy_search, {}), (beam_search, {"beam_size": 2})):
        one, two, capped = (hyps[0] for hyps in search(model, src, lengths, **options, **extra))
        assert one.tokens == [4]
        assert one.log_prob == pytest.approx(log(0.4) + log(0.7), abs=1e-6)
        assert two.tokens == [4, 5]
        # The masked EOS mass is not renormalised: kept tokens score their own probability.
        assert two.log_prob == pytest.approx(log(0.4) + log(0.3) + log(0.6), abs=1e-6)
        assert capped.tokens == [4, 5, 6]  # EOS forbidden until 3 tokens, then forced
        assert capped.log_prob == pytest.approx(log(0.4 * 0.3 * 0.4 * 0.6), abs=1e-6)
    [[free]] = greedy_search(model, src[:1], lengths[:1], length_penalty=0.0)
    assert free.tokens == []


def test_max_length_forces_eos_relative_to_each_source() -> None:
    model = ScriptedModel({4: {}}, fallback={4: 0.5, 5: 0.4, E: 0.1})
    src, lengths = sources([4, 9], [4, 9, 9, 9])
    for search, extra in ((greedy_search, {}), (beam_search, {"beam_size": 2, "n_best": 2})):
        for cap, expected in ((None, (3, 5)), (4, (3, 4))):
            results = search(model, src, lengths, max_len_a=1.0, max_len_b=1, max_len=cap, **extra)
            for hyps, length in zip(results, expected, strict=True):
                best = hyps[0]
                assert best.tokens == [4] * length
                assert best.log_prob == pytest.approx(length * log(0.5) + log(0.1), abs=1e-5)
                assert best.token_log_probs[-1].item() == pytest.approx(log(0.1), abs=1e-6)
                assert best.attention.shape[0] == length + 1
                assert all(len(h.tokens) == length for h in hyps)


def test_finished_sentences_leave_the_batch() -> None:
    quick: Script = {(): {E: 0.9, 4: 0.1}}
    model = ScriptedModel({4: quick, 5: {}}, fallback={4: 0.5, 5: 0.4, E: 0.1})
    src, lengths = sources([4, 9], [5, 9])  # max length 3 for both
    options = {"length_penalty": 0.0, "max_len_a": 1.0, "max_len_b": 1}

    beam = beam_search(model, src, lengths, beam_size=2, **options)
    assert model.step_batch_sizes == [4, 2, 2, 2]  # 2 sentences x 2 beams, then 1 x 2
    assert [beam[0][0].tokens, beam[1][0].tokens] == [[], [4, 4, 4]]

    model.step_batch_sizes.clear()
    greedy = greedy_search(model, src, lengths, **options)
    assert model.step_batch_sizes == [2, 1, 1, 1]
    assert [greedy[0][0].tokens, greedy[1][0].tokens] == [[], [4, 4, 4]]


def test_a_sentence_stops_once_beam_size_hypotheses_finished() -> None:
    """fairseq's rule: [] and [4] finish at steps 0 and 1, which ends the search with a beam of
    2, although the live [4, 5] would go on to [4, 5, 6], better under the length penalty."""
    model = ScriptedModel({4: LONG_WINS})
    src, lengths = sources([4, 9, 9])
    [hyps] = beam_search(model, src, lengths, beam_size=2, n_best=2, length_penalty=1.0)
    assert model.step_batch_sizes == [2, 2]
    assert [h.tokens for h in hyps] == [[], [4]]


def test_a_live_hypothesis_that_can_still_win_keeps_its_sentence_going() -> None:
    """[] finishes first and is ahead of the live [4] even after dividing [4]'s score by the
    penalty of its next length; only a longer ending (larger penalty) lets [4, 5, 6, 7] win."""
    script: Script = {(): {E: 0.6, 4: 0.4}, (4,): {5: 0.99, E: 0.01}, (4, 5): {6: 0.99, E: 0.01}}
    script = {**script, (4, 5, 6): {7: 0.99, E: 0.01}}
    model = ScriptedModel({4: script})
    src, lengths = sources([4, 9, 9])
    [[best]] = beam_search(model, src, lengths, beam_size=5, length_penalty=2.0)
    assert best.tokens == [4, 5, 6, 7]
    assert best.score == pytest.approx(log(0.4 * 0.99**3) / gnmt(5, 2.0), abs=1e-6)


def test_attention_follows_each_hypothesis() -> None:
    """The scripted attention is one-hot at ``sum(prefix) % src_len``: every row must match the
    hypothesis' own prefix, over the real source positions only."""
    model = ScriptedModel({4: BRANCHY})
    src, lengths = sources([4, 9, 9], [4, 9, 9, 9, 9])
    for search, extra in ((greedy_search, {}), (beam_search, {"beam_size": 7, "n_best": 7})):
        results = search(model, src, lengths, **extra)
        for hyps, src_len in zip(results, (3, 5), strict=True):
            assert hyps
            for hyp in hyps:
                expected = torch.zeros(len(hyp.tokens) + 1, src_len)
                for i in range(len(hyp.tokens) + 1):
                    expected[i, sum(hyp.tokens[:i]) % src_len] = 1.0
                torch.testing.assert_close(hyp.attention, expected)
                assert hyp.token_log_probs.sum().item() == pytest.approx(hyp.log_prob, abs=1e-5)


def test_results_come_back_in_input_order() -> None:
    model = ScriptedModel({4: GARDEN_PATH, 5: LONG_WINS, 6: BRANCHY})
    rows = [[6, 9], [4, 9, 9], [5]]
    src, lengths = sources(*rows)
    together = beam_search(model, src, lengths, beam_size=4, n_best=2)
    for row, hyps in zip(rows, together, strict=True):
        alone = beam_search(model, *sources(row), beam_size=4, n_best=2)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-6)


def test_beam_one_returns_one_hypothesis_and_greedy_a_list_of_one() -> None:
    model = ScriptedModel({4: BRANCHY})
    src, lengths = sources([4, 9, 9])
    for results in (greedy_search(model, src, lengths), beam_search(model, src, lengths, beam_size=1)):
        assert len(results) == 1
        assert len(results[0]) == 1
        assert isinstance(results[0][0], Hypothesis)


def test_empty_batch_and_bad_options() -> None:
    model = ScriptedModel({4: BRANCHY})
    empty = torch.zeros(0, 3, dtype=torch.long)
    no_lengths = torch.zeros(0, dtype=torch.long)
    assert greedy_search(model, empty, no_lengths) == []
    assert beam_search(model, empty, no_lengths) == []
    src, lengths = sources([4, 9])
    with pytest.raises(ValueError, match="n_best"):
        beam_search(model, src, lengths, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, lengths, beam_size=0)


def test_no_allowed_token_gives_an_empty_n_best_list() -> None:
    """Only special tokens plus a minimum length: nothing can be produced at all."""
    model = ScriptedModel({4: {}}, vocab_size=4)
    src, lengths = sources([4, 9])
    assert greedy_search(model, src, lengths, min_len_b=1) == [[]]
    assert beam_search(model, src, lengths, beam_size=3, min_len_b=1) == [[]]
