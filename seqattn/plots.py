"""Pictures of where a model looked: alignment heatmaps and token-weight strips.

The functions take the values the Python API returns (:class:`~seqattn.api.Translation`,
:class:`~seqattn.api.Alignment`, :meth:`~seqattn.api.Classifier.explain` entries), never module
state, and write PNG or SVG by the file's suffix. Labels stay readable up to about 40 x 40
tokens: the figure grows with the number of tokens and long labels are shortened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from seqattn.errors import ConfigError

__all__ = ["check_plot_path", "plot_alignment", "plot_heads", "plot_matrix", "plot_token_weights"]

FORMATS = (".png", ".svg")


def _label(piece: str, width: int = 14) -> str:
    text = piece.replace("▁", "␣") if piece.strip("▁") == "" else piece.replace("▁", "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _fit_title(title: str, width_inches: float) -> str:
    """Each line of ``title`` shortened to what fits the figure at 9 pt (about 13 chars/inch)."""
    limit = max(int(width_inches * 13), 40)
    return "\n".join(line if len(line) <= limit else line[: limit - 1] + "…" for line in title.splitlines())


def _pair_title(result: Any) -> str:
    source = "".join(result.source_pieces[:-1]).replace("▁", " ").strip()
    target = "".join(p for p in result.target_pieces if p != "</s>").replace("▁", " ").strip()
    return f"{source}\n→ {target}"


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"{path}: plots are written as {' or '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a file to write")
    return path


def plot_matrix(
    matrix: Any,
    rows: Sequence[str],
    columns: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    xlabel: str = "source",
    ylabel: str = "target",
) -> Path:
    """A labelled heatmap of ``matrix`` (``len(rows) x len(columns)``) with a colour bar."""
    path = check_plot_path(path)
    values = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if values.shape != (len(rows), len(columns)):
        raise ValueError(f"matrix {values.shape} does not match {len(rows)} rows x {len(columns)} columns")
    width = min(4 + 0.32 * len(columns), 22)
    height = min(2.5 + 0.3 * len(rows), 20)
    figure, axes = plt.subplots(figsize=(width, height), dpi=120)
    image = axes.imshow(
        values, cmap="Blues", vmin=0.0, vmax=max(float(values.max(initial=0.0)), 1e-9), aspect="auto"
    )
    axes.set_xticks(range(len(columns)), [_label(c) for c in columns], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xticks(np.arange(-0.5, len(columns)), minor=True)
    axes.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    axes.grid(which="minor", color="white", linewidth=0.5)
    axes.tick_params(which="minor", length=0)
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label="attention weight")
    if title:
        axes.set_title(_fit_title(title, width), fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_alignment(
    result: Any, path: str | os.PathLike[str], *, words: bool = False, title: str | None = None
) -> Path:
    """Heatmap of a :class:`~seqattn.api.Translation` or :class:`~seqattn.api.Alignment`.

    Rows are the produced (or force-decoded) target pieces, columns the source pieces; with
    ``words=True`` (an Alignment) pieces are merged into words.
    """
    if words:
        if not hasattr(result, "word_attention"):
            raise ConfigError("words=True needs an Alignment (Translator.align), not a translation")
        matrix, rows, columns = result.word_attention, result.target_words, result.source_words
    else:
        matrix, rows, columns = result.attention, result.target_pieces, result.source_pieces
    return plot_matrix(matrix, rows, columns, path, title=_pair_title(result) if title is None else title)


def plot_heads(
    result: Any,
    path: str | os.PathLike[str],
    *,
    layers: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Per-head grid of a :class:`~seqattn.api.Translation` (or an Alignment made with
    ``heads=True``): one panel per decoder layer (rows) and head (columns), pieces on the axes,
    one colour scale for all panels so heads can be compared.

    ``layers`` picks rows by index (negative counts from the top); default all layers.
    """
    path = check_plot_path(path)
    heads = getattr(result, "heads", None)
    if heads is None:
        raise ConfigError("this result has no per-head attention (use Translator.align(..., heads=True))")
    values = np.asarray(heads.detach().cpu() if hasattr(heads, "detach") else heads, dtype=float)
    num_layers, num_heads = values.shape[:2]
    chosen = list(range(num_layers)) if layers is None else list(layers)
    for layer in chosen:
        if not -num_layers <= layer < num_layers:
            raise ConfigError(f"layer {layer} does not exist (the model has {num_layers} decoder layers)")
    chosen = [layer % num_layers for layer in chosen]
    rows, columns = result.target_pieces, result.source_pieces
    panel_w = min(1.0 + 0.24 * len(columns), 9.0)
    panel_h = min(0.8 + 0.22 * len(rows), 8.0)
    figure, axes = plt.subplots(
        len(chosen),
        num_heads,
        figsize=(min(panel_w * num_heads + 1.5, 40), min(panel_h * len(chosen) + 1.0, 40)),
        dpi=110,
        squeeze=False,
    )
    top = max(float(values.max(initial=0.0)), 1e-9)
    image = None
    for r, layer in enumerate(chosen):
        for h in range(num_heads):
            ax = axes[r][h]
            image = ax.imshow(values[layer, h], cmap="Blues", vmin=0.0, vmax=top, aspect="auto")
            ax.set_title(f"layer {layer + 1} · head {h + 1}", fontsize=8)
            ax.set_xticks(range(len(columns)))
            ax.set_yticks(range(len(rows)))
            bottom, left = r == len(chosen) - 1, h == 0
            ax.set_xticklabels(
                [_label(c, 10) for c in columns] if bottom else [], rotation=60, ha="right", fontsize=6
            )
            ax.set_yticklabels([_label(t, 10) for t in rows] if left else [], fontsize=6)
            ax.tick_params(length=0)
    figure.colorbar(image, ax=axes, fraction=0.02, pad=0.01, label="attention weight")
    title = _pair_title(result) if title is None else title
    figure.suptitle(_fit_title(title, figure.get_figwidth()), fontsize=9)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_token_weights(
    explanation: dict[str, Any], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Token weights of a :meth:`~seqattn.api.Classifier.explain` entry as a one-row heatmap
    per pooling query (flat models) or one row per sentence (hierarchical models)."""
    label = f"{explanation['label']} ({explanation['probability']:.2f})"
    if "tokens" in explanation:
        tokens = explanation["tokens"]
        matrix = np.asarray(explanation["weights"], dtype=float)
        rows = [f"query {q + 1}" for q in range(matrix.shape[0])]
        return plot_matrix(matrix, rows, tokens, path, title=title or f"→ {label}", xlabel="token", ylabel="")
    sentences = explanation["sentences"]
    width = max((len(s) for s in sentences), default=1)
    matrix = np.zeros((len(sentences), width))
    for i, weights in enumerate(explanation["word_weights"]):
        matrix[i, : len(weights)] = weights
    sentence_weight = (
        explanation["sentence_weights"][0] if explanation["sentence_weights"] else [0.0] * len(sentences)
    )
    rows = [f"s{i + 1} ({w:.2f})" for i, w in enumerate(sentence_weight)]
    columns = [str(j + 1) for j in range(width)]
    return plot_matrix(
        matrix,
        rows,
        columns,
        path,
        title=title or f"word weights per sentence → {label}",
        xlabel="word position",
        ylabel="sentence (weight)",
    )
