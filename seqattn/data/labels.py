"""Class labels of a classification corpus: names <-> ids.

The label set is fixed by the training data (sorted, so ids do not depend on example order) and
saved with the model. A label met later that the model does not know -- in validation or test
data, or in gold labels given to ``seqattn evaluate`` -- is an error naming where it was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqattn.errors import DataError

__all__ = ["LabelVocabulary"]


class LabelVocabulary:
    """A fixed, ordered set of class labels."""

    def __init__(self, labels: Sequence[str]) -> None:
        if not labels:
            raise DataError("a classifier needs at least one label")
        if len(set(labels)) != len(labels):
            raise DataError(f"duplicate labels in {list(labels)}")
        self.labels = list(labels)
        self._ids = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_data(cls, labels: Iterable[str]) -> LabelVocabulary:
        """The sorted set of labels seen in training data."""
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self._ids

    def id(self, label: str, *, where: str = "") -> int:
        """The id of ``label``; ``where`` (e.g. ``file:line``) goes into the error message."""
        try:
            return self._ids[label]
        except KeyError:
            prefix = f"{where}: " if where else ""
            known = ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
            raise DataError(f"{prefix}label {label!r} is not one the model knows ({known})") from None

    def encode(self, labels: Sequence[str], *, where: Sequence[str] | None = None) -> list[int]:
        """Ids of many labels; ``where[i]`` names the origin of ``labels[i]`` in errors."""
        return [
            self.id(label, where=where[i] if where is not None else f"example {i + 1}")
            for i, label in enumerate(labels)
        ]

    def name(self, index: int) -> str:
        return self.labels[index]
