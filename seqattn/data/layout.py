"""The standard on-disk layout of a prepared dataset.

Every built-in dataset (and any corpus a user prepares the same way) is one directory::

    DIR/meta.json                      name, task, version, split sizes, provenance, statistics
    DIR/{train,valid,test}.src         translation: one source sentence per line
    DIR/{train,valid,test}.tgt         translation: the aligned target sentence, same line number
    DIR/{train,valid,test}.tsv         classification: header ``label<TAB>text``, one example a row
    DIR/<split>.<extra>                optional extras described in meta.json (e.g. gold alignments)

Text is UTF-8, ``\\n`` line ends, no tabs or newlines inside a text (they are collapsed to single
spaces on writing). Every file is written atomically, and ``meta.json`` is written last, so a
directory with a ``meta.json`` is complete: preparing again with the same name and version is a
no-op (:func:`is_prepared`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seqattn.io import atomic_open, atomic_write_text

__all__ = [
    "SPLITS",
    "clean_text",
    "is_prepared",
    "read_meta",
    "write_labeled",
    "write_meta",
    "write_parallel",
]

SPLITS = ("train", "valid", "test")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Collapse every run of whitespace (tabs and newlines included) to one space; strip."""
    return _SPACE.sub(" ", text).strip()


def write_parallel(directory: str | Path, split: str, pairs: Iterable[tuple[str, str]]) -> int:
    """Write ``split.src``/``split.tgt`` from (source, target) pairs; returns the pair count."""
    directory = Path(directory)
    count = 0
    with (
        atomic_open(directory / f"{split}.src") as src,
        atomic_open(directory / f"{split}.tgt") as tgt,
    ):
        for source, target in pairs:
            src.write(clean_text(source) + "\n")
            tgt.write(clean_text(target) + "\n")
            count += 1
    return count


def write_labeled(directory: str | Path, split: str, rows: Iterable[tuple[str, str]]) -> int:
    """Write ``split.tsv`` from (label, text) rows; returns the row count."""
    directory = Path(directory)
    count = 0
    with atomic_open(directory / f"{split}.tsv") as out:
        out.write("label\ttext\n")
        for label, text in rows:
            out.write(f"{clean_text(label)}\t{clean_text(text)}\n")
            count += 1
    return count


def write_meta(directory: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` (last, marking the directory complete). Needs ``name``, ``task``,
    ``version`` and ``splits`` (split name -> example count)."""
    missing = {"name", "task", "version", "splits"} - meta.keys()
    if missing:
        raise ValueError(f"meta.json needs {', '.join(sorted(missing))}")
    atomic_write_text(Path(directory) / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    """The directory's ``meta.json``, or ``None`` if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(directory) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_prepared(directory: str | Path, *, name: str, version: str) -> bool:
    """Whether ``directory`` already holds this dataset at this version, with all its files."""
    meta = read_meta(directory)
    if meta is None or meta.get("name") != name or meta.get("version") != version:
        return False
    suffixes = (".src", ".tgt") if meta.get("task") == "translation" else (".tsv",)
    return all(
        (Path(directory) / f"{split}{suffix}").is_file() for split in meta["splits"] for suffix in suffixes
    )
