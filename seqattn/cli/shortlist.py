"""``seqattn shortlist``: build a translation model's lexical shortlist from parallel text.

``seqattn train`` already builds one from the training pairs (``train.shortlist``); this
command rebuilds it from other text or with other sizes.

The shortlist (:mod:`seqattn.decoding.shortlist`) is written into the model directory as
``shortlist.pt`` (through a temporary file, renamed at the end); ``seqattn translate
--shortlist`` and ``seqattn evaluate --shortlist`` then score only its pieces.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seqattn.api import Translator
from seqattn.cli.infer import _aligned, _load, model_option
from seqattn.decoding.shortlist import (
    DEFAULT_FREQUENT,
    DEFAULT_TOP,
    MAX_PAIRS,
    SHORTLIST_FILE,
    LexicalShortlist,
)

console = Console(stderr=True)
COVERAGE_PAIRS = 2000
"""Training pairs whose reference pieces the summary checks against their shortlists."""


@click.command()
@model_option
@click.option(
    "--src",
    "src_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Training sources.",
)
@click.option(
    "--tgt",
    "tgt_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Training targets.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=DEFAULT_TOP,
    show_default=True,
    help="Translations kept per source piece.",
)
@click.option(
    "--frequent",
    type=click.IntRange(min=0),
    default=DEFAULT_FREQUENT,
    show_default=True,
    help="Most frequent target pieces every sentence may produce.",
)
@click.option(
    "--iterations", type=click.IntRange(min=1), default=5, show_default=True, help="IBM Model 1 EM rounds."
)
@click.option(
    "--max-pairs",
    type=click.IntRange(min=1),
    default=MAX_PAIRS,
    show_default=True,
    help="Use at most the first N sentence pairs.",
)
def shortlist(
    model_dir: Path,
    src_path: Path,
    tgt_path: Path,
    top: int,
    frequent: int,
    iterations: int,
    max_pairs: int,
) -> None:
    """Build MODEL/shortlist.pt from parallel training text (IBM Model 1 + frequent pieces)."""
    translator: Translator = _load(model_dir, Translator, "cpu", False, False)  # for its tokenizers
    sources, targets = _aligned(src_path, tgt_path)
    pairs = [(s, t) for s, t in zip(sources, targets, strict=True) if s.strip() and t.strip()][:max_pairs]
    if not pairs:
        raise click.BadParameter(
            f"{src_path} and {tgt_path} have no non-empty sentence pair", param_hint="--src"
        )
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"IBM Model 1 on {len(pairs):,} pairs", total=iterations)
        lexical = translator.build_shortlist(
            [s for s, _ in pairs],
            [t for _, t in pairs],
            top=top,
            frequent=frequent,
            iterations=iterations,
            progress=lambda i: progress.update(task, completed=i + 1),
        )
    seconds = time.perf_counter() - start
    path = model_dir / SHORTLIST_FILE
    lexical.save(path)
    sizes, coverage = _coverage(translator, lexical, pairs[:COVERAGE_PAIRS])
    table = Table(title=f"shortlist -> {path}", show_header=False)
    table.add_row("sentence pairs", f"{len(pairs):,}")
    table.add_row("translations per source piece", str(top))
    table.add_row("frequent target pieces", str(len(lexical.frequent)))
    table.add_row("pieces per sentence (mean)", f"{sizes:,.0f} of {lexical.tgt_vocab:,}")
    table.add_row(
        f"reference pieces covered (first {min(len(pairs), COVERAGE_PAIRS):,} pairs)", f"{coverage:.2%}"
    )
    table.add_row("built in", f"{seconds:.1f} s")
    Console().print(table)


def _coverage(
    translator: Translator, lexical: LexicalShortlist, pairs: list[tuple[str, str]]
) -> tuple[float, float]:
    """Mean shortlist size per sentence, and the share of reference pieces in their sentence's
    shortlist (how often the full model's best output could be out of reach)."""
    import torch

    from seqattn.data.batching import pad_batch

    sizes, covered, total = 0, 0, 0
    for start in range(0, len(pairs), 256):
        chunk = pairs[start : start + 256]
        src, _ = pad_batch([translator.source.encode(s, eos=True) for s, _ in chunk])
        vocab, allowed = lexical.columns(src)
        sizes += int(allowed.sum())
        for row, (_, target) in enumerate(chunk):
            ids = torch.as_tensor(translator.target.encode(target), dtype=torch.long)
            permitted = torch.zeros(lexical.tgt_vocab, dtype=torch.bool)
            permitted[vocab[allowed[row]]] = True
            covered += int(permitted[ids].sum())
            total += ids.numel()
    return sizes / max(len(pairs), 1), covered / max(total, 1)
