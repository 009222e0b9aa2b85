"""Splitting documents into sentences for hierarchical models.

Paragraph or headline boundaries written as `` ¶ `` (the marker the built-in ``news-topics``
data uses, since its headlines end without a full stop) always split; inside a paragraph, a
sentence ends at ``.``, ``!`` or ``?`` (optionally followed by closing quotes or brackets) before
whitespace and an upper-case letter, digit or opening quote. The rule is deliberately simple and
language-agnostic: it runs the same way at training and at inference, which matters more to a
classifier than linguistic precision.
"""

from __future__ import annotations

import re

__all__ = ["PARAGRAPH", "split_sentences"]

PARAGRAPH = "¶"
_BOUNDARY = re.compile(r"([.!?][\"'”’)\]]*)\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])")  # noqa: RUF001 (typographic quotes)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped and non-empty; a text with none gives ``[""]``."""
    sentences = []
    for paragraph in text.split(PARAGRAPH):
        start = 0
        for match in _BOUNDARY.finditer(paragraph):
            sentences.append(paragraph[start : match.end(1)].strip())
            start = match.end()
        sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s] or [""]
