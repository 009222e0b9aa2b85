"""Tiny trained models shared by the tests that need a model directory (trained once per run)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seqattn.cli import main


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test, the previous count restored after it. Tiny models gain
    nothing from more threads, and two threads on two busy cores can be ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(directory: Path, config: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQATTN_CACHE", str(directory / "cache"))  # keep the user's cache untouched
        result = CliRunner().invoke(main, ["train", str(path), "-o", str(directory / "model")])
    assert result.exit_code == 0, result.output
    return directory / "model"


@pytest.fixture(scope="session")
def translator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("translator")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(10)]
    for split, count in (("train", 300), ("valid", 20)):
        pairs = [rng.sample(words, rng.randint(2, 5)) for _ in range(count)]
        (directory / f"{split}.src").write_text("".join(" ".join(p) + "\n" for p in pairs))
        (directory / f"{split}.tgt").write_text("".join(" ".join(reversed(p)) + "\n" for p in pairs))
    return _train(
        directory,
        f"""
task: translation
model: {{arch: transformer, d_model: 32, num_heads: 4, ffn_dim: 64, encoder_layers: 2, decoder_layers: 2, tie: all}}
data:
  train: {{src: {directory}/train.src, tgt: {directory}/train.tgt}}
  valid: {{src: {directory}/valid.src, tgt: {directory}/valid.tgt}}
tokenizer: {{vocab_size: 16}}
train: {{max_epochs: 6, max_tokens: 1024, metric: exact_match, lr: 0.003, warmup_steps: 10}}
""",
    )


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("classifier")
    rng = random.Random(0)
    for split, count in (("train", 200), ("valid", 20)):
        rows = []
        for _ in range(count):
            label = rng.choice(["neg", "pos"])
            words = [rng.choice(["the", "film", "was", "very", "a", "plot"]) for _ in range(4)]
            words.insert(rng.randrange(5), "good" if label == "pos" else "bad")
            rows.append(f"{label}\t{' '.join(words)}\n")
        (directory / f"{split}.tsv").write_text("label\ttext\n" + "".join(rows))
    return _train(
        directory,
        f"""
task: classification
model: {{arch: classifier, embed_dim: 16, hidden_size: 8, encoder: none}}
data:
  train: {{path: {directory}/train.tsv}}
  valid: {{path: {directory}/valid.tsv}}
tokenizer: {{vocab_size: 30}}
train: {{max_epochs: 10, max_tokens: 512, metric: accuracy, lr: 0.01, warmup_steps: 5}}
""",
    )
