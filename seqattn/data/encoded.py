"""Tokenized corpora, cached on disk.

Encoding a corpus is keyed by everything that determines its ids: the tokenizer model bytes, the
corpus spec and the sha256 of its input files (or the ``datasets`` fingerprint of a Hub dataset).
The ids are stored as an Arrow dataset under ``$SEQATTN_CACHE/encoded/<key>`` with
``datasets.Dataset.save_to_disk``; a later run with the same key loads them instead of encoding
again, and any change to the files or the tokenizer gives a new key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass

import datasets

from seqattn.data.corpora import CorpusReport, CorpusSpec, load_corpus
from seqattn.data.text import open_binary
from seqattn.data.tokenizer import Tokenizer
from seqattn.io import cache_dir, sha256_file

__all__ = ["EncodedCorpus", "encode_corpus"]

_FORMAT = 1  # bump when the stored layout changes


@dataclass
class EncodedCorpus:
    """Ids of a translation corpus (``source``/``target``) or a classification corpus
    (``text`` ids and string ``labels``)."""

    first: list[list[int]]
    """Source ids (translation) or text ids (classification), without special tokens."""
    second: list[list[int]] | list[str]
    """Target ids (translation) or labels (classification)."""
    report: CorpusReport
    cached: bool = False

    def __len__(self) -> int:
        return len(self.first)


def _cache_key(
    spec: CorpusSpec, task: str, tokenizers: list[Tokenizer], dataset: datasets.Dataset | None
) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"format": _FORMAT, "task": task, "spec": asdict(spec)}, sort_keys=True, default=str
        ).encode()
    )
    for tokenizer in tokenizers:
        digest.update(hashlib.sha256(tokenizer.model_proto).digest())
    for path in spec.files():
        digest.update(sha256_file(path).encode())
    if dataset is not None:
        digest.update(dataset._fingerprint.encode())
    return digest.hexdigest()[:32]


def encode_corpus(
    spec: CorpusSpec,
    *,
    task: str,
    tokenizer: Tokenizer,
    target_tokenizer: Tokenizer | None = None,
    strict: bool = False,
    use_cache: bool = True,
) -> EncodedCorpus:
    """Load and tokenize a corpus, from the cache when possible.

    For translation, ``target_tokenizer`` defaults to ``tokenizer`` (a joint vocabulary).
    """
    tokenizers = [tokenizer] if task == "classification" else [tokenizer, target_tokenizer or tokenizer]
    report = CorpusReport()
    hub_dataset = None
    if spec.hub is not None:
        hub_dataset = load_corpus(spec, task=task, strict=strict, report=report)
    for path in spec.files():  # a missing file or a directory fails here, before hashing
        open_binary(path).close()
    key = _cache_key(spec, task, tokenizers, hub_dataset) + ("-strict" if strict else "")
    directory = cache_dir("encoded") / key
    if use_cache and (directory / "report.json").is_file():
        datasets.disable_progress_bars()
        stored = datasets.load_from_disk(str(directory / "ids")).to_dict()
        cached_report = CorpusReport(**json.loads((directory / "report.json").read_text()))
        return EncodedCorpus(stored["first"], stored["second"], cached_report, cached=True)

    dataset = (
        hub_dataset if hub_dataset is not None else load_corpus(spec, task=task, strict=strict, report=report)
    )
    columns = dataset.column_names
    first = tokenizers[0].encode_batch(dataset[columns[0]])
    second = (
        dataset[columns[1]] if task == "classification" else tokenizers[1].encode_batch(dataset[columns[1]])
    )
    if use_cache:
        datasets.disable_progress_bars()
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        datasets.Dataset.from_dict({"first": first, "second": second}).save_to_disk(str(tmp / "ids"))
        (tmp / "report.json").write_text(json.dumps(asdict(report)))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    return EncodedCorpus(first, second, report)
