"""``seqattn data``: prepare built-in datasets into the standard layout."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from seqattn.data import builtin

console = Console(stderr=True)


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
def prepare(name: str, output_dir: Path | None, from_dir: Path | None, force: bool) -> None:
    """Prepare the built-in dataset NAME (dates, movie-reviews, news-topics, multi30k)."""
    output_dir = output_dir if output_dir is not None else Path("data") / name
    if output_dir.exists() and not output_dir.is_dir():
        raise click.BadParameter(f"{output_dir} exists and is not a directory", param_hint="--output-dir")
    start = time.perf_counter()
    with console.status(f"preparing {name} in {output_dir}..."):
        meta = builtin.prepare(name, output_dir, from_dir=from_dir, force=force)
    seconds = time.perf_counter() - start
    table = Table(title=f"{name} ({meta.get('task')})", show_header=False)
    table.add_row("directory", str(output_dir))
    for split, count in meta["splits"].items():
        table.add_row(split, f"{count:,} examples")
    for key, value in (meta.get("summary") or {}).items():
        table.add_row(key, str(value))
    table.add_row("time", f"{seconds:.1f} s")
    Console().print(table)
