"""A TF-IDF + logistic-regression text classifier: the baseline the attention classifiers must beat.

Features: lower-cased word unigrams and, by default, bigrams (``\\w+`` tokens; ``ngrams=1`` keeps
unigrams only, scikit-learn's default) seen in at least ``min_df`` training documents, sublinear
term frequency ``1 + log tf``, smoothed inverse document frequency
``log((1 + N) / (1 + df)) + 1`` and L2-normalised rows (the usual scikit-learn settings).
Model: multinomial logistic regression with an L2 penalty, fitted full-batch with L-BFGS on a
sparse feature matrix in torch. The penalty strength is chosen on the validation split from a
small grid. Everything is deterministic.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TfidfLogisticRegression", "fit_baseline"]

_WORD = re.compile(r"\w+", re.UNICODE)


def _features(text: str, ngrams: int) -> list[str]:
    words = _WORD.findall(text.lower())
    if ngrams == 1:
        return words
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


@dataclass
class TfidfLogisticRegression:
    vocabulary: dict[str, int]
    idf: Tensor  # (V,)
    weight: Tensor  # (V, C)
    bias: Tensor  # (C,)
    labels: list[str]
    l2: float
    ngrams: int = 2

    def transform(self, texts: Sequence[str]) -> Tensor:
        """``(N, V)`` sparse TF-IDF matrix."""
        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            counts = Counter(f for f in _features(text, self.ngrams) if f in self.vocabulary)
            entries = [
                (self.vocabulary[f], (1.0 + math.log(c)) * float(self.idf[self.vocabulary[f]]))
                for f, c in counts.items()
            ]
            norm = math.sqrt(sum(v * v for _, v in entries)) or 1.0
            for col, value in entries:
                rows.append(row)
                cols.append(col)
                values.append(value / norm)
        index = torch.tensor([rows, cols], dtype=torch.long)
        return torch.sparse_coo_tensor(
            index, torch.tensor(values), (len(texts), len(self.vocabulary)), check_invariants=False
        ).coalesce()

    def predict(self, texts: Sequence[str]) -> list[str]:
        logits = torch.sparse.mm(self.transform(texts), self.weight) + self.bias
        return [self.labels[i] for i in logits.argmax(-1).tolist()]


def _fit(x: Tensor, y: Tensor, classes: int, l2: float) -> tuple[Tensor, Tensor]:
    weight = torch.zeros(x.size(1), classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = torch.sparse.mm(x, weight) + bias
        loss = (
            torch.nn.functional.cross_entropy(logits, y, reduction="sum") + 0.5 * l2 * (weight * weight).sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_baseline(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    valid_texts: Sequence[str],
    valid_labels: Sequence[str],
    *,
    min_df: int = 2,
    ngrams: int = 2,
    l2_grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0),
) -> tuple[TfidfLogisticRegression, float]:
    """Fit on train, pick the L2 strength by validation accuracy; returns (model, valid accuracy %).

    ``ngrams``: 1 (word unigrams) or 2 (unigrams and bigrams)."""
    if ngrams not in (1, 2):
        raise ValueError(f"ngrams must be 1 or 2, got {ngrams}")
    document_frequency: Counter[str] = Counter()
    for text in train_texts:
        document_frequency.update(set(_features(text, ngrams)))
    kept = sorted(f for f, df in document_frequency.items() if df >= min_df)
    vocabulary = {f: i for i, f in enumerate(kept)}
    n = len(train_texts)
    idf = torch.tensor([math.log((1 + n) / (1 + document_frequency[f])) + 1.0 for f in kept])
    labels = sorted(set(train_labels))
    y = torch.tensor([labels.index(label) for label in train_labels])
    best: tuple[float, TfidfLogisticRegression] | None = None
    model = TfidfLogisticRegression(vocabulary, idf, torch.zeros(0), torch.zeros(0), labels, 0.0, ngrams)
    x = model.transform(train_texts)
    for l2 in l2_grid:
        weight, bias = _fit(x, y, len(labels), l2)
        candidate = TfidfLogisticRegression(vocabulary, idf, weight, bias, labels, l2, ngrams)
        predicted = candidate.predict(valid_texts)
        accuracy = (
            100.0 * sum(p == g for p, g in zip(predicted, valid_labels, strict=True)) / len(valid_labels)
        )
        if best is None or accuracy > best[0]:
            best = (accuracy, candidate)
    assert best is not None
    return best[1], best[0]
