"""Tests of the built-in dates dataset (seqattn.data.builtin.dates)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from babel import Locale
from babel.dates import format_date

from seqattn.data import builtin, layout
from seqattn.data.builtin import dates
from seqattn.errors import DataError

SMALL = {"train": 1500, "valid": 150, "test": 150}
LANGUAGES = {"en", "de", "fr", "es", "it", "pt", "ru", "zh"}
REPO = Path(__file__).resolve().parents[2]


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _split(directory: Path, split: str) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    aligns = [json.loads(line) for line in _lines(directory / f"{split}.align.jsonl")]
    return _lines(directory / f"{split}.src"), _lines(directory / f"{split}.tgt"), aligns


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dates-small")
    dates.build(directory, sizes=SMALL)
    return directory


def test_files_are_line_aligned(small: Path) -> None:
    meta = layout.read_meta(small)
    assert meta is not None
    assert meta["splits"] == SMALL
    assert "align" in meta["extras"]
    for split in layout.SPLITS:
        src, tgt, aligns = _split(small, split)
        assert len(src) == len(tgt) == len(aligns) == SMALL[split]
        for source, target, align in zip(src, tgt, aligns, strict=True):
            assert layout.clean_text(source) == source
            assert target == align["date"]
            assert date.fromisoformat(target).isoformat() == target
            assert dates.FIRST_DATE <= date.fromisoformat(target) <= dates.LAST_DATE


def test_split_dates_are_disjoint(small: Path) -> None:
    seen: dict[str, set[str]] = {}
    for split in layout.SPLITS:
        targets = _lines(small / f"{split}.tgt")
        assert len(set(targets)) == len(targets)  # each date once within a split, too
        seen[split] = set(targets)
    assert not seen["train"] & seen["test"]
    assert not seen["train"] & seen["valid"]
    assert not seen["valid"] & seen["test"]


def test_all_languages_and_widths_present(small: Path) -> None:
    widths: dict[str, set[str]] = defaultdict(set)
    for split in layout.SPLITS:
        for align in _split(small, split)[2]:
            widths[align["locale"]].add(align["width"])
    assert {locale.split("_")[0] for locale in widths} >= LANGUAGES
    assert {"en_US", "en_GB"} <= widths.keys()
    by_language: dict[str, set[str]] = defaultdict(set)
    for locale, found in widths.items():
        by_language[locale.split("_")[0]] |= found
    for language in LANGUAGES:
        assert set(dates.WIDTHS) <= by_language[language], language
    for locale in dates.LOCALES:  # every kept pattern of every locale is used
        assert {"medium", "long", "full"} <= widths[locale]


def _month_names(locale: Locale, month: int) -> set[str]:
    return {
        names[month]
        for context in ("format", "stand-alone")
        for width in ("wide", "abbreviated")
        for names in [locale.months[context][width]]
    }


def _day_names(locale: Locale, weekday: int) -> set[str]:
    return {
        names[weekday]
        for context in ("format", "stand-alone")
        for width in ("wide", "abbreviated", "short")
        for names in [locale.days[context][width]]
    }


def test_gold_spans(small: Path) -> None:
    for split in layout.SPLITS:
        for source, target, align in zip(*_split(small, split), strict=True):
            day = date.fromisoformat(target)
            locale = Locale.parse(align["locale"])
            fields = align["fields"]
            kinds = [f["field"] for f in fields]
            assert sorted(k for k in kinds if k != "weekday") == ["day", "month", "year"]
            assert kinds.count("weekday") == ("E" in align["pattern"] or "c" in align["pattern"])
            previous_end = 0
            uncovered = []
            for f in fields:
                start, end = f["src"]
                assert previous_end <= start < end <= len(source), (source, f)
                uncovered.append(source[previous_end:start])
                previous_end = end
                text = source[start:end]
                kind = f["field"]
                if kind == "day":
                    assert int(text) == day.day
                elif kind == "month":
                    assert (text.isdigit() and int(text) == day.month) or text in _month_names(
                        locale, day.month
                    ), (source, text)
                elif kind == "year":
                    assert text.isdigit() and len(text) in (2, 4)
                    assert int(text) == (day.year if len(text) == 4 else day.year % 100)
                else:
                    assert text in _day_names(locale, day.weekday()), (source, text)
                tgt = f["tgt"]
                if kind == "weekday":
                    assert tgt is None
                else:
                    assert tgt == list(dates.TGT_SPANS[kind])
                    part = {"year": f"{day.year:04d}", "month": f"{day.month:02d}", "day": f"{day.day:02d}"}
                    assert target[tgt[0] : tgt[1]] == part[kind]
            uncovered.append(source[previous_end:])
            assert not any(char.isdigit() for char in "".join(uncovered)), source


@pytest.mark.parametrize(
    ("locale", "width", "source", "spans"),
    [
        ("de_DE", "short", "10.10.10", {"day": (0, 2), "month": (3, 5), "year": (6, 8)}),
        ("en_GB", "short", "10/10/2010", {"day": (0, 2), "month": (3, 5), "year": (6, 10)}),
        ("zh_CN", "long", "2010年10月10日", {"year": (0, 4), "month": (5, 7), "day": (8, 10)}),
        (
            "en_US",
            "full",
            "Sunday, October 10, 2010",
            {"weekday": (0, 6), "month": (8, 15), "day": (16, 18), "year": (20, 24)},
        ),
    ],
)
def test_spans_by_construction_on_repeated_numbers(
    locale: str, width: str, source: str, spans: dict[str, tuple[int, int]]
) -> None:
    rendering = dates.compile_pattern(locale, width).render(date(2010, 10, 10))
    assert rendering.text == source
    assert {kind: (start, end) for kind, _, start, end in rendering.fields} == spans


def test_ambiguity_is_measured_zero(small: Path) -> None:
    stats = layout.read_meta(small)["stats"]  # type: ignore[index]
    assert stats["ambiguity_rate"] == 0
    assert stats["ambiguous_strings"] == 0
    assert stats["distinct_source_strings"] > 1_000_000  # every date x every kept pattern
    assert stats["ambiguity_rate_all_patterns"] > 0
    dropped = {(d["locale"], d["width"]) for d in stats["dropped_patterns"]}
    assert ("en_US", "short") in dropped
    assert stats["patterns_kept"] == stats["patterns_considered"] - len(dropped)
    for d in stats["dropped_patterns"]:
        assert dates.compile_pattern(d["locale"], d["width"]).month_first
        assert "collides with" in d["reason"]
    # a source string names one date within the written data as well
    target_of: dict[str, str] = {}
    for split in layout.SPLITS:
        src, tgt, _ = _split(small, split)
        for source, target in zip(src, tgt, strict=True):
            assert target_of.setdefault(source, target) == target


def test_ambiguity_check_detects_the_en_us_es_es_collision(tmp_path: Path) -> None:
    patterns = [dates.compile_pattern("en_US", "short"), dates.compile_pattern("es_ES", "short")]
    found = dates.measure_ambiguity(patterns, dates.FIRST_DATE, dates.LAST_DATE)
    assert found.rate > 0
    assert found.ambiguous["9/10/06"] == (date(2006, 9, 10), date(2006, 10, 9))
    with pytest.raises(DataError, match="ambiguity rate"):
        dates.select_patterns(("en_US", "es_ES"), ("short",), policy="none")
    with pytest.raises(DataError, match="ambiguity rate"):
        dates.build(tmp_path, sizes=SMALL, policy="none")
    assert not (tmp_path / "meta.json").exists()
    kept = dates.select_patterns(("en_US", "es_ES"), ("short",))
    assert [p.key for p in kept.kept] == ["es_ES short"]
    assert kept.after.rate == 0


def test_two_digit_years_need_the_100_year_window() -> None:
    pattern = dates.compile_pattern("de_DE", "short", first=date(1900, 1, 1), last=date(2049, 12, 31))
    found = dates.measure_ambiguity([pattern], date(1900, 1, 1), date(2049, 12, 31))
    assert found.ambiguous["10.09.06"] == (date(1906, 9, 10), date(2006, 9, 10))
    with pytest.raises(DataError, match="cannot decide"):
        dates.select_patterns(("de_DE",), ("short",), first=date(1900, 1, 1), last=date(2049, 12, 31))


def _collisions_by_babel(patterns: dict[str, str], first: date, last: date) -> dict[str, set[date]]:
    seen: dict[str, set[date]] = defaultdict(set)
    for key, pattern in patterns.items():
        locale = Locale.parse(key.split()[0])
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            seen[format_date(day, format=pattern, locale=locale)].add(day)
    return {text: found for text, found in seen.items() if len(found) > 1}


def test_kept_numeric_patterns_checked_with_babel_alone(small: Path) -> None:
    """An oracle independent of the module's renderer, on numeric patterns over 2001-2012."""
    kept = layout.read_meta(small)["stats"]["kept_patterns"]  # type: ignore[index]
    numeric = {key: pattern for key, pattern in kept.items() if "MMM" not in pattern and "LLL" not in pattern}
    assert len(numeric) >= 8
    first, last = date(2001, 1, 1), date(2012, 12, 31)
    assert _collisions_by_babel(numeric, first, last) == {}
    with_us = {**numeric, "en_US short": "M/d/yy"}
    assert date(2006, 10, 9) in _collisions_by_babel(with_us, first, last)["9/10/06"]


def test_deterministic(small: Path, tmp_path: Path) -> None:
    dates._select.cache_clear()  # measure everything again from scratch
    dates.build(tmp_path, sizes=SMALL)
    assert _hashes(tmp_path) == _hashes(small)


def test_idempotent_and_force(tmp_path: Path) -> None:
    sizes = {"train": 100, "valid": 20, "test": 20}
    meta = dates.build(tmp_path, sizes=sizes)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert dates.build(tmp_path, sizes=sizes) == meta
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    other = dates.build(tmp_path, sizes={"train": 50, "valid": 20, "test": 20})  # other knobs rebuild
    assert other["splits"]["train"] == 50
    (tmp_path / "test.align.jsonl").unlink()  # incomplete: rebuilt
    assert not dates.is_prepared(tmp_path)
    dates.build(tmp_path, sizes=sizes)
    assert dates.is_prepared(tmp_path)
    before = _hashes(tmp_path)
    dates.build(tmp_path, sizes=sizes, force=True)
    assert _hashes(tmp_path) == before


def test_prepare_protocol_and_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = builtin.prepare("dates", tmp_path)
    assert meta["name"] == dates.NAME == "dates"
    assert meta["task"] == dates.TASK == "translation"
    assert meta["version"] == dates.VERSION
    assert meta["splits"] == dates.SIZES
    assert meta["description"] == dates.DESCRIPTION
    assert layout.is_prepared(tmp_path, name="dates", version=dates.VERSION)
    stamp = (tmp_path / "meta.json").stat().st_mtime_ns
    assert dates.prepare(tmp_path) == meta
    assert (tmp_path / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="from-dir"):
        dates.prepare(tmp_path, from_dir=tmp_path)

    spec = importlib.util.spec_from_file_location("dates_script", REPO / "data_scripts" / "dates.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "already prepared" in out
    assert "rate 0.000000" in out
    assert "dropped en_US short" in out
