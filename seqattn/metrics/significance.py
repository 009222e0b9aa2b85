"""Paired significance of a difference in accuracy: McNemar's exact test.

Two classifiers evaluated on the same ``N`` examples are compared on the examples where exactly
one of them is right: ``b`` examples only the first gets right, ``c`` only the second. Under the
null hypothesis that both are equally accurate, each of these ``n = b + c`` discordant examples
is equally likely to fall either way, so ``min(b, c)`` follows a binomial ``(n, 1/2)``. The exact
two-sided p-value (McNemar 1947; the exact binomial form recommended for NLP by Dietterich 1998)
is::

    p = min(1, 2 * sum_{i=0}^{min(b, c)} C(n, i) / 2^n)

Examples both get right or both get wrong carry no information about the difference and are
ignored. The test is paired: it is far more sensitive than comparing two accuracies with their
separate standard errors, because the shared easy and hard examples cancel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PairedTest", "mcnemar"]


@dataclass(frozen=True)
class PairedTest:
    """The discordant counts of two systems on the same examples, and the exact p-value."""

    first_only: int
    """Examples only the first system classifies correctly."""
    second_only: int
    """Examples only the second system classifies correctly."""
    p_value: float
    """Two-sided exact McNemar p-value (1.0 when there is no discordant example)."""


def mcnemar(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> PairedTest:
    """McNemar's exact test on per-example correctness of two systems (same examples, same order).

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(first_correct) != len(second_correct):
        raise ValueError(
            f"paired test needs the same examples: {len(first_correct)} != {len(second_correct)} results"
        )
    first_only = sum(1 for a, b in zip(first_correct, second_correct, strict=True) if a and not b)
    second_only = sum(1 for a, b in zip(first_correct, second_correct, strict=True) if b and not a)
    return PairedTest(first_only, second_only, _two_sided_binomial(first_only, second_only))


def _two_sided_binomial(b: int, c: int) -> float:
    """``min(1, 2 P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``, in log space (exact to
    float precision for any ``n``: no ``2^n`` overflow)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2.0)
        for i in range(k + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top + math.log(sum(math.exp(t - top) for t in log_terms)))
    return min(1.0, 2.0 * tail)
