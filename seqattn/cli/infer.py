"""``seqattn translate``, ``seqattn classify`` and ``seqattn evaluate``: use a trained model.

Every command writes exactly one output line per input line, in input order. Input is read in
chunks, so memory stays flat however long the file is. An output file is written to a temporary
file beside it and renamed at the end: an interrupted run never leaves a partial file that looks
complete. Invalid UTF-8 is replaced and counted (``--strict`` refuses it); lines longer than
``--max-chars`` are truncated and counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from seqattn.api import Classifier, Translator, load
from seqattn.data.text import LineStats, iter_lines
from seqattn.errors import DataError
from seqattn.io import atomic_open
from seqattn.metrics import classification_report, corpus_bleu, corpus_chrf, exact_match
from seqattn.quantization import native_int8
from seqattn.terminal import highlight_tokens

console = Console(stderr=True)
CHUNK = 2000  # lines handed to the model at once


class Input:
    """Lines of a file or stdin, with repairs counted."""

    def __init__(self, path: Path | None, *, strict: bool, max_chars: int) -> None:
        self.path, self.strict, self.max_chars = path, strict, max_chars
        self.stats = LineStats()
        self.truncated = 0

    def lines(self) -> Iterator[str]:
        if self.path is not None:
            source = iter_lines(self.path, errors="strict" if self.strict else "replace", stats=self.stats)
        else:
            source = self._stdin()
        for line in source:
            if len(line) > self.max_chars:
                self.truncated += 1
                line = line[: self.max_chars]
            yield line

    def _stdin(self) -> Iterator[str]:
        for number, raw in enumerate(sys.stdin.buffer, start=1):
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if self.strict:
                    raise DataError(f"<stdin>:{number}: invalid UTF-8 at byte {error.start + 1}") from None
                text = raw.decode("utf-8", errors="replace")
                self.stats.replaced += 1
            self.stats.lines = number
            yield text

    def report(self) -> None:
        if self.stats.replaced:
            console.print(
                f"[yellow]warning:[/] {self.stats.replaced} line(s) had invalid UTF-8, replaced with U+FFFD"
            )
        if self.truncated:
            console.print(
                f"[yellow]warning:[/] {self.truncated} line(s) longer than {self.max_chars} characters were truncated"
            )


@contextlib.contextmanager
def output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory", param_hint="--output")
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {path.parent} does not exist", param_hint="--output")
    try:
        with atomic_open(path) as handle:
            yield handle
    except PermissionError:
        raise click.BadParameter(f"cannot write {path} (permission denied)", param_hint="--output") from None


def _chunks(lines: Iterator[str]) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(lines, CHUNK)):
        yield chunk


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _load(model_dir: Path, kind: type | None, device: str, bf16: bool, int8: bool, shortlist: bool = False):
    model = load(model_dir, device=device, bf16=bf16, int8=int8, shortlist=shortlist)
    if int8 and not native_int8():
        console.print(
            "[yellow]warning[/]: this CPU has no int8 dot-product instructions (VNNI); --int8 may be slower than float32"
        )
    if kind is None:
        return model
    if not isinstance(model, kind):
        wanted = "translation" if kind is Translator else "classification"
        raise click.BadParameter(f"{model_dir} is not a {wanted} model", param_hint="--model")
    return model


model_option = click.option(
    "--model",
    "-m",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Trained model directory.",
)
input_option = click.option(
    "--input",
    "-i",
    "input_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Input file [stdin].",
)
output_option = click.option(
    "--output",
    "-o",
    "output_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file [stdout].",
)
strict_option = click.option("--strict", is_flag=True, help="Refuse invalid UTF-8 instead of replacing it.")
chars_option = click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Truncate longer lines.",
)
device_option = click.option("--device", default="auto", show_default=True)
bf16_option = click.option(
    "--bf16",
    is_flag=True,
    help="bf16 autocast: faster on CUDA and on CPUs with AVX512-BF16/AMX, slower on other CPUs.",
)
int8_option = click.option(
    "--int8",
    is_flag=True,
    help="CPU only: int8 linear layers with per-row dynamic scales; faster on CPUs with VNNI.",
)

shortlist_option = click.option(
    "--shortlist",
    is_flag=True,
    help="Score only the pieces of MODEL/shortlist.pt (built by `seqattn shortlist`): faster decoding.",
)


@click.command()
@model_option
@input_option
@output_option
@click.option("--beam", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--n-best",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Hypotheses per line (tab-separated with scores).",
)
@click.option("--batch-tokens", type=click.IntRange(min=1), default=4096, show_default=True)
@strict_option
@chars_option
@device_option
@bf16_option
@int8_option
@shortlist_option
def translate(
    model_dir: Path,
    input_path: Path | None,
    output_path: Path | None,
    beam: int,
    n_best: int,
    batch_tokens: int,
    strict: bool,
    max_chars: int,
    device: str,
    bf16: bool,
    int8: bool,
    shortlist: bool,
) -> None:
    """Translate lines from a file or stdin; one output line per input line, in order."""
    if n_best > beam:
        raise click.BadParameter(f"--n-best {n_best} is larger than --beam {beam}", param_hint="--n-best")
    translator: Translator = _load(model_dir, Translator, device, bf16, int8, shortlist)
    source = Input(input_path, strict=strict, max_chars=max_chars)
    count = 0
    with output(output_path) as out, _progress() as progress:
        task = progress.add_task("translating")
        for chunk in _chunks(source.lines()):
            results = translator.translate(chunk, beam=beam, n_best=n_best, batch_tokens=batch_tokens)
            for result in results:
                if n_best == 1:
                    out.write(f"{result}\n")
                else:
                    out.write("\t".join(f"{text}\t{score:.4f}" for text, score in result) + "\n")  # type: ignore[union-attr]
            count += len(chunk)
            progress.update(task, description=f"translating: {count:,} lines")
    source.report()
    if translator.clipped_sources:
        console.print(
            f"[yellow]warning:[/] {translator.clipped_sources} line(s) longer than the model's "
            f"{translator.limits[0]} source positions were cut to their first pieces"
        )
    console.print(f"translated {count:,} lines" + (f" -> {output_path}" if output_path else ""))


@click.command()
@model_option
@input_option
@output_option
@click.option(
    "--explain", is_flag=True, help="Show each text with its tokens highlighted by attention weight."
)
@click.option("--batch-tokens", type=click.IntRange(min=1), default=8192, show_default=True)
@strict_option
@chars_option
@device_option
@bf16_option
@int8_option
def classify(
    model_dir: Path,
    input_path: Path | None,
    output_path: Path | None,
    explain: bool,
    batch_tokens: int,
    strict: bool,
    max_chars: int,
    device: str,
    bf16: bool,
    int8: bool,
) -> None:
    """Label lines of text: "LABEL<TAB>PROBABILITY" per input line, in order."""
    classifier: Classifier = _load(model_dir, Classifier, device, bf16, int8)
    source = Input(input_path, strict=strict, max_chars=max_chars)
    count = 0
    with output(output_path) as out:
        for chunk in _chunks(source.lines()):
            if explain:
                for entry in classifier.explain(chunk, batch_tokens=batch_tokens):
                    out.write(f"{entry['label']}\t{entry['probability']:.4f}\n")
                    console.print(highlight_tokens(entry))  # on stderr: stdout keeps one line per input
            else:
                for label, probability in classifier.predict(chunk, batch_tokens=batch_tokens):
                    out.write(f"{label}\t{probability:.4f}\n")
            count += len(chunk)
    source.report()
    console.print(f"classified {count:,} lines" + (f" -> {output_path}" if output_path else ""))


@click.command()
@model_option
@click.option(
    "--src", "src_path", type=click.Path(path_type=Path, dir_okay=False), help="Sources (translation)."
)
@click.option(
    "--ref", "ref_path", type=click.Path(path_type=Path, dir_okay=False), help="References (translation)."
)
@click.option(
    "--text", "text_path", type=click.Path(path_type=Path, dir_okay=False), help="Texts (classification)."
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Gold labels (classification).",
)
@click.option("--beam", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch-tokens", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@device_option
@bf16_option
@int8_option
@shortlist_option
def evaluate(
    model_dir: Path,
    src_path: Path | None,
    ref_path: Path | None,
    text_path: Path | None,
    labels_path: Path | None,
    beam: int,
    batch_tokens: int,
    as_json: bool,
    device: str,
    bf16: bool,
    int8: bool,
    shortlist: bool,
) -> None:
    """Score a model: BLEU/chrF/exact match (--src/--ref) or accuracy/F1 (--text/--labels)."""
    model = _load(model_dir, None, device, bf16, int8, shortlist)
    if isinstance(model, Translator):
        if src_path is None or ref_path is None:
            raise click.UsageError("a translation model needs --src and --ref")
        sources, references = _aligned(src_path, ref_path)
        with _progress() as progress:
            progress.add_task(f"translating {len(sources):,} sentences")
            hypotheses = model.translate(sources, beam=beam, batch_tokens=batch_tokens)
        bleu, chrf = corpus_bleu(hypotheses, references), corpus_chrf(hypotheses, references)  # type: ignore[arg-type]
        scores = {
            "bleu": round(bleu.score, 2),
            "chrf": round(chrf.score, 2),
            "exact_match": round(exact_match(hypotheses, references), 2),  # type: ignore[arg-type]
            "sentences": len(sources),
            "beam": beam,
            "shortlist": shortlist,
            "bleu_signature": bleu.signature,
            "chrf_signature": chrf.signature,
        }
    else:
        if text_path is None or labels_path is None:
            raise click.UsageError("a classification model needs --text and --labels")
        texts, gold = _aligned(text_path, labels_path)
        gold = [g.strip() for g in gold]
        model.labels.encode(gold, where=[f"{labels_path}:{i + 1}" for i in range(len(gold))])
        predicted = [label for label, _ in model.predict(texts, batch_tokens=batch_tokens)]
        report = classification_report(predicted, gold, classes=model.labels.labels)
        scores = {
            "accuracy": round(report.accuracy, 2),
            "macro_f1": round(report.macro_f1, 2),
            "examples": len(gold),
        }
        if not as_json:
            Console().print(report.to_rich(title=f"{model_dir}"))
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    table = Table(title=f"{model_dir}", show_header=False)
    for key, value in scores.items():
        table.add_row(key, str(value))
    Console().print(table)


def _aligned(first: Path, second: Path) -> tuple[list[str], list[str]]:
    a, b = list(iter_lines(first)), list(iter_lines(second))
    if len(a) != len(b):
        raise DataError(f"files differ in length: {first} has {len(a)} lines, {second} has {len(b)}")
    return a, b
