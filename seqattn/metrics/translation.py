"""Corpus-level translation metrics through sacreBLEU (Post 2018).

Scores are computed by sacreBLEU's own metric objects, so they are exactly the numbers
sacreBLEU prints, and each :class:`Score` carries sacreBLEU's signature string
(``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.x``), which must be reported with
the score for it to be comparable (Post 2018, "A Call for Clarity in Reporting BLEU Scores").

* BLEU (Papineni et al. 2002) with sacreBLEU's defaults: cased, the ``13a`` tokenizer of the
  WMT ``mteval-v13a`` script, exponential smoothing, and no effective order (corpus level)::

      BLEU = BP * exp(sum_{n=1..4} 1/4 * log p_n),   BP = min(1, exp(1 - r / c))

  with ``p_n`` the corpus-level modified n-gram precisions, ``c`` the hypothesis length and
  ``r`` the reference length (in tokens, summed over the corpus).
* chrF (Popovic 2015) with sacreBLEU's defaults: character n-grams up to 6, no word n-grams,
  ``beta = 2`` (recall weighted twice as much as precision), whitespace excluded::

      chrF_beta = (1 + beta^2) * chrP * chrR / (beta^2 * chrP + chrR)

Every function takes one reference per hypothesis, in the same order, and reports scores on
the 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

__all__ = ["Score", "corpus_bleu", "corpus_chrf", "exact_match"]


@dataclass(frozen=True)
class Score:
    """One corpus-level score (0-100) and how it was computed."""

    name: str
    """Metric name as sacreBLEU prints it: ``BLEU`` or ``chrF2``."""
    score: float
    """The corpus score, 0-100."""
    signature: str
    """sacreBLEU's signature, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``."""
    details: dict[str, Any]
    """Metric statistics: for BLEU ``precisions`` (1- to 4-gram, 0-100), ``bp``, ``ratio``,
    ``sys_len``, ``ref_len``, ``counts`` and ``totals``; for chrF ``beta``, ``char_order`` and
    ``word_order``."""

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f} ({self.signature})"


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references; "
            "expected one reference per hypothesis"
        )
    if not hypotheses:
        raise ValueError("no hypotheses to score (empty input)")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """Corpus BLEU of ``hypotheses`` against one reference each, as sacreBLEU computes it.

    Equal to ``sacrebleu.corpus_bleu(hypotheses, [references]).score`` (cased, ``13a``
    tokenization, exponential smoothing). Raises :class:`ValueError` when the two lists differ
    in length or are empty.
    """
    _check_pairs(hypotheses, references)
    metric = BLEU()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    details = {
        "precisions": list(result.precisions),
        "bp": result.bp,
        "ratio": result.ratio,
        "sys_len": result.sys_len,
        "ref_len": result.ref_len,
        "counts": list(result.counts),
        "totals": list(result.totals),
    }
    return Score(name=result.name, score=result.score, signature=str(metric.get_signature()), details=details)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """Corpus chrF2 of ``hypotheses`` against one reference each, as sacreBLEU computes it.

    Equal to ``sacrebleu.corpus_chrf(hypotheses, [references]).score`` (character 6-grams,
    ``beta = 2``, cased, whitespace ignored). Raises :class:`ValueError` when the two lists
    differ in length or are empty.
    """
    _check_pairs(hypotheses, references)
    metric = CHRF()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    details = {"beta": result.beta, "char_order": result.char_order, "word_order": result.word_order}
    return Score(name=result.name, score=result.score, signature=str(metric.get_signature()), details=details)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Percentage (0-100) of hypotheses equal to their reference after stripping whitespace.

    Only leading and trailing whitespace is ignored; case and inner spacing count. Raises
    :class:`ValueError` when the two lists differ in length or are empty.
    """
    _check_pairs(hypotheses, references)
    hits = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True))
    return 100.0 * hits / len(hypotheses)
