from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqattn.metrics import mcnemar


def _exact(b: int, c: int) -> float:
    """The definition with integer arithmetic: ``min(1, 2 * sum C(n, i) / 2^n)``."""
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, i) for i in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def _pairs(b: int, c: int, both: int = 0, neither: int = 0) -> tuple[list[bool], list[bool]]:
    first = [True] * b + [False] * c + [True] * both + [False] * neither
    second = [False] * b + [True] * c + [True] * both + [False] * neither
    return first, second


def test_counts_only_discordant_examples() -> None:
    result = mcnemar(*_pairs(10, 2, both=500, neither=80))
    assert (result.first_only, result.second_only) == (10, 2)
    # C(12, 0) + C(12, 1) + C(12, 2) = 79; p = 2 * 79 / 4096.
    assert result.p_value == pytest.approx(2 * 79 / 4096, rel=1e-12)


def test_no_difference_gives_one() -> None:
    assert mcnemar(*_pairs(0, 0, both=7, neither=3)).p_value == 1.0
    assert mcnemar(*_pairs(6, 6)).p_value == 1.0
    assert mcnemar([], []).p_value == 1.0


def test_large_samples_do_not_overflow() -> None:
    """2^n for n in the tens of thousands is far beyond a float; the log-space sum is not."""
    assert mcnemar(*_pairs(20_000, 20_000)).p_value == 1.0
    assert 0.0 <= mcnemar(*_pairs(20_300, 20_000)).p_value < 0.5  # about 1.5 standard errors
    assert mcnemar(*_pairs(21_000, 20_000)).p_value < 1e-5


def test_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same examples"):
        mcnemar([True, False], [True])


@given(st.integers(0, 120), st.integers(0, 120))
def test_matches_the_integer_definition_and_is_symmetric(b: int, c: int) -> None:
    first, second = _pairs(b, c, both=3, neither=2)
    p = mcnemar(first, second).p_value
    assert p == pytest.approx(_exact(b, c), rel=1e-9, abs=1e-300)
    assert p == mcnemar(second, first).p_value
    assert 0.0 <= p <= 1.0
