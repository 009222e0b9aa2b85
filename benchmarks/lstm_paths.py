"""LSTM training paths: by length against packed, and how close ``by_length_pays`` chooses.

fp32 training on a CPU can run an ``nn.LSTM`` over a variable-length batch in two ways
(:mod:`seqattn.models.lstm`): one packed call, or one call per distinct length on the sequences
of that length, unpadded. Which is faster depends on the batch: a few lengths, or many sequences
per length, favour the by-length path; many short groups favour packing. ``run_lstm`` picks
with :func:`~seqattn.models.lstm.by_length_pays`, a rule whose constants were measured on one
machine; this script measures both paths, forward + backward, over a grid of LSTM sizes, rows,
lengths and groups (bidirectional, lengths spread over the last ``groups`` positions as
length-bucketed batches leave them, plus batches with lengths spread over the whole range as
a hierarchical classifier's word encoder sees them) and prints, per case, both times, the
rule's choice and its regret (its time over the faster path's). The summary line is the total
time of each policy over the grid against the per-case best.

Usage: ``python benchmarks/lstm_paths.py [--quick] [--threads 2] [--json PATH]``. Results go
to ``benchmarks/results/lstm_paths.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from functools import partial
from pathlib import Path

import torch
from _timing import describe_machine, measure
from rich.console import Console
from rich.table import Table
from torch import nn

from seqattn.allocator import keep_freed_memory
from seqattn.models.lstm import _by_length, _packed, by_length_pays

CPU = torch.device("cpu")
RESULTS = Path(__file__).parent / "results" / "lstm_paths.json"
SIZES = ((128, 64, 1), (128, 128, 1), (256, 128, 2))  # (input, hidden per direction, layers)


def batch_lengths(rows: int, longest: int, groups: int, *, spread: bool) -> torch.Tensor:
    """``(rows,)`` lengths with ``groups`` distinct values, evenly shared: the last ``groups``
    positions up to ``longest``, or (``spread``) values spread over ``1..longest``."""
    if spread and groups > 1:
        values = torch.linspace(1, longest, groups).round().long()
    else:
        values = torch.arange(longest - groups + 1, longest + 1)
    return values[torch.arange(rows) % groups]


def fwd_bwd(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, *, by_length: bool) -> None:
    x = x.detach().requires_grad_(True)
    states, (h, _) = (_by_length if by_length else _packed)(lstm, x, lengths)
    (states.sum() + h.sum()).backward()


def cases(quick: bool) -> list[tuple[tuple[int, int, int], int, int, int, bool]]:
    sizes = SIZES[:1] if quick else SIZES
    longest = (20, 60)
    rows = (8, 128) if quick else (8, 32, 128, 512)
    groups = (1, 2, 4, 16) if quick else (1, 2, 4, 8, 16, 40)
    grid = []
    for size, t, b, g in itertools.product(sizes, longest, rows, groups):
        if g <= min(t, b):
            grid.append((size, t, b, g, False))
            if g >= 8:
                grid.append((size, t, b, g, True))
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one LSTM size, fewer rows and groups")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the Trainer runs: bounded primitive cache, no fresh pages per step
    start = time.perf_counter()
    console = Console()
    machine = describe_machine(CPU)
    console.print(f"[bold]machine[/]: {machine['cpu']}, torch {machine['torch']}, {args.threads} threads")

    table = Table(
        title="LSTM forward + backward, fp32, by length vs packed "
        "(E/H/L: input, hidden, layers; T: longest; G: lengths)",
        title_justify="left",
    )
    for column in ("E/H/L", "rows", "T", "G", "lengths", "len ms", "pack ms", "rule", "regret"):
        left = column in ("E/H/L", "lengths", "rule")
        table.add_column(
            column, justify="left" if left else "right", min_width=9 if column == "E/H/L" else None
        )
    records = []
    totals = {"by_length": 0.0, "packed": 0.0, "rule": 0.0, "best": 0.0}
    torch.manual_seed(0)
    for (inputs, hidden, layers), longest, rows, groups, spread in cases(args.quick):
        lstm = nn.LSTM(inputs, hidden, num_layers=layers, batch_first=True, bidirectional=True).train()
        lengths = batch_lengths(rows, longest, groups, spread=spread)
        x = torch.randn(rows, longest, inputs)
        timings = measure(
            {
                "by_length": partial(fwd_bwd, lstm, x, lengths, by_length=True),
                "packed": partial(fwd_bwd, lstm, x, lengths, by_length=False),
            },
            device=CPU,
            warmup=1,
            repeats=3,
        )
        by_length_ms, packed_ms = timings["by_length"].median_ms, timings["packed"].median_ms
        rule = by_length_pays(lengths.unique(), rows=rows)
        chosen = by_length_ms if rule else packed_ms
        best = min(by_length_ms, packed_ms)
        for key, value in (
            ("by_length", by_length_ms),
            ("packed", packed_ms),
            ("rule", chosen),
            ("best", best),
        ):
            totals[key] += value
        records.append(
            {
                "input": inputs,
                "hidden": hidden,
                "layers": layers,
                "rows": rows,
                "longest": longest,
                "groups": groups,
                "lengths": "spread" if spread else "last positions",
                "by_length_ms": round(by_length_ms, 3),
                "packed_ms": round(packed_ms, 3),
                "rule_by_length": rule,
                "regret": round(chosen / best, 3),
            }
        )
        table.add_row(
            f"{inputs}/{hidden}/{layers}",
            str(rows),
            str(longest),
            str(groups),
            "spread" if spread else "last",
            f"{by_length_ms:.1f}",
            f"{packed_ms:.1f}",
            "len" if rule else "pack",
            f"{chosen / best:.2f}x",
        )
    console.print(table)
    summary = {key: round(totals[key] / totals["best"], 3) for key in ("by_length", "packed", "rule")}
    worst = max(record["regret"] for record in records)
    console.print(
        "over the grid, time against the faster path per case: "
        f"always by length {summary['by_length']:.2f}x, always packed {summary['packed']:.2f}x, "
        f"the rule {summary['rule']:.2f}x (worst case {worst:.2f}x)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "threads": args.threads, "cases": records, "totals_vs_best": summary}
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {args.json} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
