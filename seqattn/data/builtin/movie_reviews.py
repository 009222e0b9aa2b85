"""movie-reviews: 10,605 English movie-review sentences rated for sentiment by people.

Source: ``movieReviewSnippets_GroundTruth.txt`` of Hutto & Gilbert (2014), "VADER: A
Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text" (ICWSM-14), shipped
in the source distribution of ``vaderSentiment==3.3.2`` (MIT License, Copyright (c) 2016
C.J. Hutto) as ``additional_resources/hutto_ICWSM_2014.tar.gz``. The sentences are Rotten
Tomatoes review snippets from Pang & Lee (2004), each with the mean of at least 20 human ratings
on a scale from -4 (extremely negative) to +4 (extremely positive).

The raw file is UTF-8 with CRLF line ends, tab-separated ``ID<TAB>MEAN-RATING<TAB>TEXT``, IDs
1..10605 and no header. Online, the sdist is fetched with ``pip download`` (sha256-pinned,
cached under ``seqattn.io.cache_dir("downloads")``) and the file is read from the nested
tarball in memory. ``from_dir`` may hold the sdist or the ground-truth file itself.

Prepared layout::

    DIR/{train,valid,test}.tsv       binary: ``positive`` (rating > 0) / ``negative`` (< 0);
                                     the sentences rated exactly 0 are left out (counted)
    DIR/fine/{train,valid,test}.tsv  5 classes by rating, all 10,605 sentences: very_negative
                                     (< -2.4), negative, neutral (-0.8 .. 0.8), positive,
                                     very_positive (> 2.4): equal-width bins of the -4..4 scale
    DIR/fine/meta.json               ``fine/`` is itself a prepared directory (movie-reviews-fine)
    DIR/meta.json

Split: 80/10/10 over all sentences, by sorting on sha256 of a fixed seed and the sentence ID
(independent of platform and Python version); sentences with identical text share the split of
the lowest ID among them. Both variants use the same assignment, so ``fine/test`` holds the
binary test sentences plus the neutral ones. Rows are written in that hashed order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqattn.data import layout
from seqattn.data.builtin import _fetch
from seqattn.errors import DataError

__all__ = [
    "DESCRIPTION",
    "NAME",
    "TASK",
    "VERSION",
    "binary_label",
    "fine_label",
    "is_prepared",
    "prepare",
    "summary",
]

NAME = "movie-reviews"
VERSION = "1"
TASK = "classification"
DESCRIPTION = "10,605 movie-review sentences with mean human sentiment ratings (binary and 5-class)"

FINE_DIR = "fine"
FINE_NAME = "movie-reviews-fine"

REQUIREMENT = "vaderSentiment==3.3.2"
SDIST_FILENAME = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
GROUND_TRUTH = "movieReviewSnippets_GroundTruth.txt"
GROUND_TRUTH_MEMBER = f"hutto_ICWSM_2014/{GROUND_TRUTH}"
GROUND_TRUTH_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
SOURCE_SENTENCES = 10_605

SPLIT_SEED = "seqattn/movie-reviews/v1"
FRACTIONS = (0.8, 0.1, 0.1)

LABELS = ("negative", "positive")
FINE_LABELS = ("very_negative", "negative", "neutral", "positive", "very_positive")
NEUTRAL_MAX = 0.8  # |rating| <= 0.8: neutral
STRONG_MIN = 2.4  # |rating| > 2.4: very_*

LICENSE = (
    "MIT License, Copyright (c) 2016 C.J. Hutto (LICENSE.txt of the vaderSentiment 3.3.2 "
    "distribution that ships these ratings). The sentences are Rotten Tomatoes review snippets "
    "from the Pang & Lee (2004) movie-review data."
)
CITATION = (
    "C.J. Hutto and E. Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment Analysis of "
    "Social Media Text. ICWSM 2014."
)
_OFFLINE_HINT = (
    f"to work offline pass --from DIR with {SDIST_FILENAME} or {GROUND_TRUTH} in DIR (from_dir=DIR)"
)


@dataclass(frozen=True)
class Snippet:
    """One rated sentence of the source file."""

    id: int
    rating: float
    text: str


def binary_label(rating: float) -> str | None:
    """``"positive"``/``"negative"`` by the rating's sign; ``None`` for a rating of exactly 0."""
    if rating > 0:
        return "positive"
    if rating < 0:
        return "negative"
    return None


def fine_label(rating: float) -> str:
    """One of :data:`FINE_LABELS`: equal-width bins of 1.6 over the -4..4 scale."""
    magnitude = abs(rating)
    if magnitude <= NEUTRAL_MAX:
        return "neutral"
    side = "positive" if rating > 0 else "negative"
    return f"very_{side}" if magnitude > STRONG_MIN else side


def _ground_truth_from_sdist(sdist: Path) -> bytes:
    inner = _fetch.read_member(sdist, INNER_ARCHIVE)
    return _fetch.read_member(inner, GROUND_TRUTH_MEMBER, label=f"{sdist}:{INNER_ARCHIVE}")


def _find_sdist(directory: Path) -> Path | None:
    exact = directory / SDIST_FILENAME
    if exact.is_file():
        return exact
    found = [path for path in directory.iterdir() if path.name.lower() == SDIST_FILENAME.lower()]
    return found[0] if found else None


def _load_ground_truth(from_dir: Path | None) -> tuple[bytes, str]:
    """The ground-truth file's bytes (sha256-checked) and a word on where they came from."""
    if from_dir is None:
        sdist = _fetch.pip_artifact(
            REQUIREMENT, SDIST_FILENAME, SDIST_SHA256, sdist=True, offline_hint=_OFFLINE_HINT
        )
        data, origin, what = _ground_truth_from_sdist(sdist), "pip download", f"{sdist}:{GROUND_TRUTH}"
    else:
        if from_dir.is_file():
            candidates = [from_dir]
        elif from_dir.is_dir():
            candidates = [path for path in (_find_sdist(from_dir), from_dir / GROUND_TRUTH) if path]
        else:
            raise DataError(f"{from_dir}: no such directory (--from should hold {SDIST_FILENAME})")
        path = next((path for path in candidates if path.is_file()), None)
        if path is None:
            raise DataError(f"{from_dir}: holds neither {SDIST_FILENAME} nor {GROUND_TRUTH}")
        if path.name.endswith((".tar.gz", ".tgz")):
            _fetch.verify_sha256(path, SDIST_SHA256)
            data, origin, what = _ground_truth_from_sdist(path), "local sdist", f"{path}:{GROUND_TRUTH}"
        else:
            data, origin, what = path.read_bytes(), "local ground-truth file", str(path)
    _fetch.verify_bytes(data, GROUND_TRUTH_SHA256, what=what)
    return data, origin


def parse_ground_truth(data: bytes, *, what: str = GROUND_TRUTH) -> list[Snippet]:
    """Parse ``ID<TAB>RATING<TAB>TEXT`` lines; ``what`` names the file in error messages."""
    text, _ = _fetch.decode_text(data, what=what)
    snippets: list[Snippet] = []
    seen: set[int] = set()
    for number, line in enumerate(_fetch.split_lines(text), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 3:
                raise ValueError
            snippet = Snippet(int(parts[0]), float(parts[1]), layout.clean_text(parts[2]))
        except ValueError:
            raise DataError(f"{what}:{number}: expected ID<TAB>RATING<TAB>TEXT") from None
        if snippet.id in seen:
            raise DataError(f"{what}:{number}: ID {snippet.id} appears twice")
        if not snippet.text:
            raise DataError(f"{what}:{number}: empty text")
        seen.add(snippet.id)
        snippets.append(snippet)
    return snippets


def assign_splits(snippets: list[Snippet]) -> dict[str, list[Snippet]]:
    """Split 80/10/10 in hashed ID order, keeping identical texts in one split."""
    groups: dict[str, list[Snippet]] = {}
    for snippet in sorted(snippets, key=lambda s: s.id):
        groups.setdefault(snippet.text, []).append(snippet)
    by_key = {str(group[0].id): group for group in groups.values()}
    _, n_valid, n_test = _fetch.split_sizes(len(snippets), FRACTIONS)
    splits: dict[str, list[Snippet]] = {split: [] for split in layout.SPLITS}
    for key in _fetch.hash_order(by_key, SPLIT_SEED):
        if len(splits["test"]) < n_test:
            split = "test"
        elif len(splits["valid"]) < n_valid:
            split = "valid"
        else:
            split = "train"
        splits[split].extend(by_key[key])
    return splits


def _counts(rows: list[tuple[str, str]], labels: tuple[str, ...]) -> dict[str, int]:
    counter = Counter(label for label, _ in rows)
    return {label: counter[label] for label in labels}


def is_prepared(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds movie-reviews at this version, ``fine/`` included."""
    output_dir = Path(output_dir)
    return layout.is_prepared(output_dir, name=NAME, version=VERSION) and layout.is_prepared(
        output_dir / FINE_DIR, name=FINE_NAME, version=VERSION
    )


def summary(meta: dict[str, Any]) -> str:
    """A few human-readable lines about a prepared movie-reviews directory."""
    stats = meta["stats"]
    fine = meta["variants"]["fine"]
    return "\n".join(
        [
            f"{meta['name']} v{meta['version']}: {meta.get('description', '')}",
            "splits: " + ", ".join(f"{split} {count}" for split, count in meta["splits"].items()),
            "fine/ splits: " + ", ".join(f"{split} {count}" for split, count in fine["splits"].items()),
            f"source sentences {stats['source_sentences']}, zero-rated left out {stats['zero_rated_dropped']}, "
            f"duplicate texts {stats['duplicate_texts']} (kept, same split)",
            "labels: " + ", ".join(f"{label} {n}" for label, n in stats["label_totals"].items()),
            "fine labels: " + ", ".join(f"{label} {n}" for label, n in stats["fine_label_totals"].items()),
            f"source: {meta['source']['package']} ({meta['source']['obtained_via']}), "
            f"sha256 {meta['source']['artifact_sha256']}",
            f"license: {meta['license']}",
        ]
    )


def prepare(output_dir: Path, *, from_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Prepare movie-reviews (binary in ``output_dir``, 5-class in ``output_dir/fine``).

    Returns the meta dict; a directory already prepared at this version is left as it is.
    """
    output_dir = Path(output_dir)
    fine_dir = output_dir / FINE_DIR
    existing = _fetch.start_prepare(
        output_dir,
        name=NAME,
        version=VERSION,
        force=force,
        complete=layout.is_prepared(fine_dir, name=FINE_NAME, version=VERSION),
    )
    if existing is not None:
        return existing
    (fine_dir / "meta.json").unlink(missing_ok=True)

    data, origin = _load_ground_truth(None if from_dir is None else Path(from_dir))
    snippets = parse_ground_truth(data)
    if len(snippets) != SOURCE_SENTENCES:
        raise DataError(f"{GROUND_TRUTH}: {len(snippets)} sentences, expected {SOURCE_SENTENCES}")
    splits = assign_splits(snippets)

    binary_sizes: dict[str, int] = {}
    fine_sizes: dict[str, int] = {}
    binary_counts: dict[str, dict[str, int]] = {}
    fine_counts: dict[str, dict[str, int]] = {}
    for split, members in splits.items():
        binary = [(label, s.text) for s in members if (label := binary_label(s.rating)) is not None]
        fine = [(fine_label(s.rating), s.text) for s in members]
        binary_sizes[split] = layout.write_labeled(output_dir, split, binary)
        fine_sizes[split] = layout.write_labeled(fine_dir, split, fine)
        binary_counts[split] = _counts(binary, LABELS)
        fine_counts[split] = _counts(fine, FINE_LABELS)

    ratings = [s.rating for s in snippets]
    texts = Counter(s.text for s in snippets)
    split_info = {
        "method": "sha256(seed, sentence ID) order; identical texts kept in one split",
        "seed": SPLIT_SEED,
        "fractions": list(FRACTIONS),
        "source_sentences_per_split": {split: len(members) for split, members in splits.items()},
    }
    source = {
        "package": REQUIREMENT,
        "artifact": SDIST_FILENAME,
        "artifact_sha256": SDIST_SHA256,
        "member": f"{INNER_ARCHIVE} -> {GROUND_TRUTH_MEMBER}",
        "member_sha256": GROUND_TRUTH_SHA256,
        "obtained_via": origin,
        "format": "UTF-8, CRLF, ID<TAB>MEAN-RATING<TAB>TEXT, ratings -4..4 (mean of >= 20 raters)",
        "citation": CITATION,
    }
    fine_rule = (
        f"|rating| <= {NEUTRAL_MAX}: neutral; {NEUTRAL_MAX} < |rating| <= {STRONG_MIN}: negative/positive; "
        f"|rating| > {STRONG_MIN}: very_negative/very_positive (equal-width bins of the -4..4 scale)"
    )
    fine_meta = {
        "name": FINE_NAME,
        "task": TASK,
        "version": VERSION,
        "description": "movie-reviews, 5 sentiment classes by mean rating (all sentences)",
        "parent": NAME,
        "splits": fine_sizes,
        "labels": list(FINE_LABELS),
        "label_rule": fine_rule,
        "split": split_info,
        "stats": {"label_counts": fine_counts},
        "source": source,
        "license": LICENSE,
    }
    layout.write_meta(fine_dir, fine_meta)
    meta = {
        "name": NAME,
        "task": TASK,
        "version": VERSION,
        "description": DESCRIPTION,
        "splits": binary_sizes,
        "labels": list(LABELS),
        "label_rule": "positive if the mean rating > 0, negative if < 0; ratings of exactly 0 left out",
        "variants": {
            "fine": {
                "path": FINE_DIR,
                "name": FINE_NAME,
                "labels": list(FINE_LABELS),
                "label_rule": fine_rule,
                "splits": fine_sizes,
            }
        },
        "split": split_info,
        "stats": {
            "source_sentences": len(snippets),
            "zero_rated_dropped": sum(1 for rating in ratings if rating == 0),
            "duplicate_texts": sum(count - 1 for count in texts.values()),
            "rating_min": min(ratings),
            "rating_max": max(ratings),
            "mean_words": round(sum(len(s.text.split()) for s in snippets) / len(snippets), 2),
            "label_counts": binary_counts,
            "label_totals": {label: sum(c[label] for c in binary_counts.values()) for label in LABELS},
            "fine_label_totals": {
                label: sum(c[label] for c in fine_counts.values()) for label in FINE_LABELS
            },
        },
        "source": source,
        "license": LICENSE,
    }
    layout.write_meta(output_dir, meta)
    return meta
