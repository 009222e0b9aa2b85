"""benchmarks/lstm_paths.py: the batches it builds, and a quick run's record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from lstm_paths import batch_lengths, cases, main


@pytest.mark.parametrize("spread", [False, True])
@pytest.mark.parametrize(("rows", "longest", "groups"), [(8, 20, 1), (32, 20, 4), (128, 60, 40)])
def test_batch_lengths_has_the_asked_groups(rows: int, longest: int, groups: int, spread: bool) -> None:
    lengths = batch_lengths(rows, longest, groups, spread=spread)
    assert lengths.shape == (rows,)
    assert lengths.unique().numel() == groups
    assert int(lengths.max()) == longest
    low = 1 if spread and groups > 1 else longest - groups + 1
    assert int(lengths.min()) == low
    counts = torch.bincount(lengths)[lengths.unique()]
    assert int(counts.max() - counts.min()) <= 1  # evenly shared


def test_grid_cases_are_feasible() -> None:
    grid = cases(quick=False)
    assert all(groups <= min(longest, rows) for _, longest, rows, groups, _ in grid)
    assert any(spread for *_, spread in grid) and any(not spread for *_, spread in grid)
    assert set(cases(quick=True)) <= set(grid)


def test_quick_run_records_every_case_and_the_rule(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "lstm_paths.json"
    main(["--quick", "--threads", "1", "--json", str(out)])
    payload = json.loads(out.read_text())
    records = payload["cases"]
    assert len(records) == len(cases(quick=True))
    for record in records:
        assert record["by_length_ms"] > 0 and record["packed_ms"] > 0
        chosen = record["by_length_ms"] if record["rule_by_length"] else record["packed_ms"]
        assert record["regret"] == pytest.approx(
            chosen / min(record["by_length_ms"], record["packed_ms"]), abs=2e-3
        )
    totals = payload["totals_vs_best"]
    assert min(totals.values()) >= 1.0
