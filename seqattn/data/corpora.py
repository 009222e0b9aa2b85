"""Corpora: parallel (source, target) and classification (text, label) examples.

A :class:`CorpusSpec` says where examples come from, in one of three forms:

* ``src`` + ``tgt``: two aligned plain-text files, one example per line (for classification:
  a text file and a label file);
* ``path``: a TSV file with a header row, or a JSONL file (one object per line); ``columns`` maps
  seqattn's field names to the file's column names;
* ``hub``: a Hugging Face Hub dataset name, with ``config``, ``split`` and ``columns`` (for example
  ``bentrevett/multi30k`` with ``columns: {source: de, target: en}``; ``stanfordnlp/sst2`` with
  ``columns: {text: sentence, label: label}``).

Gzip'd variants of every local file are read transparently. Local files are read here, line by
line with :mod:`seqattn.data.text` (so every bad line is reported with its file and line number),
and handed to ``datasets`` as an in-memory :class:`datasets.Dataset`; Hub datasets are loaded by
``datasets.load_dataset``. Without network access a Hub name fails at once with one line saying
how to point at local files instead.

Empty examples (an empty source or target, or an empty text) are dropped and counted; with
``strict=True`` the first one is an error naming its file and line.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets

from seqattn.data.text import LineStats, iter_lines
from seqattn.errors import ConfigError, DataError

__all__ = ["CorpusReport", "CorpusSpec", "load_corpus"]

TASK_FIELDS = {"translation": ("source", "target"), "classification": ("text", "label")}


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus comes from (exactly one of ``src``/``tgt``, ``path`` or ``hub``)."""

    src: str | None = None
    """Source (or text) file, one example per line."""
    tgt: str | None = None
    """Target (or label) file aligned line by line with ``src``."""
    path: str | None = None
    """A ``.tsv`` or ``.jsonl`` file (optionally ``.gz``)."""
    hub: str | None = None
    """A Hugging Face Hub dataset name."""
    config: str | None = None
    """Hub dataset configuration (e.g. ``de-en`` for WMT16)."""
    split: str = "train"
    """Hub split."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """seqattn field -> column name, e.g. ``{source: de, target: en}``. Defaults to the field names
    themselves (``source``/``target`` or ``text``/``label``); for a Hub ``translation`` column of
    dicts (WMT style), ``{source: translation.de, target: translation.en}``."""

    def __post_init__(self) -> None:
        forms = [self.src is not None or self.tgt is not None, self.path is not None, self.hub is not None]
        if sum(forms) != 1:
            raise ConfigError(
                "a corpus needs exactly one of: src and tgt files, a path (.tsv/.jsonl), or a hub name"
            )
        if forms[0] and (self.src is None or self.tgt is None):
            raise ConfigError("a corpus given as files needs both src and tgt")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "corpus") -> CorpusSpec:
        """Build from a config mapping; unknown keys are an error naming ``where``."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(known))})"
            )
        return cls(**data)

    def describe(self) -> str:
        if self.hub is not None:
            return f"hub:{self.hub}" + (f"/{self.config}" if self.config else "") + f"[{self.split}]"
        return self.path if self.path is not None else f"{self.src} + {self.tgt}"

    def files(self) -> list[Path]:
        """The local files this spec reads (empty for a Hub dataset)."""
        if self.path is not None:
            return [Path(self.path)]
        if self.src is not None and self.tgt is not None:
            return [Path(self.src), Path(self.tgt)]
        return []


@dataclass
class CorpusReport:
    """What loading a corpus kept, dropped and repaired."""

    examples: int = 0
    dropped_empty: int = 0
    replaced_utf8: int = 0


def load_corpus(
    spec: CorpusSpec,
    *,
    task: str,
    strict: bool = False,
    errors: str = "strict",
    report: CorpusReport | None = None,
) -> datasets.Dataset:
    """Load a corpus as a ``datasets.Dataset`` with the task's two string columns.

    ``task`` is ``translation`` (columns ``source``, ``target``) or ``classification``
    (``text``, ``label``). ``errors="replace"`` replaces invalid UTF-8 instead of failing.
    """
    if task not in TASK_FIELDS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASK_FIELDS)}")
    report = report if report is not None else CorpusReport()
    fields = TASK_FIELDS[task]
    if spec.hub is not None:
        rows = _hub_rows(spec, fields)
    elif spec.path is not None:
        rows = _table_rows(Path(spec.path), fields, spec.columns, errors=errors, report=report)
    else:
        assert spec.src is not None and spec.tgt is not None
        rows = _aligned_rows(Path(spec.src), Path(spec.tgt), errors=errors, report=report)

    columns: dict[str, list[str]] = {name: [] for name in fields}
    for where, first, second in rows:
        if not first.strip() or not second.strip():
            if strict:
                raise DataError(
                    f"{where}: empty {fields[0] if not first.strip() else fields[1]} (strict mode)"
                )
            report.dropped_empty += 1
            continue
        columns[fields[0]].append(first)
        columns[fields[1]].append(second)
    if not columns[fields[0]]:
        raise DataError(f"{spec.describe()}: no examples (empty input)")
    report.examples = len(columns[fields[0]])
    return datasets.Dataset.from_dict(columns)


# -- local files -------------------------------------------------------------------------------


def _aligned_rows(
    src: Path, tgt: Path, *, errors: str, report: CorpusReport
) -> Iterator[tuple[str, str, str]]:
    src_stats, tgt_stats = LineStats(), LineStats()
    src_lines = iter_lines(src, errors=errors, stats=src_stats)
    tgt_lines = iter_lines(tgt, errors=errors, stats=tgt_stats)
    missing = object()
    for number, (first, second) in enumerate(
        itertools.zip_longest(src_lines, tgt_lines, fillvalue=missing), 1
    ):
        if first is missing or second is missing:
            # One file ended: count the rest of the other for the message.
            rest = src_lines if second is missing else tgt_lines
            longer = number + sum(1 for _ in rest)
            src_count, tgt_count = (longer, number - 1) if second is missing else (number - 1, longer)
            raise DataError(
                f"parallel files differ in length: {src} has {src_count} lines, {tgt} has {tgt_count}"
            )
        # Name the file whose line is at fault when only the target is empty.
        where = f"{tgt}:{number}" if first.strip() and not second.strip() else f"{src}:{number}"
        yield where, first, second
    report.replaced_utf8 += src_stats.replaced + tgt_stats.replaced


def _column(columns: Mapping[str, str], name: str) -> str:
    return columns.get(name, name)


def _table_rows(
    path: Path, fields: tuple[str, str], columns: Mapping[str, str], *, errors: str, report: CorpusReport
) -> Iterator[tuple[str, str, str]]:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    wanted = [_column(columns, f) for f in fields]
    stats = LineStats()
    if name.endswith(".tsv"):
        lines = iter_lines(path, errors=errors, stats=stats)
        header = next(lines, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header row)")
        names = header.split("\t")
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(f"{path}:1: header has no column {missing[0]!r} (columns: {', '.join(names)})")
        index = [names.index(c) for c in wanted]
        for number, line in enumerate(lines, start=2):
            if not line.strip():
                yield f"{path}:{number}", "", ""
                continue
            cells = line.split("\t")
            if len(cells) != len(names):
                raise DataError(
                    f"{path}:{number}: expected {len(names)} tab-separated columns, got {len(cells)}"
                )
            yield f"{path}:{number}", cells[index[0]], cells[index[1]]
    elif name.endswith(".jsonl"):
        for number, line in enumerate(iter_lines(path, errors=errors, stats=stats), start=1):
            if not line.strip():
                yield f"{path}:{number}", "", ""
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            values = []
            for column in wanted:
                if column not in record:
                    raise DataError(f"{path}:{number}: missing field {column!r}")
                value = record[column]
                values.append("" if value is None else str(value))  # null counts as empty
            yield f"{path}:{number}", values[0], values[1]
    else:
        raise DataError(f"{path}: unknown format; expected .tsv or .jsonl (optionally .gz), or src/tgt files")
    report.replaced_utf8 += stats.replaced


# -- the Hugging Face Hub ----------------------------------------------------------------------

_OFFLINE_HINT = (
    "point at local files instead (src/tgt text files, or a .tsv/.jsonl path; "
    "`seqattn data prepare` writes such files)"
)


def _hub_offline_reason() -> str | None:
    """Why the Hub cannot be reached right now, or ``None`` if it may be."""
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return f"cannot reach {host}"
    return None


def _hub_rows(spec: CorpusSpec, fields: tuple[str, str]) -> Iterator[tuple[str, str, str]]:
    assert spec.hub is not None
    name = spec.describe()
    reason = _hub_offline_reason()
    if reason is not None:
        raise DataError(f"cannot load {name} from the Hugging Face Hub ({reason}); {_OFFLINE_HINT}")
    try:
        dataset = datasets.load_dataset(spec.hub, spec.config, split=spec.split)
    except (ConnectionError, OSError) as error:
        raise DataError(f"cannot load {name} from the Hugging Face Hub ({error}); {_OFFLINE_HINT}") from None
    except ValueError as error:  # unknown split or config
        raise DataError(f"{name}: {error}") from None
    wanted = [_column(spec.columns, f) for f in fields]
    for column in wanted:
        if column.split(".")[0] not in dataset.column_names:
            raise DataError(f"{name}: no column {column!r} (columns: {', '.join(dataset.column_names)})")
    # Integer class labels with names (SST-2, IMDB, AG News) are given as their names.
    names = [_class_names(dataset.features.get(column)) for column in wanted]
    for number, record in enumerate(dataset):
        values = [_lookup(record, column) for column in wanted]
        texts = [
            n[v] if n is not None and isinstance(v, int) else str(v)
            for n, v in zip(names, values, strict=True)
        ]
        yield f"{name}#{number}", texts[0], texts[1]


def _class_names(feature: Any) -> list[str] | None:
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _lookup(record: Mapping[str, Any], column: str) -> Any:
    """``record['a']['b']`` for ``column='a.b'`` (WMT's ``translation`` dicts)."""
    value: Any = record
    for part in column.split("."):
        value = value[part]
    return value
