"""``seqattn tokenizer``: train SentencePiece models, or adopt ones trained elsewhere."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from seqattn.data.text import iter_lines
from seqattn.data.tokenizer import MODEL_TYPES, Tokenizer, TokenizerConfig
from seqattn.io import atomic_write_text, sha256_file

console = Console(stderr=True)


@click.group()
def tokenizer() -> None:
    """Train and inspect SentencePiece tokenizers."""


@tokenizer.command("train")
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Text file, one sentence per line (gzip ok). Repeat for a joint model over several files.",
)
@click.option(
    "--vocab-size",
    "-v",
    type=click.IntRange(min=8),
    required=True,
    help="Vocabulary size, specials included.",
)
@click.option("--model-type", type=click.Choice(MODEL_TYPES), default="unigram", show_default=True)
@click.option(
    "--character-coverage", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True
)
@click.option(
    "--max-sentences",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Sample larger inputs down to this many sentences (seeded).",
)
@click.option("--byte-fallback/--no-byte-fallback", default=False, show_default=True)
@click.option(
    "--normalization",
    type=click.Choice(["nmt_nfkc", "nmt_nfkc_cf", "nfkc", "nfkc_cf", "identity"]),
    default="nmt_nfkc",
    show_default=True,
    help="SentencePiece normalisation rule; *_cf also folds case.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--name", default="spm", show_default=True, help="File name stem: writes DIR/NAME.model.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), required=True)
def train(
    inputs: tuple[Path, ...],
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    max_sentences: int,
    byte_fallback: bool,
    normalization: str,
    seed: int,
    name: str,
    output_dir: Path,
) -> None:
    """Train a SentencePiece model on INPUT files and save it to OUTPUT_DIR/NAME.model."""
    config = TokenizerConfig(
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        max_sentences=max_sentences,
        byte_fallback=byte_fallback,
        normalization=normalization,
        seed=seed,
    )
    if output_dir.exists() and not output_dir.is_dir():
        raise click.BadParameter(f"{output_dir} exists and is not a directory", param_hint="--output-dir")
    start = time.perf_counter()
    with console.status(f"training a {model_type} model with {vocab_size} pieces..."):
        model = Tokenizer.train_files(list(inputs), config=config)
    seconds = time.perf_counter() - start
    model_path = output_dir / f"{name}.model"
    model.save(model_path)
    info = {
        "config": config.__dict__,
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        "vocab_size": model.vocab_size,
        "train_seconds": round(seconds, 2),
    }
    atomic_write_text(output_dir / f"{name}.json", json.dumps(info, indent=2) + "\n")

    sample = [line for line in itertools.islice(iter_lines(inputs[0]), 1000) if line.strip()]
    pieces = sum(len(model.encode(line)) for line in sample)
    words = sum(len(line.split()) for line in sample)
    table = Table(title="tokenizer", show_header=False)
    table.add_row("model", str(model_path))
    table.add_row("type / vocabulary", f"{model_type} / {model.vocab_size}")
    table.add_row(
        "pieces per word", f"{pieces / max(words, 1):.2f} (first {len(sample)} lines of {inputs[0]})"
    )
    if sample:
        table.add_row("example", " ".join(model.encode_pieces(sample[0]))[:200])
    table.add_row("time", f"{seconds:.1f} s")
    Console().print(table)


@tokenizer.command("adopt")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
def adopt(source: Path, target: Path) -> None:
    """Convert SOURCE, a SentencePiece model trained elsewhere (other special ids), to seqattn's
    layout in TARGET: <pad> <unk> <s> </s> at ids 0-3; same pieces, same segmentation."""
    from seqattn.data.spm_adopt import adopt_model

    if source.resolve() == target.resolve():
        raise click.BadParameter("write the adopted model to a new file", param_hint="TARGET")
    if not target.parent.is_dir():
        raise click.BadParameter(f"directory {target.parent} does not exist", param_hint="TARGET")
    model = Tokenizer.adopt(source)
    model.save(target)
    moved = adopt_model(source.read_bytes())
    table = Table(title="adopted tokenizer", show_header=False)
    table.add_row("model", str(target))
    table.add_row(
        "vocabulary",
        f"{model.vocab_size} pieces" + (f" ({', '.join(moved.added)} added)" if moved.added else ""),
    )
    table.add_row(
        "ids",
        "old id i -> new id " + ", ".join(f"{i}->{n}" for i, n in enumerate(moved.old_to_new[:6])) + ", ...",
    )
    Console().print(table)
