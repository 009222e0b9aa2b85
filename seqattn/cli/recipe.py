"""``seqattn recipe``: list and run the end-to-end recipes."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from seqattn.recipes import RECIPES, recipes_dir, run_recipe

console = Console(stderr=True)


@click.group()
def recipe() -> None:
    """End-to-end recipes: prepare data, train, evaluate, plot."""


@recipe.command("list")
def list_recipes() -> None:
    """The recipes and what they do."""
    table = Table(title=f"recipes ({recipes_dir()})")
    table.add_column("name", no_wrap=True)
    for column in ("dataset", "metric", "description"):
        table.add_column(column)
    for name, item in RECIPES.items():
        table.add_row(name, item.dataset, item.metric, item.description)
    Console().print(table)


@recipe.command("run")
@click.argument("names", nargs=-1, required=True, type=click.Choice(list(RECIPES)))
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Each recipe writes OUTPUT_DIR/NAME.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Where the built-in datasets are prepared.",
)
@click.option(
    "--from",
    "from_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Raw files for datasets that download (multi30k).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value.")
@click.option("--device", default="auto", show_default=True)
def run(
    names: tuple[str, ...],
    output_dir: Path,
    data_dir: Path,
    from_dir: Path | None,
    overrides: tuple[str, ...],
    device: str,
) -> None:
    """Run one or more recipes and print one table comparing them."""
    rows = []
    for name in names:
        results = run_recipe(
            name,
            output_dir=output_dir / name,
            data_dir=data_dir,
            from_dir=from_dir,
            overrides=overrides,
            device=device,
            console=console,
        )
        rows.append(results)
    table = Table(title="recipes: test results")
    table.add_column("recipe", no_wrap=True)
    for column in ("metric", "test", "AER %", "TF-IDF+LR uni / bi", "train s"):
        table.add_column(column, justify="right")
    for results in rows:
        headline = RECIPES[results["recipe"]].metric
        metrics = results["metrics"]
        baselines = results.get("baselines", {})
        baseline = " / ".join(
            str(baselines[name].get(headline, "-"))
            for name in ("tfidf_unigram", "tfidf_bigram")
            if name in baselines
        )
        table.add_row(
            results["recipe"],
            headline,
            str(metrics.get(headline, "-")),
            str(metrics.get("aer", "-")),
            baseline or "-",
            f"{results['train_seconds']:.0f}",
        )
    Console().print(table)
    paired = _paired_table(rows)
    if paired is not None:
        Console().print(paired)
    console.print(f"results: {output_dir}/NAME/results.json and plots")


def _paired_table(rows: list[dict]) -> Table | None:
    """Each classifier against each TF-IDF + LR baseline on the same test examples."""
    table = Table(title="the classifiers against TF-IDF + LR on the same test examples")
    table.add_column("recipe", no_wrap=True)
    table.add_column("TF-IDF + LR", no_wrap=True)
    for column in ("its test", "only model right", "only baseline right", "McNemar p"):
        table.add_column(column, justify="right")
    features = {"tfidf_unigram": "unigrams", "tfidf_bigram": "uni+bigrams"}
    for results in rows:
        for name, scores in results.get("baselines", {}).items():
            if "p_value" in scores:
                table.add_row(
                    results["recipe"],
                    features.get(name, name),
                    str(scores["accuracy"]),
                    str(scores["model_only"]),
                    str(scores["baseline_only"]),
                    f"{scores['p_value']:.2g}",
                )
    return table if table.row_count else None
