"""Reading text files line by line, the same careful way everywhere.

* gzip files are recognised by their magic bytes (``.gz`` names are not required);
* a UTF-8 byte-order mark on the first line is dropped; ``\\n`` and ``\\r\\n`` line ends are
  accepted, and so are ``\\r`` line ends when a file has no ``\\n`` at all (old Mac files); a
  stray ``\\r`` inside a ``\\n``-terminated line becomes a space;
* invalid UTF-8 raises :class:`~seqattn.errors.DataError` naming the file, line and byte
  column (or is replaced with U+FFFD and counted, with ``errors="replace"``);
* NUL bytes raise a :class:`~seqattn.errors.DataError` naming the file and line: they are a sign of
  a binary or UTF-16 file passed by mistake, never of text.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from seqattn.errors import DataError

__all__ = ["LineStats", "iter_lines", "open_binary", "read_lines"]

_GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading bytes, transparently decompressing gzip."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    if handle.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


@dataclass
class LineStats:
    """What reading a file had to repair (filled in by :func:`iter_lines`)."""

    lines: int = 0
    replaced: int = 0  # lines where invalid UTF-8 was replaced
    replaced_lines: list[int] = field(default_factory=list)  # first few line numbers


def iter_lines(
    path: str | os.PathLike[str],
    *,
    errors: str = "strict",
    stats: LineStats | None = None,
) -> Iterator[str]:
    """Yield the lines of a text file without their line ends.

    ``errors="strict"`` raises on invalid UTF-8; ``"replace"`` substitutes U+FFFD and counts the
    line in ``stats``.
    """
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
    stats = stats if stats is not None else LineStats()
    path = Path(path)
    with open_binary(path) as handle:
        try:
            head = handle.peek(1 << 16)[: 1 << 16]  # type: ignore[attr-defined]
            if b"\r" in head and b"\n" not in head:  # classic Mac OS line ends: split on \r
                data = handle.read()
                raws: Iterable[bytes] = data.split(b"\r")[: -1 if data.endswith(b"\r") else None]
            else:
                raws = handle
            for number, raw in enumerate(raws, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                raw = raw.rstrip(b"\n").rstrip(b"\r")
                if b"\x00" in raw:
                    column = raw.index(b"\x00") + 1
                    raise DataError(f"{path}:{number}: NUL byte at column {column} (binary or UTF-16 file?)")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    if errors == "strict":
                        raise DataError(
                            f"{path}:{number}: invalid UTF-8 at byte {error.start + 1} "
                            f"(0x{raw[error.start]:02x})"
                        ) from None
                    text = raw.decode("utf-8", errors="replace")
                    stats.replaced += 1
                    if len(stats.replaced_lines) < 10:
                        stats.replaced_lines.append(number)
                # A stray carriage return inside a \n-terminated line must not split it (that
                # would misalign a parallel corpus): it becomes a space.
                if "\r" in text:
                    text = text.replace("\r", " ")
                stats.lines = number
                yield text
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise DataError(f"{path}: cannot read ({error})") from None


def read_lines(path: str | os.PathLike[str], *, errors: str = "strict") -> list[str]:
    """All lines of a text file (see :func:`iter_lines`)."""
    return list(iter_lines(path, errors=errors))
