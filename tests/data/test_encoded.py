"""Encoded corpora and their on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqattn.data.corpora import CorpusReport, CorpusSpec
from seqattn.data.encoded import encode_corpus
from seqattn.data.text import read_lines
from seqattn.data.tokenizer import BOS_ID, EOS_ID, Tokenizer, TokenizerConfig
from seqattn.errors import DataError

MULTI30K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"

SOURCES = [f"Der Hund Nummer {i} läuft über die Wiese." for i in range(40)] + ["Eine Katze schläft."]
TARGETS = [f"Dog number {i} runs across the meadow." for i in range(40)] + ["A cat sleeps."]


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("SEQATTN_CACHE", str(directory))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return directory


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(SOURCES + TARGETS, config=TokenizerConfig(vocab_size=50))


@pytest.fixture(scope="module")
def other_tokenizer() -> Tokenizer:
    return Tokenizer.train(SOURCES + TARGETS, config=TokenizerConfig(vocab_size=45, model_type="bpe"))


@pytest.fixture
def spec(tmp_path: Path) -> CorpusSpec:
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("\n".join([*SOURCES, ""]) + "\n", encoding="utf-8")
    tgt.write_text("\n".join([*TARGETS, "leer"]) + "\n", encoding="utf-8")
    return CorpusSpec(src=str(src), tgt=str(tgt))


def test_encode_ids_match_the_tokenizer(spec: CorpusSpec, tokenizer: Tokenizer) -> None:
    encoded = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert not encoded.cached
    assert len(encoded) == len(SOURCES)
    assert encoded.first == [tokenizer.encode(s) for s in SOURCES]
    assert encoded.second == [tokenizer.encode(t) for t in TARGETS]
    assert all(BOS_ID not in ids and EOS_ID not in ids for ids in encoded.first)
    assert encoded.report == CorpusReport(examples=len(SOURCES), dropped_empty=1, replaced_utf8=0)


def test_second_encoding_comes_from_the_cache(spec: CorpusSpec, tokenizer: Tokenizer, cache: Path) -> None:
    first = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert len(list((cache / "encoded").iterdir())) == 1
    second = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert not first.cached
    assert second.cached
    assert second.first == first.first
    assert second.second == first.second
    assert second.report == first.report
    assert len(list((cache / "encoded").iterdir())) == 1


def test_cache_lives_under_seqattn_cache(spec: CorpusSpec, tokenizer: Tokenizer, cache: Path) -> None:
    encode_corpus(spec, task="translation", tokenizer=tokenizer)
    (entry,) = (cache / "encoded").iterdir()
    assert (entry / "report.json").is_file()
    assert not entry.name.endswith(".tmp")


def test_changed_file_content_changes_the_key(spec: CorpusSpec, tokenizer: Tokenizer, cache: Path) -> None:
    before = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert spec.tgt is not None
    Path(spec.tgt).write_text("\n".join(["Changed.", *TARGETS[1:], "leer"]) + "\n", encoding="utf-8")
    after = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert not after.cached
    assert after.second[0] == tokenizer.encode("Changed.")
    assert after.second[0] != before.second[0]
    assert after.first == before.first
    assert len(list((cache / "encoded").iterdir())) == 2
    # The new content is cached in turn.
    assert encode_corpus(spec, task="translation", tokenizer=tokenizer).cached


def test_changed_tokenizer_changes_the_key(
    spec: CorpusSpec, tokenizer: Tokenizer, other_tokenizer: Tokenizer
) -> None:
    base = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    other = encode_corpus(spec, task="translation", tokenizer=other_tokenizer)
    assert not other.cached
    assert other.first != base.first
    assert other.first == [other_tokenizer.encode(s) for s in SOURCES]


def test_separate_target_tokenizer(
    spec: CorpusSpec, tokenizer: Tokenizer, other_tokenizer: Tokenizer
) -> None:
    joint = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    split = encode_corpus(spec, task="translation", tokenizer=tokenizer, target_tokenizer=other_tokenizer)
    assert not split.cached
    assert split.first == joint.first
    assert split.second == [other_tokenizer.encode(t) for t in TARGETS]
    # Passing the same tokenizer explicitly is the joint vocabulary: same key.
    assert encode_corpus(spec, task="translation", tokenizer=tokenizer, target_tokenizer=tokenizer).cached


def test_strict_has_its_own_key(spec: CorpusSpec, tokenizer: Tokenizer) -> None:
    encode_corpus(spec, task="translation", tokenizer=tokenizer)
    with pytest.raises(DataError, match="strict"):
        encode_corpus(spec, task="translation", tokenizer=tokenizer, strict=True)


def test_use_cache_false_neither_reads_nor_writes(
    spec: CorpusSpec, tokenizer: Tokenizer, cache: Path
) -> None:
    encoded = encode_corpus(spec, task="translation", tokenizer=tokenizer, use_cache=False)
    assert not encoded.cached
    assert not any((cache / "encoded").iterdir())
    encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert not encode_corpus(spec, task="translation", tokenizer=tokenizer, use_cache=False).cached


def test_missing_file_is_a_data_error(tmp_path: Path, tokenizer: Tokenizer) -> None:
    src = tmp_path / "a.src"
    src.write_text("a\n", encoding="utf-8")
    spec = CorpusSpec(src=str(src), tgt=str(tmp_path / "missing.tgt"))
    with pytest.raises(DataError, match=r"missing\.tgt"):
        encode_corpus(spec, task="translation", tokenizer=tokenizer)


def test_directory_is_a_data_error(tmp_path: Path, tokenizer: Tokenizer) -> None:
    with pytest.raises(DataError, match="directory"):
        encode_corpus(CorpusSpec(path=str(tmp_path)), task="translation", tokenizer=tokenizer)


def test_classification_keeps_labels_as_strings(tmp_path: Path, tokenizer: Tokenizer) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("label\ttext\npos\tEine Katze schläft.\nneg\tDer Hund läuft.\n", encoding="utf-8")
    spec = CorpusSpec(path=str(path))
    encoded = encode_corpus(spec, task="classification", tokenizer=tokenizer)
    assert encoded.first == [tokenizer.encode("Eine Katze schläft."), tokenizer.encode("Der Hund läuft.")]
    assert encoded.second == ["pos", "neg"]
    again = encode_corpus(spec, task="classification", tokenizer=tokenizer)
    assert again.cached
    assert again.second == ["pos", "neg"]
    assert again.first == encoded.first


def test_task_is_part_of_the_key(tmp_path: Path, tokenizer: Tokenizer) -> None:
    src, tgt = tmp_path / "a.txt", tmp_path / "b.txt"
    src.write_text("Der Hund.\n", encoding="utf-8")
    tgt.write_text("pos\n", encoding="utf-8")
    spec = CorpusSpec(src=str(src), tgt=str(tgt))
    translation = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    classification = encode_corpus(spec, task="classification", tokenizer=tokenizer)
    assert not classification.cached
    assert classification.second == ["pos"]
    assert translation.second == [tokenizer.encode("pos")]


def test_multi30k_train_loads(tmp_path: Path) -> None:
    if not MULTI30K.is_dir():
        pytest.skip(f"Multi30k not found at {MULTI30K}")
    tokenizer = Tokenizer.train(
        read_lines(MULTI30K / "val.de.gz") + read_lines(MULTI30K / "val.en.gz"),
        config=TokenizerConfig(vocab_size=500),
    )
    spec = CorpusSpec(src=str(MULTI30K / "train.de.gz"), tgt=str(MULTI30K / "train.en.gz"))
    encoded = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert len(encoded) == len(encoded.second) == 29_000
    assert encoded.report.examples == 29_000
    assert all(encoded.first) and all(encoded.second)
    assert tokenizer.decode(encoded.second[0]) == " ".join(read_lines(MULTI30K / "train.en.gz")[0].split())
    cached = encode_corpus(spec, task="translation", tokenizer=tokenizer)
    assert cached.cached
    assert cached.first == encoded.first
