"""Every shipped recipe config loads, validates and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqattn.config import ExperimentConfig, from_dict, load_config, to_dict
from seqattn.errors import ConfigError
from seqattn.models.build import build_classifier, build_seq2seq

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CONFIGS = sorted(RECIPES.rglob("*.yaml"))


def test_there_are_recipe_configs() -> None:
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(RECIPES)) for p in CONFIGS])
def test_config_loads_and_builds(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    vocab = config.tokenizer.vocab_size
    if config.task == "classification":
        model = build_classifier(config.model, vocab_size=vocab, num_classes=3)
    else:
        model = build_seq2seq(config.model, src_vocab=vocab, tgt_vocab=vocab)
    assert sum(p.numel() for p in model.parameters()) > 0
    # Saving and reading back gives the same config.
    assert from_dict(ExperimentConfig, to_dict(config)) == config


def test_adversarial_training_is_refused_for_translation() -> None:
    path = RECIPES / "multi30k" / "transformer.yaml"
    with pytest.raises(ConfigError, match=r"transformer.yaml: train\.adversarial: .*classification only"):
        load_config(path, overrides=["train.adversarial=1.0"])
    assert load_config(RECIPES / "sentiment" / "bilstm-attnpool.yaml", overrides=["train.adversarial=1.0"])
