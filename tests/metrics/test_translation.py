"""BLEU, chrF and exact match: agreement with sacreBLEU, signatures, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import sacrebleu

from seqattn.metrics.translation import Score, corpus_bleu, corpus_chrf, exact_match

HYPS = [
    "The cat sat on the mat.",
    "A dog runs in the park",
    "Greetings, my friend!",
    "It is raining today.",
]
REFS = [
    "The cat sat on the mat.",
    "A dog is running in the park.",
    "Greetings, friend!",
    "Today it rains.",
]


def test_bleu_equals_sacrebleu() -> None:
    ours = corpus_bleu(HYPS, REFS)
    theirs = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert ours.name == "BLEU"
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert 0 < ours.score < 100
    assert ours.details["precisions"] == pytest.approx(theirs.precisions)
    assert ours.details["bp"] == pytest.approx(theirs.bp)
    assert (ours.details["sys_len"], ours.details["ref_len"]) == (theirs.sys_len, theirs.ref_len)
    assert ours.details["counts"] == list(theirs.counts)
    assert ours.details["totals"] == list(theirs.totals)


def test_chrf_equals_sacrebleu() -> None:
    ours = corpus_chrf(HYPS, REFS)
    theirs = sacrebleu.corpus_chrf(HYPS, [REFS])
    assert ours.name == "chrF2"
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert ours.details == {"beta": 2, "char_order": 6, "word_order": 0}


def test_bleu_is_cased() -> None:
    lower = corpus_bleu([h.lower() for h in HYPS], REFS).score
    assert lower < corpus_bleu(HYPS, REFS).score
    assert lower == pytest.approx(sacrebleu.corpus_bleu([h.lower() for h in HYPS], [REFS]).score)


def test_perfect_match_scores_100() -> None:
    assert corpus_bleu(REFS, REFS).score == pytest.approx(100.0)
    assert corpus_chrf(REFS, REFS).score == pytest.approx(100.0)
    assert corpus_bleu(REFS, REFS).details["bp"] == pytest.approx(1.0)


def test_signatures() -> None:
    version = sacrebleu.__version__
    bleu = corpus_bleu(HYPS, REFS)
    assert bleu.signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}"
    chrf = corpus_chrf(HYPS, REFS).signature
    for part in ("nrefs:1", "case:mixed", "nc:6", "nw:0", "space:no", f"version:{version}"):
        assert part in chrf.split("|")
    assert str(bleu) == f"BLEU = {bleu.score:.2f} ({bleu.signature})"


def test_score_is_frozen() -> None:
    score = corpus_bleu(HYPS, REFS)
    assert isinstance(score, Score)
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.score = 0.0  # type: ignore[misc]


def test_exact_match() -> None:
    assert exact_match(HYPS, REFS) == pytest.approx(25.0)
    assert exact_match(["  2006-09-10\n", "2006-09-11"], ["2006-09-10", "2006-09-12"]) == pytest.approx(50.0)
    assert exact_match(["Abc"], ["abc"]) == 0.0  # case counts
    assert exact_match(["a  b"], ["a b"]) == 0.0  # inner spacing counts
    assert exact_match(REFS, REFS) == 100.0


@pytest.mark.parametrize("metric", [corpus_bleu, corpus_chrf, exact_match])
def test_mismatched_lengths(metric) -> None:
    with pytest.raises(ValueError, match=r"got 2 hypotheses but 3 references"):
        metric(["a", "b"], ["a", "b", "c"])


@pytest.mark.parametrize("metric", [corpus_bleu, corpus_chrf, exact_match])
def test_empty_input(metric) -> None:
    with pytest.raises(ValueError, match=r"empty input"):
        metric([], [])
