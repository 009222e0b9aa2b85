"""The embedded ``dates`` dataset: human-readable dates in nine locales -> ISO 8601.

Each example is one calendar date between :data:`FIRST_DATE` and :data:`LAST_DATE`. The
source is the date rendered with one of the CLDR date patterns shipped with babel (the four
standard widths ``short``/``medium``/``long``/``full`` plus the skeletons in
:data:`EXTRA_SKELETONS`) in one of :data:`LOCALES`; the target is ``YYYY-MM-DD``::

    10 de septiembre de 2006        ->  2006-09-10     (es_ES, long)
    Sonntag, 10. September 2006     ->  2006-09-10     (de_DE, full)
    10.09.06                        ->  2006-09-10     (de_DE, short)

Everything is derived from a fixed seed, so two runs write byte-identical files (for a given
babel/CLDR release, which ``meta.json`` records).

Splits
    The dates of the range are shuffled once; the first ``SIZES["test"]`` dates form the test
    split, the next ``SIZES["valid"]`` the valid split, and the train split samples its dates
    from the rest. A calendar date therefore appears in at most one split, under any locale or
    pattern, and at most once within it. Patterns are spread evenly over each split (every kept
    pattern occurs ``n // len(patterns)`` or one more times), then shuffled against the dates.

Two-digit years
    Patterns with ``yy`` (e.g. de_DE ``dd.MM.yy``) show the year modulo 100. The date range spans
    exactly 100 years, which fixes the century window: ``50``-``99`` read as 1950-1999 and
    ``00``-``49`` as 2000-2049. :func:`measure_ambiguity` would report any overlap if the range
    were widened.

Collision policy
    A source string must determine its date, but CLDR short patterns collide across locales:
    en_US ``M/d/yy`` renders 10 Sep 2006 as ``9/10/06``, and es_ES ``d/M/yy`` renders 9 Oct 2006
    the same way. Rather than trusting a hand-made list, :func:`select_patterns` renders every
    date of the range with every candidate pattern and maps each string to the set of dates
    that produce it (:func:`measure_ambiguity`). For every pair of patterns that yields one
    string for two different dates, the policy ``"drop-month-first"`` drops the pattern whose
    numeric month comes before the day (the US convention, a minority among the locales here)
    and keeps the day-first one. A collision the rule cannot settle (neither or both patterns
    month-first, or a pattern colliding with itself) is an error. The kept patterns are then
    measured again from scratch: the ambiguity rate (ambiguous strings / distinct strings)
    must be exactly 0, or :func:`prepare` raises :class:`~seqattn.errors.DataError`. Both
    measurements and the dropped patterns, with the collisions that got them dropped, are
    recorded in ``meta.json`` under ``stats``. The policy ``"none"`` keeps every pattern (and
    so fails on the default locales); it exists to show that the check bites.

Gold alignments (``{split}.align.jsonl``)
    One JSON object per line, line ``i`` describing line ``i`` of ``{split}.src``/``.tgt``::

        {"date": "2006-09-10", "locale": "de_DE", "width": "full", "pattern": "EEEE, d. MMMM y",
         "fields": [{"field": "weekday", "code": "EEEE", "src": [0, 7], "tgt": null},
                    {"field": "day", "code": "d", "src": [9, 11], "tgt": [8, 10]},
                    {"field": "month", "code": "MMMM", "src": [13, 22], "tgt": [5, 7]},
                    {"field": "year", "code": "y", "src": [23, 27], "tgt": [0, 4]}]}

    ``src`` and ``tgt`` are ``[start, end)`` character offsets (Python ``str`` indices, end
    exclusive) into the source and target lines; ``fields`` lists the date fields in source
    order. ``field`` is ``year``, ``month``, ``day`` or ``weekday``; ``code`` is the CLDR field
    code it was rendered from (``yy`` is a two-digit year). The year produces target characters
    0-3, the month 5-6 and the day 8-9; the weekday produces no target characters
    (``"tgt": null``), and neither do the source characters outside every field nor the target
    hyphens. ``width`` is ``short``/``medium``/``long``/``full`` or the CLDR skeleton id of an
    extra pattern (e.g. ``yMMMEd``). Spans are known by construction, never searched for: each
    pattern is tokenized with :func:`babel.dates.tokenize_pattern` and rendered field by field
    with :class:`babel.dates.DateTimeFormat`, and each rendering is checked against
    :func:`babel.dates.format_date` with the same pattern.

Whitespace inside CLDR patterns (e.g. the narrow no-break space before the ru_RU year suffix)
becomes a plain space, as :func:`seqattn.data.layout.clean_text` would write it anyway; the
offsets refer to the text as written.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import babel
import babel.core
from babel import Locale
from babel.dates import DateTimeFormat, format_date, get_date_format, tokenize_pattern

from seqattn.data import layout
from seqattn.errors import DataError
from seqattn.io import atomic_open

__all__ = [
    "DEFAULT_POLICY",
    "DESCRIPTION",
    "EXTRA_SKELETONS",
    "FIRST_DATE",
    "LAST_DATE",
    "LOCALES",
    "NAME",
    "POLICIES",
    "SEED",
    "SIZES",
    "TASK",
    "TGT_SPANS",
    "VERSION",
    "WIDTHS",
    "Ambiguity",
    "DatePattern",
    "Rendering",
    "Selection",
    "build",
    "compile_pattern",
    "is_prepared",
    "measure_ambiguity",
    "prepare",
    "select_patterns",
    "summary",
]

NAME = "dates"
VERSION = "1"
TASK = "translation"
DESCRIPTION = (
    "Dates written in 9 locales with babel's CLDR patterns (short/medium/long/full and extras) "
    "-> ISO 8601 YYYY-MM-DD, with gold character alignments"
)

LOCALES: tuple[str, ...] = (
    "en_US",
    "en_GB",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "pt_BR",
    "ru_RU",
    "zh_CN",
)
WIDTHS: tuple[str, ...] = ("short", "medium", "long", "full")
# Extra CLDR skeletons: abbreviated month with abbreviated weekday, numeric date with weekday.
EXTRA_SKELETONS: tuple[str, ...] = ("yMMMEd", "yMEd")
FIRST_DATE = date(1950, 1, 1)
LAST_DATE = date(2049, 12, 31)
SIZES: dict[str, int] = {"train": 20000, "valid": 1000, "test": 1000}
SEED = 1729
POLICIES: tuple[str, ...] = ("drop-month-first", "none")
DEFAULT_POLICY = "drop-month-first"

# Target character span ([start, end)) produced by each field in ``YYYY-MM-DD``.
TGT_SPANS: dict[str, tuple[int, int] | None] = {
    "year": (0, 4),
    "month": (5, 7),
    "day": (8, 10),
    "weekday": None,
}
# CLDR field letter -> the date component it shows. Anything else (eras, week-years, quarters,
# day-of-year, ...) is refused: it would not be a function of one of these components.
_FIELD_KINDS: dict[str, str] = {
    "y": "year",
    "M": "month",
    "L": "month",
    "d": "day",
    "E": "weekday",
    "e": "weekday",
    "c": "weekday",
}
_ALIGN_DOC = (
    "{split}.align.jsonl: one JSON object per line, aligned with {split}.src/.tgt: "
    '{"date": ISO date, "locale": babel locale, "width": short|medium|long|full or a CLDR '
    'skeleton id, "pattern": CLDR pattern, "fields": [{"field": year|month|day|weekday, '
    '"code": CLDR field code, "src": [start, end], "tgt": [start, end] or null}, ...]} '
    "with character offsets, end exclusive, fields in source order; year -> tgt [0, 4], "
    "month -> [5, 7], day -> [8, 10], weekday -> null (no target characters)."
)


def _plain_spaces(text: str) -> str:
    """Every whitespace character as a plain space (length-preserving)."""
    return "".join(" " if char.isspace() else char for char in text)


@dataclass(frozen=True)
class DatePattern:
    """One CLDR date pattern of one locale, split into literal text and date fields."""

    locale: str
    width: str
    pattern: str
    # (kind, text): kind is "literal" (text is the literal) or a field kind (text is its code).
    pieces: tuple[tuple[str, str], ...]
    # field code -> component value (year, month 1-12, day 1-31, weekday 0-6) -> rendered text
    tables: Mapping[str, Mapping[int, str]] = field(compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.locale} {self.width}"

    @property
    def month_first(self) -> bool:
        """Whether a numeric month (``M``/``MM``/``L``/``LL``) comes before the day."""
        kinds = [(kind, text) for kind, text in self.pieces if kind != "literal"]
        month = next((i for i, (kind, _) in enumerate(kinds) if kind == "month"), None)
        day = next((i for i, (kind, _) in enumerate(kinds) if kind == "day"), None)
        if month is None or day is None:
            return False
        return len(kinds[month][1]) <= 2 and month < day

    def render(self, day: date) -> Rendering:
        """Render ``day`` piece by piece, recording the source span of every field."""
        values = _components(day)
        parts: list[str] = []
        fields: list[tuple[str, str, int, int]] = []
        offset = 0
        for kind, text in self.pieces:
            piece = text if kind == "literal" else self.tables[text][values[kind]]
            if kind != "literal":
                fields.append((kind, text, offset, offset + len(piece)))
            parts.append(piece)
            offset += len(piece)
        return Rendering("".join(parts), tuple(fields))

    def render_all(self, columns: Mapping[str, Sequence[int]]) -> list[str]:
        """Render many dates at once; ``columns`` maps each component to its per-date values."""
        template = "".join(
            text.replace("%", "%%") if kind == "literal" else "%s" for kind, text in self.pieces
        )
        rendered = [
            list(map(self.tables[text].__getitem__, columns[kind]))
            for kind, text in self.pieces
            if kind != "literal"
        ]
        return list(map(template.__mod__, zip(*rendered, strict=True)))


@dataclass(frozen=True)
class Rendering:
    """A rendered source string and its fields as (kind, code, start, end)."""

    text: str
    fields: tuple[tuple[str, str, int, int], ...]


@dataclass(frozen=True)
class Ambiguity:
    """Result of :func:`measure_ambiguity`."""

    strings: int  # distinct source strings
    ambiguous: dict[str, tuple[date, ...]]  # string -> the dates rendering to it (only if > 1)
    # string -> (pattern index, date) for every pattern and date rendering an ambiguous string
    producers: dict[str, tuple[tuple[int, date], ...]]

    @property
    def rate(self) -> float:
        return len(self.ambiguous) / self.strings if self.strings else 0.0


def _components(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day, "weekday": day.weekday()}


def _date_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@cache
def _locale(name: str) -> Locale:
    return Locale.parse(name)


def _pattern_text(locale: str, width: str) -> str:
    if width in WIDTHS:
        return get_date_format(width, locale=_locale(locale)).pattern
    skeleton = _locale(locale).datetime_skeletons.get(width)
    if skeleton is None:
        raise DataError(f"locale {locale} has no CLDR date skeleton {width!r}")
    return skeleton.pattern


def _field_table(locale: str, code: str, first: date, last: date) -> dict[int, str]:
    """Render field ``code`` once for every value of its component, with babel's formatter.

    The representative dates differ from a given date only in components the field does not
    show, so the text is the one ``DateTimeFormat`` gives for any date with that component value.
    """
    kind = _FIELD_KINDS[code[0]]
    if kind == "year":
        samples = {year: date(year, 1, 1) for year in range(first.year, last.year + 1)}
    elif kind == "month":
        samples = {month: date(2001, month, 1) for month in range(1, 13)}
    elif kind == "day":
        samples = {day: date(2001, 1, day) for day in range(1, 32)}
    else:  # 2001-01-01 is a Monday, weekday() == 0
        samples = {weekday: date(2001, 1, 1 + weekday) for weekday in range(7)}
    loc = _locale(locale)
    return {value: _plain_spaces(DateTimeFormat(day, loc)[code]) for value, day in samples.items()}


def compile_pattern(
    locale: str, width: str, *, first: date = FIRST_DATE, last: date = LAST_DATE
) -> DatePattern:
    """The CLDR pattern of ``locale`` at ``width`` (a standard width or a skeleton id), tokenized."""
    pattern = _pattern_text(locale, width)
    pieces: list[tuple[str, str]] = []
    tables: dict[str, dict[int, str]] = {}
    for token, value in tokenize_pattern(pattern):
        if token == "chars":
            text = _plain_spaces(value)
            if pieces and pieces[-1][0] == "literal":
                pieces[-1] = ("literal", pieces[-1][1] + text)
            else:
                pieces.append(("literal", text))
            continue
        letter, count = value
        if letter not in _FIELD_KINDS:
            raise DataError(
                f"{locale} {width} pattern {pattern!r} has field {letter * count!r}, "
                "which is not a year, month, day or weekday"
            )
        code = letter * count
        pieces.append((_FIELD_KINDS[letter], code))
        if code not in tables:
            tables[code] = _field_table(locale, code, first, last)
    kinds = Counter(kind for kind, _ in pieces if kind != "literal")
    if any(kinds[kind] != 1 for kind in ("year", "month", "day")) or kinds["weekday"] > 1:
        raise DataError(f"{locale} {width} pattern {pattern!r} must show year, month and day exactly once")
    return DatePattern(locale, width, pattern, tuple(pieces), tables)


def measure_ambiguity(patterns: Sequence[DatePattern], first: date, last: date) -> Ambiguity:
    """Render every date in ``[first, last]`` with every pattern; find strings shared by dates."""
    days = _date_range(first, last)
    columns = {kind: [_components(day)[kind] for day in days] for kind in TGT_SPANS}
    ordinals = [day.toordinal() for day in days]
    seen: dict[str, int] = {}
    ambiguous: set[str] = set()
    for pattern in patterns:
        for text, ordinal in zip(pattern.render_all(columns), ordinals, strict=True):
            if seen.setdefault(text, ordinal) != ordinal:
                ambiguous.add(text)
    producers: dict[str, list[tuple[int, date]]] = {text: [] for text in ambiguous}
    if ambiguous:  # second pass: which pattern renders which date to each ambiguous string
        for index, pattern in enumerate(patterns):
            for text, day in zip(pattern.render_all(columns), days, strict=True):
                if text in producers:
                    producers[text].append((index, day))
    return Ambiguity(
        strings=len(seen),
        ambiguous={text: tuple(sorted({day for _, day in found})) for text, found in producers.items()},
        producers={text: tuple(found) for text, found in producers.items()},
    )


@dataclass(frozen=True)
class Selection:
    """The patterns kept by the collision policy, with what was measured on the way."""

    kept: tuple[DatePattern, ...]
    dropped: tuple[dict[str, Any], ...]
    before: Ambiguity  # over every candidate pattern
    after: Ambiguity  # over the kept patterns: must have no ambiguous string


def _collisions(patterns: Sequence[DatePattern], found: Ambiguity) -> dict[tuple[int, int], list[Any]]:
    """(pattern index, pattern index) -> [count, first example] for every colliding pair."""
    pairs: dict[tuple[int, int], list[Any]] = {}
    for text in sorted(found.producers):
        producers = found.producers[text]
        for i, (a, day_a) in enumerate(producers):
            for b, day_b in producers[i + 1 :]:
                if day_a == day_b:
                    continue
                key = (min(a, b), max(a, b))
                days = (day_a, day_b) if a <= b else (day_b, day_a)
                if key not in pairs:
                    pairs[key] = [0, (text, *days)]
                pairs[key][0] += 1
    return pairs


def _resolve(patterns: Sequence[DatePattern], found: Ambiguity) -> tuple[set[int], list[dict[str, Any]]]:
    """Apply the drop-month-first rule to every colliding pair; returns the dropped indices."""
    drop: dict[int, list[str]] = {}
    for (a, b), (count, (text, day_a, day_b)) in sorted(_collisions(patterns, found).items()):
        first, second = patterns[a], patterns[b]
        if a != b and first.month_first != second.month_first:
            loser, winner = (a, second) if first.month_first else (b, first)
            drop.setdefault(loser, []).append(
                f"collides with {winner.key} {winner.pattern!r} on {count} strings, e.g. {text!r} = "
                f"{day_a.isoformat()} ({first.key}) and {day_b.isoformat()} ({second.key})"
            )
            continue
        raise DataError(
            f"collision policy cannot decide: {first.key} {first.pattern!r} and {second.key} "
            f"{second.pattern!r} both render {text!r}, for {day_a.isoformat()} and {day_b.isoformat()} "
            f"({count} strings)"
        )
    dropped = [
        {
            "locale": patterns[index].locale,
            "width": patterns[index].width,
            "pattern": patterns[index].pattern,
            "reason": "numeric month before day; " + "; ".join(reasons),
        }
        for index, reasons in sorted(drop.items())
    ]
    return set(drop), dropped


def select_patterns(
    locales: Sequence[str] = LOCALES,
    widths: Sequence[str] = WIDTHS + EXTRA_SKELETONS,
    *,
    first: date = FIRST_DATE,
    last: date = LAST_DATE,
    policy: str = DEFAULT_POLICY,
) -> Selection:
    """Compile every locale x width pattern, apply the collision ``policy``, measure the result.

    Raises :class:`DataError` if the kept patterns still render some string for two dates.
    """
    return _select(tuple(locales), tuple(widths), first, last, policy)


@lru_cache(maxsize=8)
def _select(
    locales: tuple[str, ...], widths: tuple[str, ...], first: date, last: date, policy: str
) -> Selection:
    if policy not in POLICIES:
        raise DataError(f"unknown collision policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if first > last:
        raise DataError(f"empty date range {first.isoformat()}..{last.isoformat()}")
    candidates = [compile_pattern(loc, width, first=first, last=last) for loc in locales for width in widths]
    before = measure_ambiguity(candidates, first, last)
    dropped_indices: set[int] = set()
    dropped: list[dict[str, Any]] = []
    if policy == "drop-month-first" and before.ambiguous:
        dropped_indices, dropped = _resolve(candidates, before)
    kept = tuple(p for i, p in enumerate(candidates) if i not in dropped_indices)
    after = measure_ambiguity(kept, first, last) if dropped_indices else before
    if after.ambiguous:
        text = min(after.ambiguous)
        raise DataError(
            f"ambiguity rate {after.rate:.6f} with policy {policy!r}: {len(after.ambiguous)} of "
            f"{after.strings} source strings name more than one date, e.g. {text!r} = "
            + " / ".join(day.isoformat() for day in after.ambiguous[text])
        )
    return Selection(kept, tuple(dropped), before, after)


def _split_examples(
    patterns: Sequence[DatePattern], sizes: Mapping[str, int], first: date, last: date, seed: int
) -> dict[str, list[tuple[date, DatePattern]]]:
    """Disjoint date sets per split; patterns spread evenly over each split."""
    days = _date_range(first, last)
    rng = random.Random(seed)
    rng.shuffle(days)
    need = sizes["test"] + sizes["valid"]
    if need + sizes["train"] > len(days):
        raise DataError(f"{sum(sizes.values())} examples asked for, but the range has {len(days)} dates")
    chosen = {
        "test": days[: sizes["test"]],
        "valid": days[sizes["test"] : need],
        "train": rng.sample(days[need:], sizes["train"]),
    }
    examples: dict[str, list[tuple[date, DatePattern]]] = {}
    for split in layout.SPLITS:
        assigned = [patterns[i % len(patterns)] for i in range(sizes[split])]
        rng.shuffle(assigned)
        examples[split] = list(zip(chosen[split], assigned, strict=True))
    return examples


def _example(day: date, pattern: DatePattern) -> tuple[str, str, dict[str, Any]]:
    """(source, target, alignment record) for one date, checked against babel's own output."""
    rendering = pattern.render(day)
    source = rendering.text
    expected = _plain_spaces(format_date(day, format=pattern.pattern, locale=_locale(pattern.locale)))
    if source != expected or layout.clean_text(source) != source:
        raise DataError(
            f"{pattern.key} {pattern.pattern!r}: field-by-field rendering {source!r} of "
            f"{day.isoformat()} differs from babel's {expected!r} (or from its cleaned text)"
        )
    align = {
        "date": day.isoformat(),
        "locale": pattern.locale,
        "width": pattern.width,
        "pattern": pattern.pattern,
        "fields": [
            {
                "field": kind,
                "code": code,
                "src": [start, end],
                "tgt": None if TGT_SPANS[kind] is None else list(TGT_SPANS[kind]),
            }
            for kind, code, start, end in rendering.fields
        ],
    }
    return source, day.isoformat(), align


def _params(sizes: Mapping[str, int], seed: int, policy: str, locales: Sequence[str], widths: Sequence[str]):
    return {
        "sizes": dict(sizes),
        "seed": seed,
        "policy": policy,
        "locales": list(locales),
        "widths": list(widths),
        "date_range": [FIRST_DATE.isoformat(), LAST_DATE.isoformat()],
        "babel": babel.__version__,
        "cldr": str(babel.core.get_cldr_version()),
    }


def _window_text(first: date, last: date) -> str:
    """How a two-digit year reads within ``[first, last]`` (at most 100 years)."""
    low = first.year % 100
    if low == 0:
        return f"yy 00-99 -> {first.year}-{last.year}"
    return (
        f"yy {low:02d}-99 -> {first.year}-{first.year - low + 99}, "
        f"00-{low - 1:02d} -> {first.year - low + 100}-{last.year}"
    )


def _complete(output_dir: Path, params: Mapping[str, Any] | None = None) -> bool:
    if not layout.is_prepared(output_dir, name=NAME, version=VERSION):
        return False
    meta = layout.read_meta(output_dir) or {}
    if params is not None and meta.get("params") != params:
        return False
    return all((output_dir / f"{split}.align.jsonl").is_file() for split in meta.get("splits", {}))


def is_prepared(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds this dataset at this version, alignments included."""
    return _complete(Path(output_dir))


def build(
    output_dir: str | Path,
    *,
    force: bool = False,
    sizes: Mapping[str, int] = SIZES,
    seed: int = SEED,
    policy: str = DEFAULT_POLICY,
    locales: Sequence[str] = LOCALES,
    widths: Sequence[str] = WIDTHS + EXTRA_SKELETONS,
) -> dict[str, Any]:
    """:func:`prepare` with its knobs exposed (split sizes, seed, policy, locales, widths).

    A directory already built with the same knobs is left as it is unless ``force``.
    """
    output_dir = Path(output_dir)
    if set(sizes) != set(layout.SPLITS) or any(int(n) < 0 for n in sizes.values()):
        raise DataError(f"sizes must give a count >= 0 for each of {', '.join(layout.SPLITS)}")
    params = _params(sizes, seed, policy, locales, widths)
    if not force and _complete(output_dir, params):
        meta = layout.read_meta(output_dir)
        assert meta is not None
        return meta

    selection = select_patterns(locales, widths, policy=policy)
    examples = _split_examples(selection.kept, sizes, FIRST_DATE, LAST_DATE, seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, int] = {}
    per_locale: dict[str, dict[str, int]] = {}
    per_width: dict[str, dict[str, int]] = {}
    for split in layout.SPLITS:
        rows = [_example(day, pattern) for day, pattern in examples[split]]
        splits[split] = layout.write_parallel(output_dir, split, ((src, tgt) for src, tgt, _ in rows))
        with atomic_open(output_dir / f"{split}.align.jsonl") as out:
            for _, _, align in rows:
                out.write(json.dumps(align, ensure_ascii=False) + "\n")
        per_locale[split] = dict(sorted(Counter(p.locale for _, p in examples[split]).items()))
        per_width[split] = dict(sorted(Counter(p.width for _, p in examples[split]).items()))

    before, after = selection.before, selection.after
    meta: dict[str, Any] = {
        "name": NAME,
        "task": TASK,
        "version": VERSION,
        "description": DESCRIPTION,
        "splits": splits,
        "source": f"synthetic: CLDR {params['cldr']} date patterns via babel {params['babel']}",
        "params": params,
        "extras": {"align": _ALIGN_DOC},
        "stats": {
            "two_digit_year_window": _window_text(FIRST_DATE, LAST_DATE),
            "collision_policy": policy,
            "ambiguity_rate": after.rate,
            "ambiguous_strings": len(after.ambiguous),
            "distinct_source_strings": after.strings,
            "ambiguity_rate_all_patterns": before.rate,
            "ambiguous_strings_all_patterns": len(before.ambiguous),
            "distinct_source_strings_all_patterns": before.strings,
            "patterns_considered": len(locales) * len(widths),
            "patterns_kept": len(selection.kept),
            "dropped_patterns": list(selection.dropped),
            "kept_patterns": {p.key: p.pattern for p in selection.kept},
            "distinct_dates": {split: len({day for day, _ in examples[split]}) for split in layout.SPLITS},
            "per_locale": per_locale,
            "per_width": per_width,
        },
    }
    layout.write_meta(output_dir, meta)
    return meta


def prepare(output_dir: Path, *, from_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Write the dates dataset into ``output_dir`` (see the module docstring); returns its meta."""
    if from_dir is not None:
        raise DataError("the dates dataset is generated locally; it takes no --from-dir")
    return build(output_dir, force=force)


def summary(meta: Mapping[str, Any]) -> str:
    """A few human-readable lines about a prepared dates dataset."""
    stats = meta["stats"]
    lines = [
        f"{meta['name']} v{meta['version']}: {meta.get('description', '')}",
        "splits: " + ", ".join(f"{split} {count}" for split, count in meta["splits"].items()),
        f"source: {meta.get('source', '?')}; dates {' .. '.join(meta['params']['date_range'])}, "
        f"{stats['two_digit_year_window']}",
        f"patterns: {stats['patterns_kept']} kept of {stats['patterns_considered']} "
        f"({len(meta['params']['locales'])} locales x {len(meta['params']['widths'])} widths), "
        f"policy {stats['collision_policy']}",
        f"ambiguity (all dates x all patterns): {stats['ambiguous_strings_all_patterns']} of "
        f"{stats['distinct_source_strings_all_patterns']} strings, rate "
        f"{stats['ambiguity_rate_all_patterns']:.6f}",
        f"ambiguity (all dates x kept patterns): {stats['ambiguous_strings']} of "
        f"{stats['distinct_source_strings']} strings, rate {stats['ambiguity_rate']:.6f}",
    ]
    for dropped in stats["dropped_patterns"]:
        lines.append(
            f"dropped {dropped['locale']} {dropped['width']} {dropped['pattern']!r}: {dropped['reason']}"
        )
    lines.append(
        "train locales: " + ", ".join(f"{loc} {n}" for loc, n in stats["per_locale"].get("train", {}).items())
    )
    lines.append(
        "train widths: "
        + ", ".join(f"{width} {n}" for width, n in stats["per_width"].get("train", {}).items())
    )
    return "\n".join(lines)
