"""``seqattn data``: prepare built-in datasets into the standard layout."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console

from seqattn.data import builtin

console = Console(stderr=True)
LANGUAGES = ("de", "en", "fr")


@click.group()
def data() -> None:
    """Prepare datasets."""


@data.command("prepare")
@click.argument("name", type=click.Choice(sorted(builtin.DATASETS)))
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the dataset [default: data/NAME].",
)
@click.option(
    "--from",
    "from_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Read the raw files from this directory instead of downloading them.",
)
@click.option("--force", is_flag=True, help="Prepare again even if OUTPUT_DIR is already complete.")
@click.option(
    "--src-lang", type=click.Choice(LANGUAGES), default=None, help="multi30k: source language [de]."
)
@click.option(
    "--tgt-lang", type=click.Choice(LANGUAGES), default=None, help="multi30k: target language [en]."
)
def prepare(
    name: str,
    output_dir: Path | None,
    from_dir: Path | None,
    force: bool,
    src_lang: str | None,
    tgt_lang: str | None,
) -> None:
    """Prepare the built-in dataset NAME into the standard layout.

    \b
    dates          human-readable dates in 9 locales -> ISO 8601, with gold alignments
    movie-reviews  10,568 movie-review sentences, positive/negative (5-class in fine/)
    news-topics    2,125 BBC News articles in 5 topics
    multi30k       image captions de/en/fr (downloads, or --from DIR with the .gz files)
    """
    output_dir = output_dir if output_dir is not None else Path("data") / name
    if output_dir.exists() and not output_dir.is_dir():
        raise click.BadParameter(f"{output_dir} exists and is not a directory", param_hint="--output-dir")
    options = {}
    if src_lang or tgt_lang:
        if name != "multi30k":
            raise click.BadParameter(
                "only multi30k takes a language pair", param_hint="--src-lang/--tgt-lang"
            )
        options = {"src_lang": src_lang, "tgt_lang": tgt_lang}
    module = builtin.dataset_module(name)
    start = time.perf_counter()
    with console.status(f"preparing {name} in {output_dir}..."):
        meta = builtin.prepare(name, output_dir, from_dir=from_dir, force=force, **options)
    seconds = time.perf_counter() - start
    click.echo(module.summary(meta))
    click.echo(f"{output_dir}: ready in {seconds:.1f} s")
