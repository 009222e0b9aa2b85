"""`seqattn train` for translation, end to end on a tiny synthetic task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqattn.cli import main
from seqattn.training.checkpoint import load_checkpoint


def write_task(directory: Path) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    for split, count in (("train", 300), ("valid", 30)):
        pairs = [rng.sample(words, rng.randint(2, 5)) for _ in range(count)]
        (directory / f"{split}.src").write_text("".join(" ".join(p) + "\n" for p in pairs))
        (directory / f"{split}.tgt").write_text("".join(" ".join(reversed(p)) + "\n" for p in pairs))
    config = directory / "config.yaml"
    config.write_text(
        f"""
task: translation
model: {{arch: transformer, d_model: 32, num_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, tie: all}}
data:
  train: {{src: {directory}/train.src, tgt: {directory}/train.tgt}}
  valid: {{src: {directory}/valid.src, tgt: {directory}/valid.tgt}}
  test: {{src: {directory}/valid.src, tgt: {directory}/valid.tgt}}
tokenizer: {{vocab_size: 18}}
train: {{max_epochs: 2, max_tokens: 512, validate_every: 1000, metric: exact_match, test_beam: 2, lr: 0.003, warmup_steps: 10}}
"""
    )
    return config


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))


def test_train_writes_a_complete_model_directory_and_resumes(tmp_path: Path) -> None:
    config = write_task(tmp_path)
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    for name in (
        "config.yaml",
        "spm.model",
        "model.pt",
        "metrics.jsonl",
        "results.json",
        "checkpoints/last.pt",
    ):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["epochs"] == 2
    assert set(results["test"]) >= {"bleu", "chrf", "exact_match"} and results["test"]["beam"] == 2
    assert "nrefs:1" in results["signature"]
    assert set(load_checkpoint(out / "model.pt")) == {"model"}

    # The same directory again without --resume is refused; with it, training goes on.
    again = CliRunner().invoke(main, ["train", str(config), "-o", str(out)])
    assert again.exit_code != 0 and "--resume" in again.output
    more = CliRunner().invoke(
        main, ["train", str(config), "-o", str(out), "--resume", "--set", "train.max_epochs=3"]
    )
    assert more.exit_code == 0, more.output
    assert json.loads((out / "results.json").read_text())["training"]["epochs"] == 3


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    config = write_task(tmp_path)
    result = CliRunner().invoke(main, ["train", str(config), "--set", "model.num_heads=3"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "num_heads" in lines[0] and "Traceback" not in result.output
