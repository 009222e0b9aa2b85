"""seqattn recipe list / run on a tiny version of a real recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from seqattn.cli import main
from seqattn.recipes import RECIPES, recipes_dir


def test_every_recipe_has_its_config() -> None:
    for name, recipe in RECIPES.items():
        assert (recipes_dir() / recipe.config).is_file(), name


def test_recipe_list() -> None:
    result = CliRunner().invoke(main, ["recipe", "list"])
    assert result.exit_code == 0
    assert all(name in result.stdout for name in RECIPES)


def _run_tiny(tmp_path: Path, name: str, overrides: list[str]) -> tuple[Result, dict[str, Any]]:
    """``seqattn recipe run NAME`` into ``tmp_path`` with ``--set`` overrides; returns the CLI
    result and the recipe's ``results.json``."""
    args = ["recipe", "run", name, "-o", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, args + [item for kv in overrides for item in ("--set", kv)])
    assert result.exit_code == 0, result.output
    return result, json.loads((tmp_path / "runs" / name / "results.json").read_text())


def test_dates_recipe_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    tiny = [
        "model.d_model=32",
        "model.ffn_dim=64",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "train.max_steps=12",
        "train.validate_every=6",
        "train.max_tokens=2048",
    ]
    result, results = _run_tiny(tmp_path, "dates-transformer", tiny)
    assert results["recipe"] == "dates-transformer" and results["task"] == "translation"
    assert {"recipe", "task", "metrics", "train_seconds", "device", "model_dir", "plots"} <= set(results)
    assert results["training"]["steps"] > 0  # the training summary is kept alongside
    assert {"bleu", "chrf", "exact_match", "aer"} <= set(results["metrics"])
    assert 0.0 <= results["metrics"]["aer"] <= 100.0 and results["metrics"]["aer_pairs"] == 1000
    assert len(results["plots"]) == 3 and all(Path(p).is_file() for p in results["plots"])
    assert "dates-transformer" in result.stdout  # the comparison table


def test_classification_recipe_reports_tfidf_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sentiment recipe (tiny model, few steps) writes both TF-IDF + LR baselines beside its
    own test scores, fitted on the same split, with a paired test of the model against each, and
    shows them in the comparison table."""
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    tiny = [
        "model.embed_dim=16",
        "model.hidden_size=16",
        "tokenizer.vocab_size=500",
        "train.max_steps=4",
        "train.validate_every=4",
    ]
    result, results = _run_tiny(tmp_path, "sentiment-attnpool", tiny)
    assert results["task"] == "classification" and "accuracy" in results["metrics"]
    baselines = results["baselines"]
    assert set(baselines) == {"tfidf_unigram", "tfidf_bigram"}
    for scores in baselines.values():
        # Movie-review sentences: word features alone are far above chance (50%).
        assert 70.0 < scores["accuracy"] < 90.0 and 0.0 < scores["macro_f1"] <= 100.0
        # The paired test counts the same test examples: the accuracies differ by exactly the
        # examples only one of the two gets right.
        examples = results["metrics"]["examples"]
        difference = 100.0 * (scores["model_only"] - scores["baseline_only"]) / examples
        assert difference == pytest.approx(results["metrics"]["accuracy"] - scores["accuracy"], abs=0.011)
        assert 0.0 <= scores["p_value"] <= 1.0
    assert "TF-IDF+LR" in result.stdout and "McNemar" in result.stdout
    assert (
        f"{baselines['tfidf_unigram']['accuracy']} / {baselines['tfidf_bigram']['accuracy']}" in result.stdout
    )
