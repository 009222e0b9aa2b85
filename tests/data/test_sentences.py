"""Sentence splitting for hierarchical classifiers: paragraph markers, sentence punctuation with
closing quotes and brackets, numbers and abbreviations left alone, and the degenerate cases."""

from __future__ import annotations

import pytest

from seqattn.data.sentences import PARAGRAPH, split_sentences


def test_paragraph_marker_always_splits() -> None:
    text = f"Stocks rally on rate hopes {PARAGRAPH} Oil prices steady {PARAGRAPH}shares in focus"
    assert split_sentences(text) == ["Stocks rally on rate hopes", "Oil prices steady", "shares in focus"]


def test_sentence_punctuation_splits_before_a_capital_or_digit() -> None:
    text = "The vote passed. Critics object! Will it hold? 12 members abstained."
    assert split_sentences(text) == [
        "The vote passed.",
        "Critics object!",
        "Will it hold?",
        "12 members abstained.",
    ]


def test_both_rules_together() -> None:
    text = f"Markets fall {PARAGRAPH} Shares slid on Monday. Bonds rose."
    assert split_sentences(text) == ["Markets fall", "Shares slid on Monday.", "Bonds rose."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('He said "we won." Then he left.', ['He said "we won."', "Then he left."]),
        ("She asked \u201cwhy?\u201d Nobody knew.", ["She asked \u201cwhy?\u201d", "Nobody knew."]),
        ("It ended (at last.) Fans cheered.", ["It ended (at last.)", "Fans cheered."]),
        ("They said 'no!' Talks stalled.", ["They said 'no!'", "Talks stalled."]),
    ],
    ids=["double-quote", "typographic-quote", "bracket", "single-quote"],
)
def test_closing_quotes_and_brackets_stay_with_their_sentence(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_opening_quote_starts_the_next_sentence() -> None:
    text = 'The minister paused. "We will act," she said.'
    assert split_sentences(text) == ["The minister paused.", '"We will act," she said.']


@pytest.mark.parametrize(
    "text",
    [
        "Revenue rose to 2.5m euros in the quarter",
        "The deal is worth $1.13bn and closes in May",
        "Version 3.10.2 was released",
        "Prices in the U.S. rose again.",
        "It happened at 3 p.m. yesterday, e.g. after lunch.",
        "Wait... there is more",
        "Visit example.com for details",
    ],
)
def test_numbers_abbreviations_and_inner_dots_do_not_split(text: str) -> None:
    assert split_sentences(text) == [text]


def test_lower_case_after_a_full_stop_does_not_split() -> None:
    assert split_sentences("It was late. then it rained.") == ["It was late. then it rained."]


def test_sentences_are_stripped_and_never_empty() -> None:
    text = f"  First one.   Second one!  {PARAGRAPH}  {PARAGRAPH} {PARAGRAPH}   Third.  {PARAGRAPH}  "
    sentences = split_sentences(text)
    assert sentences == ["First one.", "Second one!", "Third."]
    assert all(s and s == s.strip() for s in sentences)


def test_text_without_punctuation_is_one_sentence() -> None:
    assert split_sentences("  no punctuation here at all  ") == ["no punctuation here at all"]


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_empty_text_gives_one_empty_sentence(text: str) -> None:
    assert split_sentences(text) == [""]


def test_splitting_loses_no_words() -> None:
    text = f'A first. B second! "C third?" 4 fourth {PARAGRAPH} e fifth. F (sixth.) G'
    sentences = split_sentences(text)
    assert len(sentences) == 7
    assert " ".join(sentences).split() == text.replace(PARAGRAPH, " ").split()
