"""Quick looks in the terminal: attention drawn with rich instead of matplotlib.

* :func:`highlight_tokens` -- a classified text with each token's background shaded by its
  attention weight (:meth:`~seqattn.api.Classifier.explain` entries);
* :func:`alignment_grid` -- a translation's attention as a grid of shaded cells, one row per
  target piece (or word) and one column per source piece (or word), each cell showing the
  weight in tenths (``·`` below 0.05) so the picture also reads without colour.

Source tokens label the columns by number, with a legend above the grid: rotated labels do not
exist in a terminal, and numbering keeps 40 x 40 grids within 160 columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

__all__ = ["alignment_grid", "highlight_tokens", "print_alignment"]


def _shade(weight: float, top: float) -> str:
    level = int(255 - 200 * min(max(weight / top, 0.0), 1.0)) if top > 0 else 255
    return f"rgb(255,{level},{level})" if level > 0 else "rgb(255,55,55)"


def _word(piece: str) -> str:
    return piece.replace("▁", " ")


def highlight_tokens(entry: dict[str, Any]) -> Text:
    """A classified text with each token's background shaded by its (first query's) weight."""
    text = Text()
    pieces = entry.get("tokens") or [p for sentence in entry.get("sentences", []) for p in sentence]
    weights = entry["weights"][0] if "weights" in entry else [w for row in entry["word_weights"] for w in row]
    top = max(weights, default=1.0) or 1.0
    for piece, weight in zip(pieces, weights, strict=False):
        text.append(_word(piece), style=f"on {_shade(weight, top)}")
    text.append(f"   -> {entry['label']} ({entry['probability']:.2f})")
    return text


def alignment_grid(result: Any, *, words: bool = False) -> Group:
    """A :class:`~seqattn.api.Translation` or :class:`~seqattn.api.Alignment` as a shaded grid.

    Rows are target pieces (words with ``words=True`` on an Alignment), columns the source
    pieces, numbered; each cell holds ``round(10 * weight)`` (``·`` under 0.05) on a background
    whose red grows with the weight relative to the largest one.
    """
    if words:
        matrix, rows, columns = result.word_attention, result.target_words, result.source_words
    else:
        matrix, rows, columns = result.attention, result.target_pieces, result.source_pieces
    values = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    legend = Text("source: ", style="bold")
    for j, token in enumerate(columns):
        legend.append(f"{j}", style="bold cyan")
        legend.append(f"={_word(token).strip() or '␣'}  ")
    table = Table(show_edge=False, box=None, pad_edge=False, padding=(0, 0), collapse_padding=True)
    table.add_column("target", justify="right", no_wrap=True, style="bold")
    for j in range(len(columns)):
        table.add_column(str(j), justify="center", width=3, no_wrap=True, header_style="bold cyan")
    top = float(values.max(initial=0.0))
    for i, row_token in enumerate(rows):
        cells = [Text(_word(row_token).strip() or "␣", overflow="ellipsis")]
        for j in range(len(columns)):
            weight = float(values[i, j])
            mark = "·" if weight < 0.05 else str(min(round(10 * weight), 9) if weight < 0.95 else "#")
            cells.append(Text(f" {mark} ", style=f"black on {_shade(weight, top)}"))
        table.add_row(*cells)
    caption = Text("cell = weight in tenths (# = 1.0, · < 0.05)", style="dim")
    return Group(legend, table, caption)


def print_alignment(result: Any, *, words: bool = False, console: Console | None = None) -> None:
    """Print :func:`alignment_grid` on stdout, never squeezing cells: the console is widened to
    the grid when the terminal is narrower (a 40 x 40 grid needs about 135 columns)."""
    columns = len(result.source_words if words else result.source_pieces)
    labels = result.target_words if words else result.target_pieces
    label_width = max((len(_word(t).strip()) for t in labels), default=6)
    needed = max(label_width, 6) + 3 * columns + 1
    console = console or Console()
    width = console.width
    console.width = max(width, needed)
    try:
        console.print(alignment_grid(result, words=words))
    finally:
        console.width = width
