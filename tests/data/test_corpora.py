"""Corpus specs and loading: aligned files, TSV, JSONL, gzip, bad input, the offline Hub."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from seqattn.data.corpora import CorpusReport, CorpusSpec, load_corpus
from seqattn.errors import ConfigError, DataError

PAIRS = [("Ein Hund läuft.", "A dog runs."), ("Zwei Katzen.", "Two cats."), ("Grüße!", "Greetings!")]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _write(path: Path, text: str, *, compress: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _lines(rows: list[str]) -> str:
    return "".join(f"{row}\n" for row in rows)


def _aligned(tmp_path: Path, src: list[str], tgt: list[str], *, compress: bool = False) -> CorpusSpec:
    suffix = ".gz" if compress else ""
    return CorpusSpec(
        src=str(_write(tmp_path / f"train.src{suffix}", _lines(src), compress=compress)),
        tgt=str(_write(tmp_path / f"train.tgt{suffix}", _lines(tgt), compress=compress)),
    )


def _as_pairs(dataset) -> list[tuple[str, str]]:
    return list(zip(dataset["source"], dataset["target"], strict=True))


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# -- aligned files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_aligned_files(tmp_path: Path, compress: bool) -> None:
    spec = _aligned(tmp_path, [s for s, _ in PAIRS], [t for _, t in PAIRS], compress=compress)
    report = CorpusReport()
    dataset = load_corpus(spec, task="translation", report=report)
    assert dataset.column_names == ["source", "target"]
    assert _as_pairs(dataset) == PAIRS
    assert report == CorpusReport(examples=3, dropped_empty=0, replaced_utf8=0)


def test_aligned_files_with_crlf_and_bom(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.src", "\ufeffEins\r\nZwei\r\n")
    tgt = _write(tmp_path / "a.tgt", "One\nTwo")
    dataset = load_corpus(CorpusSpec(src=str(src), tgt=str(tgt)), task="translation")
    assert _as_pairs(dataset) == [("Eins", "One"), ("Zwei", "Two")]


def test_target_longer_names_both_files_and_counts(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b"], ["x", "y", "z", "w"])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation")
    message = _one_line(error)
    assert f"{spec.src} has 2 lines" in message
    assert f"{spec.tgt} has 4" in message


def test_source_longer_names_both_files_and_counts(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b", "c", "d", "e"], ["x", "y"])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation")
    message = _one_line(error)
    assert f"{spec.src} has 5 lines" in message
    assert f"{spec.tgt} has 2" in message


def test_source_one_line_longer_is_an_error(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b", "c"], ["x", "y"])
    with pytest.raises(DataError, match="differ in length"):
        load_corpus(spec, task="translation")


def test_empty_examples_dropped_and_counted(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "", "c", "d", "  "], ["x", "y", "", "w", "v"])
    report = CorpusReport()
    dataset = load_corpus(spec, task="translation", report=report)
    assert _as_pairs(dataset) == [("a", "x"), ("d", "w")]
    assert report.examples == 2
    assert report.dropped_empty == 3


def test_strict_empty_source_names_file_and_line(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b", ""], ["x", "y", "z"])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation", strict=True)
    message = _one_line(error)
    assert f"{spec.src}:3" in message
    assert "source" in message


def test_strict_empty_target_names_line(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b"], ["x", " "])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation", strict=True)
    message = _one_line(error)
    assert ":2:" in message
    assert "target" in message


def test_strict_empty_target_names_the_target_file(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a", "b"], ["x", ""])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation", strict=True)
    assert f"{spec.tgt}:2" in str(error.value)


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.src", "a\nb\n")
    tgt = tmp_path / "a.tgt"
    tgt.write_bytes(b"x\ny\xff\n")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(src=str(src), tgt=str(tgt)), task="translation")
    assert f"{tgt}:2:" in _one_line(error)


def test_invalid_utf8_replaced_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "a.src"
    src.write_bytes(b"a\xff\nb\n\xfec\n")
    tgt = tmp_path / "a.tgt"
    tgt.write_bytes(b"x\ny\xff\nz\n")
    report = CorpusReport()
    dataset = load_corpus(
        CorpusSpec(src=str(src), tgt=str(tgt)), task="translation", errors="replace", report=report
    )
    assert dataset["source"] == ["a\ufffd", "b", "\ufffdc"]
    assert dataset["target"] == ["x", "y\ufffd", "z"]
    assert report.replaced_utf8 == 3
    assert report.examples == 3


def test_nul_byte_in_aligned_file(tmp_path: Path) -> None:
    src = tmp_path / "a.src"
    src.write_bytes("a\nb\n".encode("utf-16-le"))
    tgt = _write(tmp_path / "a.tgt", "x\ny\n")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(src=str(src), tgt=str(tgt)), task="translation")
    assert f"{src}:1:" in _one_line(error)


def test_missing_aligned_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.src", "a\n")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(src=str(src), tgt=str(tmp_path / "nope.tgt")), task="translation")
    assert "nope.tgt" in _one_line(error)


def test_empty_aligned_files(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, [], [])
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation")
    assert "no examples" in _one_line(error)


def test_only_empty_lines_is_no_examples(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["", " "], ["x", ""])
    with pytest.raises(DataError, match="no examples"):
        load_corpus(spec, task="translation")


# -- TSV and JSONL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_tsv_with_header_and_column_mapping(tmp_path: Path, compress: bool) -> None:
    rows = ["id\ten\tde"] + [f"{i}\t{t}\t{s}" for i, (s, t) in enumerate(PAIRS)]
    name = "pairs.tsv.gz" if compress else "pairs.tsv"
    path = _write(tmp_path / name, _lines(rows), compress=compress)
    spec = CorpusSpec(path=str(path), columns={"source": "de", "target": "en"})
    report = CorpusReport()
    assert _as_pairs(load_corpus(spec, task="translation", report=report)) == PAIRS
    assert report.examples == 3


def test_tsv_default_column_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.tsv", _lines(["target\tsource", "T1\tS1", "", "T2\tS2"]))
    report = CorpusReport()
    dataset = load_corpus(CorpusSpec(path=str(path)), task="translation", report=report)
    assert _as_pairs(dataset) == [("S1", "T1"), ("S2", "T2")]
    assert report.dropped_empty == 1


def test_tsv_strict_empty_row_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.tsv", _lines(["source\ttarget", "a\tb", "c\t"]))
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation", strict=True)
    assert f"{path}:3:" in _one_line(error)


@pytest.mark.parametrize("row", ["only-one-cell", "a\tb\tc"])
def test_tsv_row_with_wrong_column_count(tmp_path: Path, row: str) -> None:
    path = _write(tmp_path / "p.tsv", _lines(["source\ttarget", "a\tb", "c\td", row]))
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert f"{path}:4:" in message
    assert "columns" in message


def test_tsv_header_missing_a_mapped_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.tsv", _lines(["en\tfr", "a\tb"]))
    spec = CorpusSpec(path=str(path), columns={"source": "de", "target": "en"})
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation")
    message = _one_line(error)
    assert f"{path}:1:" in message
    assert "'de'" in message


def test_tsv_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.tsv", "")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    assert str(path) in _one_line(error)


def test_tsv_header_only(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.tsv", "source\ttarget\n")
    with pytest.raises(DataError, match="no examples"):
        load_corpus(CorpusSpec(path=str(path)), task="translation")


def test_tsv_invalid_utf8_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_bytes(b"source\ttarget\na\xff\tb\nc\td\n")
    report = CorpusReport()
    dataset = load_corpus(CorpusSpec(path=str(path)), task="translation", errors="replace", report=report)
    assert dataset["source"] == ["a\ufffd", "c"]
    assert report.replaced_utf8 == 1
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    assert f"{path}:2:" in _one_line(error)


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl(tmp_path: Path, compress: bool) -> None:
    rows = [json.dumps({"de": s, "en": t, "extra": 1}, ensure_ascii=False) for s, t in PAIRS]
    name = "pairs.jsonl.gz" if compress else "pairs.jsonl"
    path = _write(tmp_path / name, _lines([*rows, ""]), compress=compress)
    spec = CorpusSpec(path=str(path), columns={"source": "de", "target": "en"})
    report = CorpusReport()
    assert _as_pairs(load_corpus(spec, task="translation", report=report)) == PAIRS
    assert report == CorpusReport(examples=3, dropped_empty=1, replaced_utf8=0)


def test_jsonl_missing_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", _lines(['{"source": "a", "target": "b"}', '{"source": "c"}']))
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert f"{path}:2:" in message
    assert "'target'" in message


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", _lines(['{"source": "a", "target": "b"}', "", '{"source": "c",']))
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert f"{path}:3:" in message
    assert "JSON" in message


@pytest.mark.parametrize("line", ['["a", "b"]', '"text"', "3"])
def test_jsonl_non_object(tmp_path: Path, line: str) -> None:
    path = _write(tmp_path / "p.jsonl", _lines(['{"source": "a", "target": "b"}', line]))
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert f"{path}:2:" in message
    assert "object" in message


def test_jsonl_null_value_is_not_the_text_none(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.jsonl",
        _lines(['{"source": "a", "target": "b"}', '{"source": null, "target": "c"}']),
    )
    try:
        dataset = load_corpus(CorpusSpec(path=str(path)), task="translation")
    except DataError:
        return
    assert "None" not in dataset["source"]


def test_jsonl_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", "")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert str(path) in message
    assert "empty" in message


@pytest.mark.parametrize("name", ["p.csv", "p.txt", "p.json", "p.gz", "p.tsv.bz2"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, "source\ttarget\na\tb\n")
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    message = _one_line(error)
    assert str(path) in message
    assert ".tsv" in message and ".jsonl" in message


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.tsv"
    with pytest.raises(DataError) as error:
        load_corpus(CorpusSpec(path=str(path)), task="translation")
    assert str(path) in _one_line(error)


# -- classification ------------------------------------------------------------------------------------


def test_classification_tsv_columns_text_and_label(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", _lines(["label\ttext", "pos\tgreat film", "neg\tdull", "neg\t"]))
    report = CorpusReport()
    dataset = load_corpus(CorpusSpec(path=str(path)), task="classification", report=report)
    assert dataset.column_names == ["text", "label"]
    assert dataset["text"] == ["great film", "dull"]
    assert dataset["label"] == ["pos", "neg"]
    assert report.dropped_empty == 1


def test_classification_jsonl_integer_labels_become_strings(tmp_path: Path) -> None:
    rows = [json.dumps({"sentence": "good", "y": 1}), json.dumps({"sentence": "bad", "y": 0})]
    path = _write(tmp_path / "train.jsonl", _lines(rows))
    spec = CorpusSpec(path=str(path), columns={"text": "sentence", "label": "y"})
    dataset = load_corpus(spec, task="classification")
    assert dataset.column_names == ["text", "label"]
    assert dataset["label"] == ["1", "0"]


def test_classification_aligned_text_and_label_files(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["good", "bad"], ["pos", "neg"])
    dataset = load_corpus(spec, task="classification")
    assert dataset["text"] == ["good", "bad"]
    assert dataset["label"] == ["pos", "neg"]


def test_unknown_task(tmp_path: Path) -> None:
    spec = _aligned(tmp_path, ["a"], ["b"])
    with pytest.raises(ConfigError, match="summarization"):
        load_corpus(spec, task="summarization")


# -- CorpusSpec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"src": "a", "tgt": "b", "path": "c.tsv"},
        {"path": "c.tsv", "hub": "x/y"},
        {"src": "a", "tgt": "b", "hub": "x/y"},
        {"src": "a"},
        {"tgt": "b"},
        {"tgt": "b", "path": "c.tsv"},
    ],
)
def test_spec_needs_exactly_one_complete_form(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        CorpusSpec(**kwargs)


def test_spec_src_without_tgt_message() -> None:
    with pytest.raises(ConfigError, match="both src and tgt"):
        CorpusSpec(src="a.txt")


def test_spec_from_dict() -> None:
    spec = CorpusSpec.from_dict({"path": "x.tsv", "columns": {"source": "de"}})
    assert spec == CorpusSpec(path="x.tsv", columns={"source": "de"})
    assert spec.files() == [Path("x.tsv")]
    assert CorpusSpec.from_dict({"src": "a", "tgt": "b"}).files() == [Path("a"), Path("b")]
    assert CorpusSpec.from_dict({"hub": "x/y", "config": "de-en", "split": "validation"}).files() == []


def test_spec_from_dict_unknown_key_names_it() -> None:
    with pytest.raises(ConfigError) as error:
        CorpusSpec.from_dict({"path": "x.tsv", "colums": {}}, where="data.train")
    message = str(error.value)
    assert "'colums'" in message
    assert "data.train" in message
    assert "columns" in message


def test_spec_describe() -> None:
    assert CorpusSpec(src="a", tgt="b").describe() == "a + b"
    assert CorpusSpec(path="x.tsv").describe() == "x.tsv"
    assert CorpusSpec(hub="org/set", config="de-en", split="test").describe() == "hub:org/set/de-en[test]"


# -- the Hub, offline ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv(variable, "1")
    spec = CorpusSpec(hub="bentrevett/multi30k", columns={"source": "de", "target": "en"})
    start = time.perf_counter()
    with pytest.raises(DataError) as error:
        load_corpus(spec, task="translation")
    assert time.perf_counter() - start < 5
    message = _one_line(error)
    assert "bentrevett/multi30k" in message
    assert variable in message
    assert "local files" in message
