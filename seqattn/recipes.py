"""Recipes: prepare data -> train -> evaluate -> alignment/plots -> ``results.json``.

A recipe is a YAML experiment config under ``recipes/`` plus the few facts below (which built-in
dataset it needs, whether gold alignments exist). :func:`run_recipe` reads top to bottom as the
steps a person would run by hand; the training, decoding and scoring are the library's own
(``seqattn train``, ``Translator.align``, ``seqattn.metrics``), so recipes cannot drift apart.

The recipe configs live in the repository's ``recipes/`` folder (found next to this package in a
checkout, or wherever ``$SEQATTN_RECIPES`` points).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from seqattn.config import load_config
from seqattn.data import builtin
from seqattn.errors import ConfigError
from seqattn.io import atomic_write_text

__all__ = ["RECIPES", "Recipe", "recipes_dir", "run_recipe"]


@dataclass(frozen=True)
class Recipe:
    config: str
    """Config path relative to the recipes folder."""
    dataset: str
    """Built-in dataset the config's data section points at (``data/DATASET``)."""
    description: str
    metric: str
    """The headline test metric."""
    gold_alignments: bool = False
    """Score the attention against the dataset's gold alignments (AER)."""
    plots: int = 3
    """How many test examples to draw."""
    prepare: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "dates-rnn-bahdanau": Recipe(
        "dates/rnn-bahdanau.yaml",
        "dates",
        "dates -> ISO 8601, LSTM + Bahdanau attention",
        "exact_match",
        True,
    ),
    "dates-rnn-luong": Recipe(
        "dates/rnn-luong.yaml", "dates", "dates -> ISO 8601, LSTM + Luong attention", "exact_match", True
    ),
    "dates-transformer": Recipe(
        "dates/transformer.yaml", "dates", "dates -> ISO 8601, Transformer", "exact_match", True
    ),
    "sentiment-attnpool": Recipe(
        "sentiment/bilstm-attnpool.yaml",
        "movie-reviews",
        "movie-review sentiment, BiLSTM + attention pooling",
        "accuracy",
    ),
    "news-han": Recipe("news/han.yaml", "news-topics", "BBC news topics, hierarchical attention", "accuracy"),
    "multi30k-de-en-rnn": Recipe(
        "multi30k/rnn.yaml", "multi30k", "Multi30k de -> en, LSTM + attention", "bleu"
    ),
    "multi30k-de-en-transformer": Recipe(
        "multi30k/transformer.yaml", "multi30k", "Multi30k de -> en, Transformer", "bleu"
    ),
}


def recipes_dir() -> Path:
    """The folder holding the recipe configs."""
    configured = os.environ.get("SEQATTN_RECIPES")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[1] / "recipes"
    if not folder.is_dir():
        raise ConfigError(f"recipe configs not found at {folder} (set SEQATTN_RECIPES to the recipes folder)")
    return folder


def run_recipe(
    name: str,
    *,
    output_dir: str | Path,
    data_dir: str | Path = "data",
    from_dir: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Run recipe ``name`` into ``output_dir`` and return (and write) its ``results.json``."""
    from seqattn.api import load
    from seqattn.training.run import train

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    console = console or Console(stderr=True)
    output_dir = Path(output_dir)
    start = time.perf_counter()

    # 1. Data: the built-in dataset in its standard layout (a no-op when already prepared).
    data = Path(data_dir) / recipe.dataset
    with console.status(f"preparing {recipe.dataset}..."):
        builtin.prepare(recipe.dataset, data, from_dir=from_dir, **recipe.prepare)

    # 2. Config: the recipe's YAML, pointed at the prepared data, plus the user's overrides.
    config = load_config(recipes_dir() / recipe.config, overrides=overrides)
    config = _point_at(config, data)

    # 3. Train (tokenizer, model, validation, checkpoints) and evaluate on the test split.
    console.rule(f"[bold]{name}[/]: {recipe.description}")
    trained = train(config, output_dir, device=device, console=console)

    # 4. Attention: alignment error rate against gold alignments, and a few plots.
    metrics = dict(trained.get("test", {}))
    model = load(output_dir)  # the trained directory, exactly as a user would load it
    plots = _plots(model, output_dir, data, config.task, recipe.plots)
    if recipe.gold_alignments and config.task == "translation":
        metrics |= _alignment_scores(model, data)
    # Classifiers are reported beside TF-IDF + logistic regression on the same split.
    baselines = _baselines(config, model, console) if config.task == "classification" else {}

    # 5. The training summary (results.json) extended with the recipe's view of the run.
    results = {
        **trained,
        "recipe": name,
        "task": config.task,
        "metrics": metrics,
        **({"baselines": baselines} if baselines else {}),
        "train_seconds": trained["train_seconds"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "device": trained["device"],
        "model_dir": str(output_dir),
        "plots": plots,
    }
    atomic_write_text(output_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _baselines(config: Any, model: Any, console: Console) -> dict[str, dict[str, float]]:
    """Test accuracy and macro-F1 of TF-IDF + logistic regression with word unigrams
    (``tfidf_unigram``, scikit-learn's default features) and with unigrams and bigrams
    (``tfidf_bigram``), each with its penalty chosen on the validation split, and McNemar's
    exact test of the trained ``model`` against each on the same test examples: ``model_only``
    and ``baseline_only`` count the examples only one of them gets right, ``p_value`` says how
    likely a split at least that uneven is if both were equally accurate."""
    from seqattn.baselines import fit_baseline
    from seqattn.data.corpora import load_corpus
    from seqattn.metrics import classification_report, mcnemar

    section = config.data
    if section.test is None:
        return {}
    train, valid, test = (
        load_corpus(spec, task="classification") for spec in (section.train, section.valid, section.test)
    )
    gold = list(test["label"])
    model_correct = [
        label == g for (label, _), g in zip(model.predict(list(test["text"])), gold, strict=True)
    ]
    scores: dict[str, dict[str, float]] = {}
    for name, ngrams in (("tfidf_unigram", 1), ("tfidf_bigram", 2)):
        with console.status(f"fitting the {name} baseline..."):
            baseline, _ = fit_baseline(
                train["text"], train["label"], valid["text"], valid["label"], ngrams=ngrams
            )
            predicted = baseline.predict(test["text"])
        report = classification_report(predicted, gold)
        paired = mcnemar(model_correct, [p == g for p, g in zip(predicted, gold, strict=True)])
        scores[name] = {
            "accuracy": round(report.accuracy, 2),
            "macro_f1": round(report.macro_f1, 2),
            "model_only": paired.first_only,
            "baseline_only": paired.second_only,
            "p_value": round(paired.p_value, 4),
        }
    return scores


def _point_at(config: Any, data: Path) -> Any:
    """The config with its corpus files (``data/<dataset>/...``) read from ``data``."""

    def move(spec: Any) -> Any:
        if spec is None:
            return None
        changes = {
            k: str(data / Path(getattr(spec, k)).name) for k in ("src", "tgt", "path") if getattr(spec, k)
        }
        return dataclasses.replace(spec, **changes)

    section = config.data
    moved = dataclasses.replace(
        section, train=move(section.train), valid=move(section.valid), test=move(section.test)
    )
    return dataclasses.replace(config, data=moved)


def _plots(model: Any, model_dir: Path, data: Path, task: str, count: int) -> list[str]:
    from seqattn.plots import plot_alignment, plot_token_weights

    written = []
    if task == "translation":
        sources = (data / "test.src").read_text(encoding="utf-8").splitlines()[:count]
        for i, source in enumerate(sources):
            path = model_dir / f"attention-{i + 1}.png"
            plot_alignment(model.attention(source), path)  # type: ignore[union-attr]
            written.append(str(path))
    else:
        lines = (data / "test.tsv").read_text(encoding="utf-8").splitlines()[1 : count + 1]
        for i, entry in enumerate(model.explain([line.split("\t", 1)[1] for line in lines])):  # type: ignore[union-attr]
            path = model_dir / f"weights-{i + 1}.png"
            plot_token_weights(entry, path)
            written.append(str(path))
    return written


def _alignment_scores(model: Any, data: Path) -> dict[str, float]:
    """AER of the model's attention against the gold field alignments of the test split.

    Both sides are compared at the level of SentencePiece pieces: a gold (sure) link joins every
    source piece overlapping a field's source span (day, month, year, weekday) with every target
    piece overlapping the field's target span; the predicted links join each target piece inside
    some field to the source piece it attends to most when force-decoding the reference.
    Separator pieces (``-``) belong to no field and are left out on both sides.
    """
    from seqattn.metrics.alignment import aer, char_spans_to_token_links, token_offsets

    sources = (data / "test.src").read_text(encoding="utf-8").splitlines()
    targets = (data / "test.tgt").read_text(encoding="utf-8").splitlines()
    gold_fields = [
        json.loads(line)["fields"]
        for line in (data / "test.align.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    predicted, sure = [], []
    skipped = 0
    for source, target, fields, alignment in zip(
        sources,
        targets,
        gold_fields,
        model.align(sources, targets),
        strict=True,  # type: ignore[union-attr]
    ):
        src_pieces = alignment.source_pieces[:-1]
        tgt_pieces = alignment.target_pieces[:-1]
        try:
            src_offsets, tgt_offsets = token_offsets(source, src_pieces), token_offsets(target, tgt_pieces)
        except ValueError:  # normalisation changed the text: the pieces no longer spell it
            skipped += 1
            continue
        gold = char_spans_to_token_links(fields, src_offsets, tgt_offsets)
        covered = {t for _, t in gold}
        attention = alignment.attention[: len(tgt_pieces), : len(src_pieces)]
        links = {(int(attention[t].argmax()), t) for t in covered}
        predicted.append(links)
        sure.append(gold)
    result = aer(predicted, sure)
    return {
        "aer": round(100 * result.aer, 2),
        "alignment_precision": round(100 * result.precision, 2),
        "alignment_recall": round(100 * result.recall, 2),
        "aer_pairs": len(predicted),
        "aer_skipped": skipped,
    }
