"""Single-label classification metrics: accuracy, per-class precision/recall/F1, macro F1.

For a class ``c`` with ``tp`` true positives, ``fp`` false positives and ``fn`` false
negatives (van Rijsbergen 1979; Manning, Raghavan & Schuetze 2008, ch. 8 and 13.6)::

    precision_c = tp / (tp + fp)        recall_c = tp / (tp + fn)
    F1_c        = 2 * precision_c * recall_c / (precision_c + recall_c)
    macro F1    = mean of F1_c over all classes
    accuracy    = correct predictions / examples

Undefined ratios are 0, never NaN and never a warning: a class that is never predicted has
precision 0, a class that never occurs in the labels has recall 0, and F1 is 0 when precision
and recall are both 0. (This matches scikit-learn's ``zero_division=0``.) Macro F1 averages over
every class in ``classes``, including classes absent from both labels and predictions, which
then count as F1 0; pass ``classes`` only with the classes that should be averaged.

All scores are percentages (0-100).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

__all__ = ["ClassScores", "ClassificationReport", "classification_report"]


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 (percentages) of one class, and its support."""

    precision: float
    recall: float
    f1: float
    support: int
    """Number of examples whose true label is this class."""


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of a single-label classifier over one evaluation set."""

    classes: list[str]
    """Class names; the order of :attr:`confusion` rows and columns."""
    accuracy: float
    """Percentage of predictions equal to their label."""
    macro_f1: float
    """Unweighted mean of the per-class F1 over :attr:`classes` (percentage)."""
    per_class: dict[str, ClassScores]
    """Per-class scores, keyed by class name, in :attr:`classes` order."""
    confusion: list[list[int]]
    """``confusion[i][j]``: examples of true class ``classes[i]`` predicted as ``classes[j]``."""

    @property
    def total(self) -> int:
        """Number of examples."""
        return sum(map(sum, self.confusion))

    def _rows(self, digits: int) -> list[tuple[str, str, str, str, str]]:
        rows = [
            (
                name,
                f"{s.precision:.{digits}f}",
                f"{s.recall:.{digits}f}",
                f"{s.f1:.{digits}f}",
                str(s.support),
            )
            for name, s in self.per_class.items()
        ]
        rows.append(("macro avg", "", "", f"{self.macro_f1:.{digits}f}", str(self.total)))
        rows.append(("accuracy", "", "", f"{self.accuracy:.{digits}f}", str(self.total)))
        return rows

    def format_table(self, *, digits: int = 2) -> str:
        """A plain-text table: one row per class, then macro F1 and accuracy (percentages).

        ::

            class      precision  recall     f1  support
            neg            66.67  100.00  80.00        2
            pos           100.00   50.00  66.67        2
            macro avg                     73.33        4
            accuracy                      75.00        4
        """
        header = ("class", "precision", "recall", "f1", "support")
        rows = [header, *self._rows(digits)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = []
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def to_rich(self, *, digits: int = 2, title: str | None = None) -> Table:
        """The same table as :meth:`format_table`, as a :class:`rich.table.Table`."""
        table = Table(title=title)
        table.add_column("class")
        for name in ("precision", "recall", "f1", "support"):
            table.add_column(name, justify="right")
        rows = self._rows(digits)
        for row in rows[:-2]:
            table.add_row(*row)
        table.add_section()
        for row in rows[-2:]:
            table.add_row(*row)
        return table

    def __str__(self) -> str:
        return self.format_table()


def _ratio(numerator: int, denominator: int) -> float:
    """``100 * numerator / denominator``, or 0 when the denominator is 0."""
    return 100.0 * numerator / denominator if denominator else 0.0


def classification_report(
    predictions: Sequence[str], labels: Sequence[str], *, classes: Sequence[str] | None = None
) -> ClassificationReport:
    """Score ``predictions`` against the true ``labels`` (same length, same order).

    ``classes`` fixes the class list and its order (e.g. the classifier's label vocabulary, so
    that classes missing from this evaluation set still appear); by default it is the sorted
    union of the labels and predictions. A label or prediction outside ``classes`` raises
    :class:`ValueError` naming it. See the module docstring for the formulas and the zero
    conventions (a never-predicted class has precision 0).
    """
    if len(predictions) != len(labels):
        raise ValueError(f"got {len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("no predictions to score (empty input)")
    if classes is None:
        names = sorted(set(labels) | set(predictions))
    else:
        names = list(classes)
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"classes lists {duplicate!r} more than once")
    index = {name: i for i, name in enumerate(names)}
    for kind, values in (("label", labels), ("prediction", predictions)):
        for value in values:
            if value not in index:
                raise ValueError(
                    f"{kind} {value!r} is not one of the classes ({', '.join(map(repr, names))})"
                )

    n = len(names)
    confusion = [[0] * n for _ in range(n)]
    for gold, guess in zip(labels, predictions, strict=True):
        confusion[index[gold]][index[guess]] += 1

    per_class: dict[str, ClassScores] = {}
    for i, name in enumerate(names):
        tp = confusion[i][i]
        support = sum(confusion[i])  # row: true class i
        predicted = sum(row[i] for row in confusion)  # column: predicted as i
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = ClassScores(precision=precision, recall=recall, f1=f1, support=support)

    correct = sum(confusion[i][i] for i in range(n))
    macro_f1 = sum(s.f1 for s in per_class.values()) / n
    return ClassificationReport(
        classes=names,
        accuracy=_ratio(correct, len(labels)),
        macro_f1=macro_f1,
        per_class=per_class,
        confusion=confusion,
    )
