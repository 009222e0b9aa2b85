"""Word alignment links, AER, hard alignments from attention, subword merging, dates gold links."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from seqattn.errors import DataError
from seqattn.metrics.alignment import (
    aer,
    char_spans_to_token_links,
    format_links,
    hard_alignment,
    merge_subwords,
    parse_links,
    read_alignment_file,
    token_offsets,
)

# -- parsing and formatting --------------------------------------------------------------------


def test_parse_links() -> None:
    sure, possible = parse_links("0-0 1p2  2-1 10-11\t3p3")
    assert sure == {(0, 0), (2, 1), (10, 11)}
    assert possible == {(1, 2), (3, 3)}
    assert parse_links("") == (set(), set())
    assert parse_links("   ") == (set(), set())


def test_link_marked_sure_and_possible_is_sure() -> None:
    assert parse_links("0-1 0p1 2p2 2p2") == ({(0, 1)}, {(2, 2)})


def test_one_based() -> None:
    assert parse_links("1-1 2p3", one_based=True) == ({(0, 0)}, {(1, 2)})
    with pytest.raises(ValueError, match=r"'0-1' has index 0"):
        parse_links("0-1", one_based=True)


def test_format_and_round_trip() -> None:
    assert format_links({(2, 1), (0, 0), (10, 2), (1, 5)}) == "0-0 1-5 2-1 10-2"
    assert format_links(set()) == ""
    line = format_links({(0, 0), (3, 1)}, possible={(1, 2), (0, 0)})
    assert line == "0-0 1p2 3-1"
    assert parse_links(line) == ({(0, 0), (3, 1)}, {(1, 2)})
    sure, possible = parse_links("5-4 0p0 1-1 3p2 2-2")
    assert parse_links(format_links(sure, possible=possible)) == (sure, possible)


@pytest.mark.parametrize("token", ["0-", "a-1", "1:2", "1--2", "-1-2", "1x2", "0-1-2", "1P2"])
def test_malformed_token(token: str) -> None:
    with pytest.raises(ValueError, match="malformed link"):
        parse_links(f"0-0 {token}")


def test_read_alignment_file(tmp_path: Path) -> None:
    path = tmp_path / "gold.talp"
    path.write_text("0-0 1p1\n\n2-1 0p0\r\n", encoding="utf-8")
    assert read_alignment_file(path) == [({(0, 0)}, {(1, 1)}), (set(), set()), ({(2, 1)}, {(0, 0)})]
    packed = tmp_path / "gold.talp.gz"
    packed.write_bytes(gzip.compress(b"1-2 2-3\n"))
    assert read_alignment_file(packed, one_based=True) == [({(0, 1), (1, 2)}, set())]


def test_read_alignment_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "pred.align"
    path.write_text("0-0\n1-1 2-2\n0-0 3=4\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_alignment_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: malformed link '3=4'")
    assert "\n" not in message
    with pytest.raises(DataError, match=r"no such file"):
        read_alignment_file(tmp_path / "missing.align")


# -- AER ---------------------------------------------------------------------------------------


def test_aer_och_ney_style_example() -> None:
    # Gold: sure S and possible links P ⊃ S. Prediction hits one sure link, one possible-only
    # link, and one wrong link.
    sure = {(0, 0), (1, 1)}
    possible = {(1, 2), (2, 2)}  # S is added to P by aer()
    predicted = {(0, 0), (1, 2), (2, 1)}
    result = aer([predicted], [sure], [possible])
    assert (result.predicted, result.sure, result.sure_hits, result.possible_hits) == (3, 2, 1, 2)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(1 / 2)
    assert result.aer == pytest.approx(1 - (1 + 2) / (3 + 2))
    # The same with P given including S.
    assert aer([predicted], [sure], [possible | sure]) == result


def test_aer_possible_links_are_never_penalised() -> None:
    sure = {(0, 0)}
    possible = {(0, 1), (1, 1)}
    only_sure = aer([{(0, 0)}], [sure], [possible])
    with_possible = aer([{(0, 0), (0, 1), (1, 1)}], [sure], [possible])
    assert only_sure.aer == with_possible.aer == 0.0
    assert with_possible.precision == 1.0


def test_aer_perfect_alignment_is_zero() -> None:
    gold = [{(0, 0), (1, 2), (2, 1)}, {(0, 1)}]
    result = aer(gold, gold, [set(), set()])
    assert (result.precision, result.recall, result.aer) == (1.0, 1.0, 0.0)
    assert aer(gold, gold).aer == 0.0  # possible omitted


def test_aer_sure_only_is_one_minus_f1() -> None:
    result = aer([{(0, 0), (1, 1), (2, 0)}], [{(0, 0), (1, 1), (2, 2), (3, 3)}])
    p, r = 2 / 3, 2 / 4
    assert result.aer == pytest.approx(1 - 2 * p * r / (p + r))


def test_aer_is_corpus_level() -> None:
    predicted = [{(0, 0)}, {(0, 0), (1, 1), (2, 2), (3, 3)}]
    sure = [{(0, 1)}, {(0, 0), (1, 1), (2, 2), (3, 3)}]
    result = aer(predicted, sure, [set(), set()])
    # Corpus counts: |A| = 5, |S| = 5, |A∩S| = |A∩P| = 4 -> 1 - 8/10 (the sentence mean would be 0.5).
    assert result.aer == pytest.approx(0.2)
    assert result.precision == pytest.approx(0.8)
    assert result.recall == pytest.approx(0.8)


def test_aer_empty_sets() -> None:
    nothing_predicted = aer([set()], [{(0, 0)}], [set()])
    assert (nothing_predicted.precision, nothing_predicted.recall, nothing_predicted.aer) == (1.0, 0.0, 1.0)
    no_sure = aer([{(0, 0), (1, 1)}], [set()], [{(0, 0)}])
    assert (no_sure.precision, no_sure.recall, no_sure.aer) == (0.5, 1.0, 0.5)
    neither = aer([set()], [set()], [set()])
    assert (neither.precision, neither.recall, neither.aer) == (1.0, 1.0, 0.0)
    empty_corpus = aer([], [], [])
    assert empty_corpus.aer == 0.0


def test_aer_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"got 2 predicted, 1 sure and 1 possible"):
        aer([set(), set()], [set()], [set()])


def test_aer_str() -> None:
    assert str(aer([{(0, 0), (1, 2), (2, 1)}], [{(0, 0), (1, 1)}], [{(1, 2)}])) == (
        "AER = 40.00 (precision 66.67, recall 50.00)"
    )


# -- hard alignments ---------------------------------------------------------------------------

# 4 target rows (the last is EOS) x 3 source columns
ATTENTION = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [0.45, 0.45, 0.1],
        [0.2, 0.2, 0.6],
    ]
)


def test_argmax() -> None:
    # (src, tgt) pairs; the tie in row 2 goes to the first source position
    assert hard_alignment(ATTENTION) == {(0, 0), (2, 1), (0, 2), (2, 3)}
    assert hard_alignment(ATTENTION, drop_last_row=True) == {(0, 0), (2, 1), (0, 2)}


def test_argmax_skips_rows_without_weight() -> None:
    matrix = np.vstack([ATTENTION[:2], np.zeros((1, 3))])
    assert hard_alignment(matrix) == {(0, 0), (2, 1)}


def test_threshold() -> None:
    assert hard_alignment(ATTENTION, method="threshold", threshold=0.45) == {
        (0, 0),
        (2, 1),
        (0, 2),
        (1, 2),
        (2, 3),
    }
    assert hard_alignment(ATTENTION, method="threshold", threshold=0.5, drop_last_row=True) == {
        (0, 0),
        (2, 1),
    }
    assert hard_alignment(ATTENTION, method="threshold", threshold=0.9) == set()


def test_torch_input() -> None:
    tensor = torch.tensor(ATTENTION, dtype=torch.float32, requires_grad=True)
    assert hard_alignment(tensor) == hard_alignment(ATTENTION)
    assert hard_alignment(tensor, method="threshold", threshold=0.45) == hard_alignment(
        ATTENTION, method="threshold", threshold=0.45
    )


def test_hard_alignment_checks() -> None:
    with pytest.raises(ValueError, match="needs a threshold"):
        hard_alignment(ATTENTION, method="threshold")
    with pytest.raises(ValueError, match="only to method='threshold'"):
        hard_alignment(ATTENTION, threshold=0.5)
    with pytest.raises(ValueError, match="unknown method 'max'"):
        hard_alignment(ATTENTION, method="max")
    with pytest.raises(ValueError, match=r"2-D .* shape \(1, 4, 3\)"):
        hard_alignment(ATTENTION[None])
    assert hard_alignment(np.zeros((0, 3))) == set()
    assert hard_alignment(ATTENTION[:1], drop_last_row=True) == set()


# -- subword merging ---------------------------------------------------------------------------


def test_merge_subwords() -> None:
    src = ["▁un", "believ", "able", "▁cat"]  # words: unbelievable, cat
    tgt = ["▁in", "croy", "able", "▁chat", "</s>"]  # words: incroyable, chat, </s>
    attention = np.array(
        [
            [0.5, 0.2, 0.2, 0.1],
            [0.1, 0.6, 0.2, 0.1],
            [0.3, 0.3, 0.3, 0.1],
            [0.0, 0.1, 0.1, 0.8],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    merged, src_words, tgt_words = merge_subwords(attention, src, tgt)
    assert src_words == ["unbelievable", "cat"]
    assert tgt_words == ["incroyable", "chat", "</s>"]
    assert merged.shape == (3, 2)
    # source pieces summed: rows 0-2 give 0.9, 0.9, 0.9 for "unbelievable"; averaged over them
    expected = np.array([[0.9, 0.1], [0.2, 0.8], [0.75, 0.25]])
    np.testing.assert_allclose(merged, expected)
    np.testing.assert_allclose(merged.sum(axis=1), 1.0)


def test_merge_subwords_hand_average() -> None:
    src = ["▁a", "b", "▁c"]
    tgt = ["▁x", "y"]
    attention = np.array([[0.2, 0.2, 0.6], [0.6, 0.4, 0.0]])
    merged, src_words, tgt_words = merge_subwords(torch.tensor(attention), src, tgt)
    assert (src_words, tgt_words) == (["ab", "c"], ["xy"])
    # "ab": (0.4 + 1.0) / 2 = 0.7; "c": (0.6 + 0.0) / 2 = 0.3
    np.testing.assert_allclose(merged, [[0.7, 0.3]])


def test_merge_subwords_edge_pieces() -> None:
    # First piece without "▁" still starts a word; a lone "▁" starts a word ("▁" "1" -> "1").
    src = ["ab", "c", "▁", "1", "<s>"]
    tgt = ["▁z"]
    attention = np.full((1, 5), 0.2)
    merged, src_words, tgt_words = merge_subwords(attention, src, tgt)
    assert (src_words, tgt_words) == (["abc", "1", "<s>"], ["z"])
    np.testing.assert_allclose(merged, [[0.4, 0.4, 0.2]])
    # Random row-stochastic matrices keep summing to one.
    rng = np.random.default_rng(0)
    pieces_src = ["▁a", "b", "c", "▁d", "▁e", "f"]
    pieces_tgt = ["▁g", "h", "▁i", "▁j", "k", "l", "</s>"]
    attention = rng.dirichlet(np.ones(len(pieces_src)), size=len(pieces_tgt))
    merged, _, _ = merge_subwords(attention, pieces_src, pieces_tgt)
    assert merged.shape == (4, 3)
    np.testing.assert_allclose(merged.sum(axis=1), 1.0)


def test_merge_subwords_shape_check() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) but there are 3 target and 2 source pieces"):
        merge_subwords(np.zeros((2, 3)), ["▁a", "▁b"], ["▁x", "▁y", "▁z"])


# -- dates gold links --------------------------------------------------------------------------

# The example in the docstring of seqattn.data.builtin.dates.
SOURCE = "Sonntag, 10. September 2006"
TARGET = "2006-09-10"
FIELDS = [
    {"field": "weekday", "code": "EEEE", "src": [0, 7], "tgt": None},
    {"field": "day", "code": "d", "src": [9, 11], "tgt": [8, 10]},
    {"field": "month", "code": "MMMM", "src": [13, 22], "tgt": [5, 7]},
    {"field": "year", "code": "y", "src": [23, 27], "tgt": [0, 4]},
]


def test_token_offsets() -> None:
    assert token_offsets(SOURCE, SOURCE.split()) == [(0, 8), (9, 12), (13, 22), (23, 27)]
    assert token_offsets("10. Sep", ["▁10", ".", "▁", "Sep"]) == [(0, 2), (2, 3), (3, 3), (4, 7)]
    with pytest.raises(ValueError, match="not found"):
        token_offsets("abc", ["abd"])
    with pytest.raises(ValueError, match="skips text"):
        token_offsets("abc", ["c"])


def test_char_spans_to_token_links_words_to_characters() -> None:
    src_offsets = token_offsets(SOURCE, SOURCE.split())  # Sonntag, | 10. | September | 2006
    tgt_offsets = [(k, k + 1) for k in range(len(TARGET))]  # one token per character
    links = char_spans_to_token_links(FIELDS, src_offsets, tgt_offsets)
    # weekday and the hyphens produce no links
    assert links == {(1, 8), (1, 9), (2, 5), (2, 6), (3, 0), (3, 1), (3, 2), (3, 3)}


def test_char_spans_to_token_links_subwords() -> None:
    src_pieces = ["▁Sonn", "tag", ",", "▁10", ".", "▁Sept", "ember", "▁200", "6"]
    tgt_pieces = ["▁2006", "-", "09", "-", "10"]
    links = char_spans_to_token_links(
        FIELDS, token_offsets(SOURCE, src_pieces), token_offsets(TARGET, tgt_pieces)
    )
    assert links == {(3, 4), (5, 2), (6, 2), (7, 0), (8, 0)}
    # Scored as sure links: a prediction with only the year and the day right.
    result = aer([{(3, 4), (7, 0), (8, 0), (0, 1)}], [links])
    assert (result.precision, result.recall) == pytest.approx((3 / 4, 3 / 5))


def test_char_spans_to_token_links_bad_span() -> None:
    with pytest.raises(ValueError, match=r"field 0 target span"):
        char_spans_to_token_links([{"src": [0, 1], "tgt": [3, 1]}], [(0, 1)], [(0, 1)])


def test_half_precision_and_integer_input() -> None:
    half = torch.tensor(ATTENTION, dtype=torch.bfloat16)
    assert hard_alignment(half, drop_last_row=True) == {(0, 0), (2, 1), (0, 2)}
    assert hard_alignment(np.array([[0, 1], [3, 2]]), method="threshold", threshold=2) == {(0, 1), (1, 1)}
