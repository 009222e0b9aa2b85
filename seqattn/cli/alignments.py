"""``seqattn plot``, ``seqattn align`` and ``seqattn aer``: where a model looked."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from seqattn.api import Classifier, Translator, load
from seqattn.cli.infer import _aligned, model_option, output
from seqattn.metrics.alignment import aer as alignment_error_rate
from seqattn.metrics.alignment import format_links, read_alignment_file
from seqattn.plots import check_plot_path, plot_alignment, plot_heads, plot_token_weights
from seqattn.terminal import highlight_tokens, print_alignment

console = Console(stderr=True)


@click.command()
@model_option
@click.option("--text", required=True, help="The sentence (source, or text to classify).")
@click.option("--reference", default=None, help="Force-decode this target instead of translating.")
@click.option(
    "--output",
    "-o",
    "output_path",
    type=click.Path(path_type=Path),
    default=None,
    help="FILE.png or FILE.svg (optional with --terminal).",
)
@click.option("--words", is_flag=True, help="Merge subword pieces into words (needs --reference).")
@click.option("--heads", is_flag=True, help="One panel per decoder layer and head (translation models).")
@click.option(
    "--layer",
    "layers",
    type=int,
    multiple=True,
    help="With --heads: only these decoder layers (1-based, negative counts from the top; repeatable).",
)
@click.option("--terminal", is_flag=True, help="Also draw the attention in the terminal.")
@click.option("--beam", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--device", default="auto", show_default=True)
def plot(
    model_dir: Path,
    text: str,
    reference: str | None,
    output_path: Path | None,
    words: bool,
    heads: bool,
    layers: tuple[int, ...],
    terminal: bool,
    beam: int,
    device: str,
) -> None:
    """Draw the attention of one sentence: an alignment heatmap (per head on request) or token
    weights; in a PNG/SVG file, in the terminal, or both."""
    if output_path is None and not terminal:
        raise click.BadParameter(
            "give a file to write (-o FILE.png|svg) or --terminal", param_hint="--output"
        )
    if output_path is not None:
        check_plot_path(output_path)  # before any work
    if words and heads:
        raise click.BadParameter("per-head panels are drawn over pieces, not words", param_hint="--words")
    if layers and not heads:
        raise click.BadParameter("--layer selects panels of --heads", param_hint="--layer")
    if 0 in layers:
        raise click.BadParameter("layers are numbered from 1 (or -1 for the top one)", param_hint="--layer")
    model = load(model_dir, device=device)
    if isinstance(model, Classifier):
        if heads or words:
            raise click.BadParameter(
                "--heads and --words apply to translation models",
                param_hint="--heads" if heads else "--words",
            )
        entry = model.explain([text])[0]
        if output_path is not None:
            plot_token_weights(entry, output_path)
        console.print(highlight_tokens(entry))
    else:
        assert isinstance(model, Translator)
        if words and reference is None:
            raise click.BadParameter(
                "merging pieces into words needs --reference (force decoding)", param_hint="--words"
            )
        result = (
            model.align([text], [reference], heads=heads)[0]
            if reference is not None
            else model.attention(text, beam=beam)
        )
        if output_path is not None:
            if heads:
                assert result.heads is not None
                count = result.heads.size(0)
                for layer in layers:
                    if not -count <= (layer - 1 if layer > 0 else layer) < count:
                        raise click.BadParameter(
                            f"layer {layer} does not exist (the decoder has {count} layers)",
                            param_hint="--layer",
                        )
                chosen = [layer - 1 if layer > 0 else layer for layer in layers] or None
                plot_heads(result, output_path, layers=chosen)
            else:
                plot_alignment(result, output_path, words=words)
        if terminal:
            print_alignment(result, words=words)
    if output_path is not None:
        console.print(f"wrote {output_path}")


@click.command()
@model_option
@click.option("--src", "src_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--tgt", "tgt_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--output", "-o", "output_path", type=click.Path(path_type=Path), default=None, help="FILE.talp [stdout]"
)
@click.option("--device", default="auto", show_default=True)
def align(model_dir: Path, src_path: Path, tgt_path: Path, output_path: Path | None, device: str) -> None:
    """Word alignments "i-j" (source word i, target word j, 0-based) for each sentence pair."""
    model = load(model_dir, device=device)
    if not isinstance(model, Translator):
        raise click.BadParameter(f"{model_dir} is not a translation model", param_hint="--model")
    sources, targets = _aligned(src_path, tgt_path)
    with output(output_path) as out:
        for alignment in model.align(sources, targets):
            out.write(format_links(alignment.links) + "\n")
    console.print(f"aligned {len(sources):,} sentence pairs" + (f" -> {output_path}" if output_path else ""))


@click.command()
@click.option(
    "--gold",
    "gold_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Sure i-j and possible ipj links.",
)
@click.option(
    "--pred",
    "pred_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Predicted i-j links.",
)
@click.option("--json", "as_json", is_flag=True)
def aer(gold_path: Path, pred_path: Path, as_json: bool) -> None:
    """Precision, recall and Alignment Error Rate (Och & Ney 2003) of predicted word alignments."""
    gold = read_alignment_file(gold_path)
    predicted = read_alignment_file(pred_path)
    if len(gold) != len(predicted):
        raise click.BadParameter(
            f"{gold_path} has {len(gold)} lines, {pred_path} has {len(predicted)}", param_hint="--pred"
        )
    result = alignment_error_rate(
        [sure | possible for sure, possible in predicted], [s for s, _ in gold], [p for _, p in gold]
    )
    scores = {
        "precision": round(100 * result.precision, 2),
        "recall": round(100 * result.recall, 2),
        "aer": round(100 * result.aer, 2),
        "sentences": len(gold),
    }
    if as_json:
        click.echo(json.dumps(scores))
        return
    table = Table(title="alignment error rate (%)", show_header=False)
    for key, value in scores.items():
        table.add_row(key, str(value))
    Console().print(table)
