from __future__ import annotations

import pytest

from seqattn.data.labels import LabelVocabulary
from seqattn.errors import DataError


def test_ids_are_sorted_and_stable() -> None:
    vocab = LabelVocabulary.from_data(["pos", "neg", "pos", "neutral"])
    assert vocab.labels == ["neg", "neutral", "pos"]
    assert vocab.encode(["pos", "neg"]) == [2, 0]
    assert vocab.name(1) == "neutral"
    assert "neg" in vocab and "spam" not in vocab and len(vocab) == 3


def test_unknown_label_names_where_it_was_found() -> None:
    vocab = LabelVocabulary(["neg", "pos"])
    with pytest.raises(DataError) as error:
        vocab.encode(["pos", "mixed"], where=["gold.txt:1", "gold.txt:2"])
    message = str(error.value)
    assert message.startswith("gold.txt:2: label 'mixed' is not one the model knows (neg, pos)")
    assert "\n" not in message


def test_bad_label_sets() -> None:
    with pytest.raises(DataError):
        LabelVocabulary([])
    with pytest.raises(DataError, match="duplicate"):
        LabelVocabulary(["a", "a"])
