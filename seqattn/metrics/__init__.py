"""Evaluation metrics: BLEU/chrF/exact match, classification scores, word alignment and AER,
paired significance (McNemar)."""

from seqattn.metrics.alignment import (
    AERResult,
    Link,
    aer,
    char_spans_to_token_links,
    format_links,
    hard_alignment,
    merge_subwords,
    parse_links,
    read_alignment_file,
    token_offsets,
)
from seqattn.metrics.classification import ClassificationReport, ClassScores, classification_report
from seqattn.metrics.significance import PairedTest, mcnemar
from seqattn.metrics.translation import Score, corpus_bleu, corpus_chrf, exact_match

__all__ = [
    "AERResult",
    "ClassScores",
    "ClassificationReport",
    "Link",
    "PairedTest",
    "Score",
    "aer",
    "char_spans_to_token_links",
    "classification_report",
    "corpus_bleu",
    "corpus_chrf",
    "exact_match",
    "format_links",
    "hard_alignment",
    "mcnemar",
    "merge_subwords",
    "parse_links",
    "read_alignment_file",
    "token_offsets",
]
