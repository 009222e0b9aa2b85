from __future__ import annotations

import random

import pytest

from seqattn.baselines import fit_baseline


def test_tfidf_logistic_regression_learns_keywords() -> None:
    rng = random.Random(0)
    filler = [f"w{i}" for i in range(30)]

    def sample(n: int) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = [*rng.sample(filler, 6), "great" if label == "pos" else "awful"]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
        return texts, labels

    train, valid, test = sample(200), sample(50), sample(50)
    model, valid_accuracy = fit_baseline(*train, *valid, l2_grid=(0.1, 1.0))
    assert valid_accuracy == 100.0
    assert model.predict(test[0]) == test[1]
    assert "great" in model.vocabulary and model.labels == ["neg", "pos"]


def test_unigram_features_only_with_ngrams_1() -> None:
    texts = ["a good film", "a bad film", "good fun", "bad fun"]
    labels = ["pos", "neg", "pos", "neg"]
    unigram, _ = fit_baseline(texts, labels, texts, labels, min_df=1, ngrams=1, l2_grid=(0.1,))
    bigram, _ = fit_baseline(texts, labels, texts, labels, min_df=1, ngrams=2, l2_grid=(0.1,))
    assert all(" " not in feature for feature in unigram.vocabulary)
    assert "good film" in bigram.vocabulary and set(unigram.vocabulary) < set(bigram.vocabulary)
    assert unigram.predict(["good"]) == ["pos"] and unigram.ngrams == 1


def test_ngrams_must_be_1_or_2() -> None:
    with pytest.raises(ValueError, match="ngrams"):
        fit_baseline(["a"], ["x"], ["a"], ["x"], ngrams=3)
