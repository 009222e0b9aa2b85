"""``seqattn train``: train a model from an experiment config."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seqattn.config import load_config
from seqattn.errors import TrainingInterrupted
from seqattn.training.run import train as train_model

console = Console(stderr=True)


@click.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. train.lr=1e-3.",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Model directory [default: runs/CONFIG-NAME].",
)
@click.option("--resume", is_flag=True, help="Continue the run in OUTPUT_DIR from its last checkpoint.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
def train(
    config_path: Path, overrides: tuple[str, ...], output_dir: Path | None, resume: bool, device: str
) -> None:
    """Train a translation or classification model as CONFIG.yaml says."""
    config = load_config(config_path, overrides=overrides)
    output_dir = output_dir if output_dir is not None else Path("runs") / config_path.stem
    try:
        results = train_model(config, output_dir, resume=resume, device=device, console=console)
    except TrainingInterrupted as stopped:
        # One line: where the state is and the command that goes on from it. Exit 130 / 143.
        again = ["seqattn", "train", str(config_path), *(f"--set={o}" for o in overrides)]
        again += ["-o", str(output_dir), *(["--device", device] if device != "auto" else []), "--resume"]
        console.print(
            f"[bold red]{escape(str(stopped))}[/]; resume with: {escape(shlex.join(again))}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(stopped.exit_code)
    if "valid" not in results:  # a worker process under torchrun: the main one reports
        return
    if config.task == "classification":
        columns: tuple[str, ...] = ("accuracy", "macro_f1", "loss")
    else:
        columns = ("bleu", "chrf", "exact_match", "loss")
    table = Table(title=f"trained {config.model.arch} -> {output_dir}", show_header=True)
    table.add_column("split")
    for name in columns:
        table.add_column(name)
    for split in ("valid", "test"):
        if split in results:
            table.add_row(split, *(str(results[split].get(name, "")) for name in columns))
    Console().print(table)
    training = results["training"]
    Console().print(
        f"{training['steps']} updates, {training['epochs']} epochs, {results['train_seconds']:.0f} s on {results['device']}"
    )
    if results.get("test_signature"):
        Console().print(f"sacreBLEU: {results['test_signature']}")
