"""Classification report: hand-computed values, zero conventions, a naive reference."""

from __future__ import annotations

import random
import warnings

import pytest
from rich.console import Console
from rich.table import Table

from seqattn.metrics.classification import ClassificationReport, classification_report


def test_binary_hand_computed() -> None:
    labels = ["neg", "neg", "pos", "pos"]
    preds = ["neg", "neg", "neg", "pos"]
    report = classification_report(preds, labels)
    assert report.classes == ["neg", "pos"]
    assert report.accuracy == pytest.approx(75.0)
    assert report.confusion == [[2, 0], [1, 1]]
    neg, pos = report.per_class["neg"], report.per_class["pos"]
    assert (neg.precision, neg.recall, neg.f1, neg.support) == pytest.approx((200 / 3, 100.0, 80.0, 2))
    assert (pos.precision, pos.recall, pos.f1, pos.support) == pytest.approx((100.0, 50.0, 200 / 3, 2))
    assert report.macro_f1 == pytest.approx((80.0 + 200 / 3) / 2)
    assert report.total == 4


def test_never_predicted_class_has_zero_precision_without_warnings() -> None:
    labels = ["a", "a", "b", "c", "c", "c"]
    preds = ["a", "b", "b", "a", "c", "a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(preds, labels, classes=["c", "b", "a", "d"])
    assert report.classes == ["c", "b", "a", "d"]
    # rows = true, columns = predicted, both in `classes` order
    assert report.confusion == [
        [1, 0, 2, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 0],
    ]
    a, b, c, d = (report.per_class[k] for k in "abcd")
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((100 / 3, 50.0, 40.0, 2))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((50.0, 100.0, 200 / 3, 1))
    assert (c.precision, c.recall, c.f1, c.support) == pytest.approx((100.0, 100 / 3, 50.0, 3))
    # "d" never occurs and is never predicted: everything 0, and it still counts in macro F1
    assert (d.precision, d.recall, d.f1, d.support) == (0.0, 0.0, 0.0, 0)
    assert report.accuracy == pytest.approx(50.0)
    assert report.macro_f1 == pytest.approx((40.0 + 200 / 3 + 50.0 + 0.0) / 4)
    assert list(report.per_class) == ["c", "b", "a", "d"]


def test_class_in_labels_but_never_predicted() -> None:
    report = classification_report(["x", "x", "x"], ["x", "y", "y"])
    y = report.per_class["y"]
    assert (y.precision, y.recall, y.f1, y.support) == (0.0, 0.0, 0.0, 2)
    x = report.per_class["x"]
    assert (x.precision, x.recall, x.f1) == pytest.approx((100 / 3, 100.0, 50.0))


def test_default_classes_include_predictions() -> None:
    report = classification_report(["b", "z"], ["b", "a"])
    assert report.classes == ["a", "b", "z"]
    assert report.per_class["z"].support == 0
    assert report.per_class["a"].recall == 0.0


def _naive(
    preds: list[str], labels: list[str], classes: list[str]
) -> dict[str, tuple[float, float, float, int]]:
    out = {}
    for c in classes:
        tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == c and y == c)
        fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == c and y != c)
        fn = sum(1 for p, y in zip(preds, labels, strict=True) if p != c and y == c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out[c] = (100 * precision, 100 * recall, 100 * f1, tp + fn)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_reference(seed: int) -> None:
    rng = random.Random(seed)
    classes = ["p", "q", "r", "s"]
    labels = [rng.choice(classes[:3]) for _ in range(50)]
    preds = [y if rng.random() < 0.5 else rng.choice(classes) for y in labels]
    report = classification_report(preds, labels, classes=classes)
    expected = _naive(preds, labels, classes)
    for c in classes:
        s = report.per_class[c]
        assert (s.precision, s.recall, s.f1, s.support) == pytest.approx(expected[c])
    assert report.macro_f1 == pytest.approx(sum(v[2] for v in expected.values()) / len(classes))
    assert report.accuracy == pytest.approx(
        100 * sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels)
    )
    assert sum(map(sum, report.confusion)) == len(labels)
    for i, c in enumerate(classes):
        assert report.confusion[i][i] == sum(p == y == c for p, y in zip(preds, labels, strict=True))


def test_unknown_label_or_prediction() -> None:
    with pytest.raises(ValueError, match=r"label 'maybe' is not one of the classes"):
        classification_report(["yes", "no"], ["yes", "maybe"], classes=["yes", "no"])
    with pytest.raises(ValueError, match=r"prediction 'maybe' is not one of the classes"):
        classification_report(["yes", "maybe"], ["yes", "no"], classes=["yes", "no"])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"got 1 predictions but 2 labels"):
        classification_report(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"empty input"):
        classification_report([], [])
    with pytest.raises(ValueError, match=r"'a' more than once"):
        classification_report(["a"], ["a"], classes=["a", "b", "a"])


def _binary() -> ClassificationReport:
    return classification_report(["neg", "neg", "neg", "pos"], ["neg", "neg", "pos", "pos"])


def test_format_table() -> None:
    assert _binary().format_table() == "\n".join(
        [
            "class      precision  recall     f1  support",
            "neg            66.67  100.00  80.00        2",
            "pos           100.00   50.00  66.67        2",
            "macro avg                     73.33        4",
            "accuracy                      75.00        4",
        ]
    )
    assert str(_binary()) == _binary().format_table()
    assert "66.7 " in _binary().format_table(digits=1)


def test_to_rich() -> None:
    table = _binary().to_rich(title="valid")
    assert isinstance(table, Table)
    assert [c.header for c in table.columns] == ["class", "precision", "recall", "f1", "support"]
    assert table.row_count == 4
    console = Console(width=80, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "macro avg" in text and "73.33" in text and "valid" in text
