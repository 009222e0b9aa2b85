"""seqattn.load on both model kinds, and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import seqattn
from seqattn.api import Classifier, Translator
from seqattn.data.tokenizer import Tokenizer, TokenizerConfig
from seqattn.errors import DataError


def test_load_translator(translator_dir: Path) -> None:
    model = seqattn.load(translator_dir)
    assert isinstance(model, Translator)
    sources = ["w1 w2 w3", "", "w4 w5", "   "]
    outputs = model.translate(sources, beam=3)
    assert len(outputs) == 4 and outputs[1] == "" and outputs[3] == ""
    # Order is preserved: each sentence alone gives the same answer.
    assert [model.translate([s], beam=3)[0] for s in sources] == outputs
    nbest = model.translate(["w1 w2 w3"], beam=3, n_best=3)[0]
    assert len(nbest) == 3 and nbest[0][1] >= nbest[1][1] >= nbest[2][1]
    shown = model.attention("w1 w2 w3", beam=3)
    assert shown.attention.shape == (len(shown.target_pieces), len(shown.source_pieces))
    assert shown.source_pieces[-1] == "</s>"


def test_load_classifier(classifier_dir: Path) -> None:
    model = seqattn.load(classifier_dir)
    assert isinstance(model, Classifier)
    predictions = model.predict(["the film was good", "a very bad plot", ""])
    assert [p[0] for p in predictions[:2]] == ["pos", "neg"]
    assert all(0.0 <= p[1] <= 1.0 for p in predictions)
    explained = model.explain(["the film was good"])[0]
    assert len(explained["tokens"]) == len(explained["weights"][0])
    assert abs(sum(explained["weights"][0]) - 1.0) < 1e-5
    assert set(explained["probabilities"]) == {"neg", "pos"}


def _copy(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def test_missing_files_are_named(translator_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such model directory"):
        seqattn.load(tmp_path / "nothing")
    broken = _copy(translator_dir, tmp_path)
    (broken / "spm.model").unlink()
    with pytest.raises(DataError, match=r"missing tokenizer spm\.model"):
        seqattn.load(broken)
    (broken / "config.yaml").unlink()
    with pytest.raises(DataError, match=r"no config\.yaml"):
        seqattn.load(broken)


def test_tokenizer_that_does_not_match_the_model(translator_dir: Path, tmp_path: Path) -> None:
    broken = _copy(translator_dir, tmp_path)
    text = [f"x{i} y{i} z{i}" for i in range(300)]
    Tokenizer.train(text, config=TokenizerConfig(vocab_size=40)).save(broken / "spm.model")
    with pytest.raises(DataError) as error:
        seqattn.load(broken)
    assert "model.pt" in str(error.value) and "shape" in str(error.value)


def test_config_from_an_unknown_version(classifier_dir: Path, tmp_path: Path) -> None:
    broken = _copy(classifier_dir, tmp_path)
    data = yaml.safe_load((broken / "config.yaml").read_text())
    data["version"] = 99
    (broken / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match="version"):
        seqattn.load(broken)


def test_truncated_weights(classifier_dir: Path, tmp_path: Path) -> None:
    broken = _copy(classifier_dir, tmp_path)
    weights = broken / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match=r"model\.pt"):
        seqattn.load(broken)
