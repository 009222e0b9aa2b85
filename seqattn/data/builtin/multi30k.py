"""multi30k: Multi30k task 1 image-caption translations, German / English / French.

Source: the raw (untokenized) files of the official repository, ``data/task1/raw`` of
https://github.com/multi30k/dataset (Elliott et al., 2016, "Multi30K: Multilingual
English-German Image Descriptions"; French from the WMT17 multimodal task):
``{train,val,test_2016_flickr}.{de,en,fr}.gz``, line N of each language a translation of line N
of the others. Online they are downloaded from :data:`BASE_URL` and cached under
``seqattn.io.cache_dir("downloads", "multi30k")``; ``from_dir`` is a directory holding the same
``.gz`` files (the only option on a machine without internet).

Checksums: the sha256 pinned for each file (:data:`CONTENT_SHA256`) is that of its *decompressed*
text, so a file recompressed elsewhere (gzip stores a name and a time stamp) still verifies,
while any change to the text fails with a :class:`~seqattn.errors.DataError`.

Prepared layout: ``{train,valid,test}.{src,tgt}`` from ``train``, ``val`` and
``test_2016_flickr`` (other Multi30k test sets are not used), 29,000 / 1,014 / 1,000 pairs. The
language pair is chosen with ``src_lang``/``tgt_lang`` (default German to English); when they are
not given and the output directory already holds a prepared Multi30k, its pair is kept.

Terms: Multi30k is distributed for research use (its English captions come from Flickr30K); it is
never copied into this repository.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

from seqattn.data import layout
from seqattn.data.builtin import _fetch
from seqattn.errors import DataError
from seqattn.io import cache_dir

__all__ = [
    "DESCRIPTION",
    "LANGUAGES",
    "NAME",
    "TASK",
    "VERSION",
    "is_prepared",
    "prepare",
    "summary",
]

NAME = "multi30k"
VERSION = "1"
TASK = "translation"
DESCRIPTION = "Multi30k task 1 image captions, German/English/French (train/val/test_2016_flickr)"

LANGUAGES = ("de", "en", "fr")
DEFAULT_PAIR = ("de", "en")
BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"

#: our split -> Multi30k file stem
SPLIT_FILES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
EXPECTED_LINES = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}

#: sha256 of the decompressed text of each file
CONTENT_SHA256 = {
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
}

LICENSE = (
    "Research use: Multi30k (Elliott et al., 2016; https://github.com/multi30k/dataset) is "
    "distributed for research; its English captions derive from Flickr30K (Young et al., 2014). "
    "Not for redistribution with this package."
)
CITATION = (
    "D. Elliott, S. Frank, K. Sima'an and L. Specia. Multi30K: Multilingual English-German Image "
    "Descriptions. Proceedings of the 5th Workshop on Vision and Language, 2016."
)
_OFFLINE_HINT = (
    "without internet pass --from DIR (from_dir=DIR), DIR holding {train,val,test_2016_flickr}.{de,en,fr}.gz"
)


def _resolve_pair(output_dir: Path, src_lang: str | None, tgt_lang: str | None) -> tuple[str, str]:
    """The language pair: explicit arguments, else an existing Multi30k meta's pair, else de-en.

    When only one side is given, the other is English, or German when the given side is English.
    """
    meta = layout.read_meta(output_dir) or {}
    known = meta.get("name") == NAME and {meta.get("src_lang"), meta.get("tgt_lang")} <= set(LANGUAGES)
    if src_lang is None and tgt_lang is None and known:
        return meta["src_lang"], meta["tgt_lang"]
    source = src_lang or ("en" if tgt_lang == "de" else "de")
    target = tgt_lang or ("de" if source == "en" else "en")
    for option, language in (("src_lang", source), ("tgt_lang", target)):
        if language not in LANGUAGES:
            raise DataError(f"multi30k: {option} {language!r} is not one of {', '.join(LANGUAGES)}")
    if source == target:
        raise DataError(f"multi30k: src_lang and tgt_lang are both {source!r}; pick two languages")
    return source, target


def _raw_file(stem: str, language: str, from_dir: Path | None) -> Path:
    """The path of ``{stem}.{language}.gz``: in ``from_dir``, or downloaded into the cache."""
    filename = f"{stem}.{language}.gz"
    if from_dir is not None:
        path = from_dir / filename
        if not path.is_file():
            raise DataError(f"{from_dir}: missing {filename} (Multi30k task 1 raw file)")
        return path
    return _fetch.http_download(
        BASE_URL + filename, cache_dir("downloads", "multi30k") / filename, offline_hint=_OFFLINE_HINT
    )


def _read_lines(path: Path) -> tuple[list[str], bytes]:
    """The lines of a gzip-compressed UTF-8 file, and its decompressed bytes."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable gzip file ({' '.join(str(error).split())})") from None
    text, _ = _fetch.decode_text(data, what=str(path))
    return _fetch.split_lines(text), data


def _checked_lines(stem: str, language: str, from_dir: Path | None) -> list[str]:
    """The lines of ``{stem}.{language}.gz``, checked for their count and pinned content."""
    path = _raw_file(stem, language, from_dir)
    expected = EXPECTED_LINES[stem]
    try:
        lines, data = _read_lines(path)
        if len(lines) != expected:
            raise DataError(
                f"{path}: {len(lines)} lines, expected {expected} like the other languages' {stem} files"
            )
        _fetch.verify_bytes(data, CONTENT_SHA256[f"{stem}.{language}"], what=f"{path} (decompressed)")
    except DataError as error:
        if from_dir is None:  # a bad download: drop it from the cache so the next run fetches it again
            path.unlink(missing_ok=True)
            raise DataError(f"{error}; removed from the cache") from None
        raise
    return lines


def is_prepared(output_dir: str | Path, *, src_lang: str | None = None, tgt_lang: str | None = None) -> bool:
    """Whether ``output_dir`` holds Multi30k at this version (for the given pair, if any)."""
    if not layout.is_prepared(output_dir, name=NAME, version=VERSION):
        return False
    meta = layout.read_meta(output_dir) or {}
    return src_lang in (None, meta.get("src_lang")) and tgt_lang in (None, meta.get("tgt_lang"))


def summary(meta: dict[str, Any]) -> str:
    """A few human-readable lines about a prepared Multi30k directory."""
    lines = [
        f"{meta['name']} v{meta['version']} {meta['src_lang']}-{meta['tgt_lang']}: {meta.get('description', '')}",
        "splits: "
        + ", ".join(
            f"{split} {count} (from {meta['split_files'][split]})" for split, count in meta["splits"].items()
        ),
    ]
    for split, stats in meta["stats"].items():
        lines.append(
            f"{split}: mean words {stats['mean_src_words']} -> {stats['mean_tgt_words']}, "
            f"max {stats['max_src_words']} -> {stats['max_tgt_words']}"
        )
    lines.append(f"source: {meta['source']['repository']} ({meta['source']['obtained_via']})")
    lines.append(f"license: {meta['license']}")
    return "\n".join(lines)


def prepare(
    output_dir: Path,
    *,
    from_dir: Path | None = None,
    force: bool = False,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> dict[str, Any]:
    """Prepare Multi30k ``src_lang`` -> ``tgt_lang`` into ``output_dir``; returns the meta dict.

    The pair defaults to that of an existing Multi30k in ``output_dir``, else German -> English.
    A directory already prepared at this version and pair is left as it is; one holding another
    pair is only overwritten with ``force``.
    """
    output_dir = Path(output_dir)
    source, target = _resolve_pair(output_dir, src_lang, tgt_lang)
    meta = layout.read_meta(output_dir)
    same_pair = meta is not None and (meta.get("src_lang"), meta.get("tgt_lang")) == (source, target)
    if not force and meta is not None and meta.get("name") == NAME and not same_pair:
        raise DataError(
            f"{output_dir} already holds multi30k {meta.get('src_lang')}-{meta.get('tgt_lang')}, "
            f"not {source}-{target}: choose another output directory or use --force"
        )
    existing = _fetch.start_prepare(output_dir, name=NAME, version=VERSION, force=force, complete=same_pair)
    if existing is not None:
        return existing
    if from_dir is not None:
        from_dir = Path(from_dir)
        if not from_dir.is_dir():
            raise DataError(f"{from_dir}: no such directory (--from should hold the Multi30k .gz files)")

    files: dict[str, dict[str, str]] = {}
    texts: dict[tuple[str, str], list[str]] = {}
    for stem in SPLIT_FILES.values():  # read and check everything before writing anything
        for language in (source, target):
            texts[stem, language] = _checked_lines(stem, language, from_dir)
            files[f"{stem}.{language}.gz"] = {"content_sha256": CONTENT_SHA256[f"{stem}.{language}"]}

    sizes: dict[str, int] = {}
    stats: dict[str, dict[str, float]] = {}
    for split, stem in SPLIT_FILES.items():
        pairs = list(zip(texts[stem, source], texts[stem, target], strict=True))
        sizes[split] = layout.write_parallel(output_dir, split, pairs)
        stats[split] = {
            "pairs": len(pairs),
            "mean_src_words": round(sum(len(s.split()) for s, _ in pairs) / len(pairs), 2),
            "mean_tgt_words": round(sum(len(t.split()) for _, t in pairs) / len(pairs), 2),
            "max_src_words": max(len(s.split()) for s, _ in pairs),
            "max_tgt_words": max(len(t.split()) for _, t in pairs),
            "empty_lines": sum(1 for s, t in pairs if not s.strip() or not t.strip()),
            "whitespace_normalized_lines": sum(
                (layout.clean_text(s) != s) + (layout.clean_text(t) != t) for s, t in pairs
            ),
        }

    meta = {
        "name": NAME,
        "task": TASK,
        "version": VERSION,
        "description": DESCRIPTION,
        "src_lang": source,
        "tgt_lang": target,
        "splits": sizes,
        "split_files": dict(SPLIT_FILES),
        "stats": stats,
        "source": {
            "repository": "https://github.com/multi30k/dataset (data/task1/raw)",
            "base_url": BASE_URL,
            "files": files,
            "obtained_via": "download" if from_dir is None else "local files",
            "checksums": "sha256 of the decompressed text of each .gz file",
            "citation": CITATION,
        },
        "license": LICENSE,
    }
    layout.write_meta(output_dir, meta)
    return meta
