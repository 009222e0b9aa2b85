"""Atomic checkpoints, safe loading, retention of the best and latest ones, and averaging.

Saving. :func:`save_checkpoint` writes into a temporary file beside the target, fsyncs it,
renames it over the target and fsyncs the directory (:func:`seqattn.io.atomic_open`). A crash at
any point leaves either the old file or the new one at the path, never a truncated one. The
state is checked before anything is written: it may hold only tensors and plain data (dicts,
lists, tuples, sets, strings, bytes, numbers, booleans, ``None``, dtypes, devices), which is
exactly what ``torch.load(weights_only=True)`` accepts, so a state that could not be resumed
fails at save time rather than at resume time.

Loading. :func:`load_checkpoint` always uses ``weights_only=True``: a checkpoint that would run
code while unpickling is refused. It first checks the CRC32 of every record of the zip archive
(``torch.load`` does not), so silent corruption of tensor data is caught too. When loading fails, the file is examined (zip CRCs and a
pickle opcode scan, which executes nothing) to tell a truncated or corrupt file from an unsafe
one, and the error is a one-line :class:`~seqattn.errors.DataError` naming the path.

Retention. :class:`CheckpointManager` owns one directory (one manager per directory; with
distributed training only rank 0 creates it)::

    step_00001000.pt  step_00002000.pt ...   the retained checkpoints
    checkpoints.json                         index: [{step, path, metric}, ...], oldest first
    best.pt  last.pt                         the best and the newest checkpoint

Every save writes the checkpoint, then the index (both atomically), then refreshes the aliases,
and only then deletes the checkpoints the index no longer lists: an interruption at any point
leaves an index whose files all exist. ``best.pt`` and ``last.pt`` are hard links to the
checkpoint files: checkpoints are never modified in place (each save writes a new file and
renames it), so a link always shows a complete file and costs no space. Where the file system
refuses hard links, they are atomic copies instead. (Do not modify ``best.pt`` or ``last.pt``
in place: with hard links that would also change the step file.)

Resume and recovery. The manager reads the index when it is created. Entries whose file has
gone are dropped. A ``step_*.pt`` file the index does not list (a crash between writing the
checkpoint and the index), or every such file when the index is unreadable (then a warning is
issued), is adopted as a *recovered* entry: its metric is unknown, so it is never chosen as best
and never deleted by the retention policy (delete it by hand when it is no longer wanted).
Saving step ``s`` replaces the entries at steps ``>= s``: a run resumed from an earlier
checkpoint overwrites the future it abandoned.

Interrupted runs. :meth:`CheckpointManager.save_interrupted` writes ``interrupted.pt`` (atomically),
the state of a run stopped by a signal between two regular checkpoints. It is not in the index,
so it never counts for retention, ``best.pt``, ``last.pt`` or averaging (a resumed run therefore
keeps exactly the checkpoints of an uninterrupted one); the next :meth:`~CheckpointManager.save`
deletes it. Whoever resumes picks it when its step is newer than the last indexed checkpoint's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import pickletools
import re
import secrets
import shutil
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

from seqattn.errors import ConfigError, DataError
from seqattn.io import atomic_open, atomic_write_text

__all__ = [
    "BEST_NAME",
    "INDEX_NAME",
    "INTERRUPTED_NAME",
    "LAST_NAME",
    "CheckpointEntry",
    "CheckpointManager",
    "average_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

INDEX_NAME = "checkpoints.json"
BEST_NAME = "best.pt"
LAST_NAME = "last.pt"
INTERRUPTED_NAME = "interrupted.pt"
_INDEX_VERSION = 1
_STEP_FILE = re.compile(r"step_(\d+)\.pt")
_ZIP_MAGIC = b"PK\x03\x04"

# Types torch.load(weights_only=True) rebuilds without an allow-list (checked against torch 2.13).
_PLAIN_LEAVES = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    bool,
    type(None),
    torch.dtype,
    torch.device,
)
_PLAIN_MAPPINGS = (dict, OrderedDict)
_PLAIN_SEQUENCES = (list, tuple, set, torch.Size)


# --------------------------------------------------------------------------- save and load


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically with ``torch.save``.

    Raises:
        TypeError: ``state`` holds something other than tensors and plain data (the message
            names where), which ``torch.load(weights_only=True)`` would refuse; nothing is
            written.
    """
    if type(state) not in _PLAIN_MAPPINGS:
        raise TypeError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    _check_plain(state, "state")
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)
    _fsync_directory(path.parent)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: Any = "cpu", verify: bool = True
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        map_location: where tensors are placed (as for ``torch.load``); CPU by default.
        verify: check the CRC32 of every record of the zip archive first. ``torch.load`` does
            not, so without this a flipped bit in tensor data loads silently. The check reads
            the file once more (fast when it is in the page cache); switch it off only for
            archives written with ``torch.serialization.set_crc32_options(False)``.
    Raises:
        DataError: the file is missing, a directory, unreadable, truncated or corrupt, not a
            dict, or unsafe (its pickle would build objects other than tensors and plain data).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise DataError(f"checkpoint {path} is a directory, not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise DataError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if verify and zipfile.is_zipfile(path):
        damage = _zip_damage(path)
        if damage is not None:
            raise DataError(f"cannot load checkpoint {path}: truncated or corrupt checkpoint ({damage})")
    try:
        with warnings.catch_warnings():
            # Raised for foreign (non torch.save) pickles, which are refused below anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for damaged files (even OSError)
        raise _load_error(path, error) from None
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def _check_plain(value: object, where: str) -> None:
    """Raise TypeError unless ``value`` is made only of tensors and plain data."""
    if isinstance(value, Tensor) or type(value) in _PLAIN_LEAVES:
        return
    if type(value) in _PLAIN_MAPPINGS:
        for key, item in value.items():  # type: ignore[attr-defined]
            _check_plain(key, f"{where} key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in _PLAIN_SEQUENCES:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            _check_plain(item, f"{where}[{index}]")
        return
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise TypeError(
        f"checkpoint {where} is a {kind}, which torch.load(weights_only=True) refuses; "
        "store only tensors and plain data (dict, list, tuple, str, numbers, None)"
    )


def _load_error(path: Path, error: Exception) -> DataError:
    """Turn a ``torch.load`` failure into a one-line DataError that says what is wrong."""
    damage = _find_damage(path)
    if damage is not None:
        return DataError(f"cannot load checkpoint {path}: truncated or corrupt checkpoint ({damage})")
    if isinstance(error, pickle.UnpicklingError):
        return DataError(
            f"refusing to load {path}: it contains objects other than tensors and plain data "
            f"(unsafe pickle: {_unpickler_reason(error)})"
        )
    return DataError(f"cannot load checkpoint {path}: {type(error).__name__}: {_first_sentence(str(error))}")


def _find_damage(path: Path) -> str | None:
    """What is broken in the file, or ``None`` if its container and pickle are intact.

    Nothing is unpickled: zip members are CRC-checked and the pickle is scanned opcode by
    opcode with :func:`pickletools.genops`.
    """
    try:
        if zipfile.is_zipfile(path):
            damage = _zip_damage(path)
            if damage is not None:
                return damage
            with zipfile.ZipFile(path) as archive:
                records = [name for name in archive.namelist() if name.rsplit("/", 1)[-1] == "data.pkl"]
                if len(records) != 1:
                    return "the zip archive has no data.pkl record"
                with archive.open(records[0]) as stream:
                    return _pickle_damage(stream)
        with path.open("rb") as stream:
            head = stream.read(4)
            if not head:
                return "the file is empty"
            if head == _ZIP_MAGIC:
                return "the zip archive is cut short"
            stream.seek(0)
            return _pickle_damage(stream)
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return f"unreadable archive: {_first_sentence(str(error))}"


def _zip_damage(path: Path) -> str | None:
    """The first zip record whose data does not match its CRC32, described; ``None`` if all do."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return f"unreadable archive: {_first_sentence(str(error))}"
    return None if broken is None else f"zip record {broken} fails its CRC check"


def _pickle_damage(stream: IO[bytes]) -> str | None:
    """Scan one pickle without executing it; describe how it is damaged, if it is."""
    last = None
    try:
        for opcode, _arg, _position in pickletools.genops(stream):
            last = opcode.name
    except Exception as error:  # genops raises ValueError and friends on malformed input
        return f"damaged pickle: {_first_sentence(str(error))}"
    if last != "STOP":
        return "the pickle is cut short"
    return None


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own short reason (torch wraps it in a long message)."""
    inner = error.__context__
    text = str(inner) if isinstance(inner, pickle.UnpicklingError) and str(inner) else str(error)
    return _first_sentence(text)


def _first_sentence(text: str, *, limit: int = 160) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "no details")
    sentence = line.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort; not possible everywhere)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint listed in the index."""

    step: int
    """Training step (optimizer update) the checkpoint was taken at."""
    path: Path
    """The ``step_XXXXXXXX.pt`` file."""
    metric: float | None
    """Validation metric at that step (``None``: not validated, or not finite, or recovered)."""
    recovered: bool = False
    """Found on disk without an index entry: metric unknown, never deleted automatically."""


class CheckpointManager:
    """Keeps the best ``keep_best`` (by metric) and the last ``keep_last`` (by step) checkpoints.

    See the module docstring for the directory layout, the order of writes and recovery.
    :meth:`best`, :meth:`last` and :meth:`last_k` return checkpoint files, ready for
    :func:`load_checkpoint` or :func:`average_checkpoints`; :meth:`entries` returns the full
    records (step, file, metric).

    Args:
        directory: where checkpoints go (created if needed); an existing index is read.
        keep_best: how many checkpoints to keep for their metric (0: none; ``best.pt`` is then
            not maintained).
        keep_last: how many of the newest checkpoints to keep (at least 1, to resume from).
        mode: ``"max"`` if a larger metric is better (BLEU, accuracy), ``"min"`` if smaller is
            (loss, perplexity). Ties go to the earlier step.
    Raises:
        ConfigError: an invalid option, or an index written with the other ``mode``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_best: int = 1,
        keep_last: int = 1,
        mode: str = "max",
    ) -> None:
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise ConfigError(f"checkpoint option keep_best must be an integer >= 0, got {keep_best!r}")
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ConfigError(f"checkpoint option keep_last must be an integer >= 1, got {keep_last!r}")
        if mode not in ("max", "min"):
            raise ConfigError(f"checkpoint option mode must be 'max' or 'min', got {mode!r}")
        self.directory = Path(directory)
        self.keep_best = keep_best
        self.keep_last = keep_last
        self.mode = mode
        self.directory.mkdir(parents=True, exist_ok=True)
        self._aliased: dict[str, int] = {}  # alias name -> step it was last copied from
        self._remove_temporaries()
        self._entries = self._read_index()

    @property
    def index_path(self) -> Path:
        """The ``checkpoints.json`` index."""
        return self.directory / INDEX_NAME

    @property
    def best_path(self) -> Path:
        """``best.pt`` (exists once a checkpoint with a metric was saved and ``keep_best > 0``)."""
        return self.directory / BEST_NAME

    @property
    def last_path(self) -> Path:
        """``last.pt`` (exists once a checkpoint was saved)."""
        return self.directory / LAST_NAME

    @property
    def interrupted_path(self) -> Path:
        """``interrupted.pt``: the state saved by :meth:`save_interrupted`, until the next :meth:`save`."""
        return self.directory / INTERRUPTED_NAME

    def save_interrupted(self, state: Mapping[str, Any]) -> Path:
        """Save ``state`` atomically as ``interrupted.pt``, outside the index.

        For a run stopped between two regular checkpoints (by a signal): the file is never
        retained, aliased or averaged like the indexed checkpoints, and the next :meth:`save`
        deletes it, so an interrupted and resumed run ends with the same checkpoints as an
        uninterrupted one. Returns its path.
        """
        save_checkpoint(self.interrupted_path, state)
        return self.interrupted_path

    def entries(self) -> list[CheckpointEntry]:
        """The retained checkpoints, oldest step first."""
        return list(self._entries)

    def best(self) -> Path | None:
        """File of the retained checkpoint with the best metric (earliest on ties); ``None`` if none has one."""
        entry = self._best_entry()
        return None if entry is None else entry.path

    def last(self) -> Path | None:
        """File of the retained checkpoint with the highest step; ``None`` if there is none."""
        return self._entries[-1].path if self._entries else None

    def last_k(self, k: int) -> list[Path]:
        """Files of the ``k`` newest retained checkpoints, oldest first (fewer if fewer are retained)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return [entry.path for entry in self._entries[-k:]] if k else []

    def save(self, step: int, state: Mapping[str, Any], *, metric: float | None) -> Path:
        """Save ``state`` as the checkpoint of ``step``, update the index and apply retention.

        Args:
            step: the training step (``>= 0``); entries at this or later steps are replaced.
            state: what to save (tensors and plain data; see :func:`save_checkpoint`).
            metric: the validation metric at this step, or ``None``. NaN and infinities are
                recorded as ``None`` (such a checkpoint is never the best).
        Returns:
            The path of the new ``step_XXXXXXXX.pt`` file.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        path = self.directory / _step_file_name(step)
        save_checkpoint(path, state)
        self._aliased = {name: at for name, at in self._aliased.items() if at != step}

        entry = CheckpointEntry(step=step, path=path, metric=_finite_or_none(metric))
        earlier = [old for old in self._entries if old.step < step]
        replaced = [old for old in self._entries if old.step > step]
        kept = self._retain([*earlier, entry])
        self._write_index(kept)
        self._entries = kept
        self._refresh_aliases()
        kept_paths = {kept_entry.path for kept_entry in kept}
        for old in [*earlier, *replaced]:
            if old.path not in kept_paths:
                _delete(old.path)
        self.interrupted_path.unlink(missing_ok=True)  # superseded (a resume picks the newer state anyway)
        return path

    # ------------------------------------------------------------------ internals

    def _best_entry(self) -> CheckpointEntry | None:
        ranked = self._ranked(self._entries)
        return ranked[0] if ranked else None

    def _ranked(self, entries: Iterable[CheckpointEntry]) -> list[CheckpointEntry]:
        """Entries with a metric, best first; ties broken by the earlier step."""
        sign = -1.0 if self.mode == "max" else 1.0
        scored = [entry for entry in entries if entry.metric is not None]
        return sorted(scored, key=lambda entry: (sign * entry.metric, entry.step))  # type: ignore[operator]

    def _retain(self, entries: list[CheckpointEntry]) -> list[CheckpointEntry]:
        """The entries the policy keeps (``entries`` is sorted by step), in step order."""
        keep = {entry.step for entry in entries[-self.keep_last :]}
        keep |= {entry.step for entry in self._ranked(entries)[: self.keep_best]}
        keep |= {entry.step for entry in entries if entry.recovered}
        return [entry for entry in entries if entry.step in keep]

    def _write_index(self, entries: list[CheckpointEntry]) -> None:
        records = []
        for entry in entries:
            record: dict[str, Any] = {"step": entry.step, "path": entry.path.name, "metric": entry.metric}
            if entry.recovered:
                record["recovered"] = True
            records.append(record)
        document = {"version": _INDEX_VERSION, "mode": self.mode, "entries": records}
        atomic_write_text(self.index_path, json.dumps(document, indent=2, allow_nan=False) + "\n")
        _fsync_directory(self.directory)

    def _refresh_aliases(self) -> None:
        if self._entries:
            self._alias(self._entries[-1], LAST_NAME)
        best = self._best_entry() if self.keep_best > 0 else None
        if best is not None:
            self._alias(best, BEST_NAME)

    def _alias(self, entry: CheckpointEntry, name: str) -> None:
        """Point ``name`` at ``entry``'s file: a hard link, or an atomic copy where links fail."""
        target = self.directory / name
        with contextlib.suppress(OSError):
            if os.path.samefile(entry.path, target):
                return
        if self._aliased.get(name) == entry.step and target.exists():
            return  # an up-to-date copy
        temporary = self.directory / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            os.link(entry.path, temporary)
        except OSError:
            with entry.path.open("rb") as source, atomic_open(target, "wb") as copy:
                shutil.copyfileobj(source, copy, 1 << 24)
        else:
            try:
                os.replace(temporary, target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        _fsync_directory(self.directory)
        self._aliased[name] = entry.step

    def _step_files(self) -> dict[int, Path]:
        """The ``step_XXXXXXXX.pt`` files present, by step."""
        files = {}
        for path in self.directory.iterdir():
            match = _STEP_FILE.fullmatch(path.name)
            if match and path.name == _step_file_name(int(match[1])) and path.is_file():
                files[int(match[1])] = path
        return files

    def _read_index(self) -> list[CheckpointEntry]:
        files = self._step_files()
        listed: list[CheckpointEntry] = []
        if self.index_path.exists():
            try:
                listed = self._parse_index(self.index_path.read_text(encoding="utf-8"))
            except (ValueError, KeyError, TypeError, OSError) as error:
                warnings.warn(
                    f"{self.index_path}: unreadable checkpoint index ({_first_sentence(str(error))}); "
                    "rebuilt it from the step_*.pt files present",
                    stacklevel=3,
                )
                listed = []
        entries = [entry for entry in listed if entry.step in files]  # drop entries without a file
        known = {entry.step for entry in entries}
        entries += [
            CheckpointEntry(step=step, path=path, metric=None, recovered=True)
            for step, path in files.items()
            if step not in known
        ]
        return sorted(entries, key=lambda entry: entry.step)

    def _parse_index(self, text: str) -> list[CheckpointEntry]:
        """Entries of an index document; ValueError/KeyError/TypeError if it is malformed."""
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != _INDEX_VERSION:
            raise ValueError(f"not a version {_INDEX_VERSION} index")
        mode = document["mode"]
        if mode not in ("max", "min"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode != self.mode:
            raise ConfigError(
                f"{self.index_path} was written with mode {mode!r} but this checkpoint manager has "
                f"mode {self.mode!r}; use the same mode or another directory"
            )
        entries = []
        for record in document["entries"]:
            step = record["step"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"bad step {step!r}")
            if record["path"] != _step_file_name(step):  # never follow a path out of the directory
                raise ValueError(f"entry path {record['path']!r} does not match step {step}")
            metric = record["metric"]
            if metric is not None and (
                isinstance(metric, bool) or not isinstance(metric, (int, float)) or not math.isfinite(metric)
            ):
                raise ValueError(f"bad metric {metric!r}")
            recovered = record.get("recovered", False)
            if not isinstance(recovered, bool):
                raise ValueError(f"bad recovered flag {recovered!r}")
            entries.append(
                CheckpointEntry(
                    step=step,
                    path=self.directory / record["path"],
                    metric=None if metric is None else float(metric),
                    recovered=recovered,
                )
            )
        if len({entry.step for entry in entries}) != len(entries):
            raise ValueError("a step is listed twice")
        return entries

    def _remove_temporaries(self) -> None:
        """Remove temporary files a hard kill left behind in a previous run."""
        prefixes = (".step_", f".{INDEX_NAME}.", f".{BEST_NAME}.", f".{LAST_NAME}.", f".{INTERRUPTED_NAME}.")
        for path in self.directory.glob(".*.tmp"):
            if path.name.startswith(prefixes):
                path.unlink(missing_ok=True)


def _step_file_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def _finite_or_none(metric: float | None) -> float | None:
    if metric is None:
        return None
    if isinstance(metric, bool):
        raise TypeError("metric must be a number or None, got a bool")
    value = float(metric)
    return value if math.isfinite(value) else None


def _delete(path: Path) -> None:
    """Remove a checkpoint file that the index no longer lists."""
    path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- averaging


def average_checkpoints(paths: Iterable[str | os.PathLike[str]], *, key: str = "model") -> dict[str, Tensor]:
    """Element-wise mean of the ``state[key]`` state dicts of several checkpoints.

    Floating (and complex) tensors are summed in float64 (complex128) and the mean is cast back
    to their dtype. Integer and boolean tensors (step counters such as BatchNorm's
    ``num_batches_tracked``) are not averaged: the value of the *last* checkpoint in ``paths``
    is taken, whether or not they agree. Checkpoints are loaded one at a time.

    Raises:
        ConfigError: ``paths`` is empty.
        DataError: a checkpoint cannot be loaded, lacks ``key``, or its names, shapes or dtypes
            differ from the first checkpoint's (the message names the tensor).
    """
    paths = [Path(path) for path in paths]
    if not paths:
        raise ConfigError("averaging checkpoints needs at least one checkpoint")
    first = paths[0]
    totals: dict[str, Tensor] = {}
    reference: dict[str, tuple[torch.Size, torch.dtype]] = {}
    for index, path in enumerate(paths):
        weights = _weights(load_checkpoint(path), key, path)
        if index == 0:
            totals = {name: _accumulator(tensor) for name, tensor in weights.items()}
            reference = {name: (tensor.shape, tensor.dtype) for name, tensor in weights.items()}
            continue
        missing = [name for name in reference if name not in weights]
        extra = [name for name in weights if name not in reference]
        if missing or extra:
            where, name = (first, missing[0]) if missing else (path, extra[0])
            raise DataError(
                f"cannot average {path} with {first}: {name!r} is only in {where}'s {key!r} weights"
            )
        for name, tensor in weights.items():
            shape, dtype = reference[name]
            if tensor.shape != shape or tensor.dtype != dtype:
                raise DataError(
                    f"cannot average {path} with {first}: {name!r} is {tuple(tensor.shape)} {tensor.dtype} "
                    f"there but {tuple(shape)} {dtype} in the first"
                )
            if _averaged(tensor):
                totals[name].add_(tensor)
            else:
                totals[name] = tensor
    count = len(paths)
    return {
        name: (total / count).to(reference[name][1]) if _averaged(total) else total
        for name, total in totals.items()
    }


def _weights(state: dict[str, Any], key: str, path: Path) -> Mapping[str, Tensor]:
    if key not in state:
        raise DataError(f"checkpoint {path} has no {key!r} entry (it has {', '.join(map(repr, state))})")
    weights = state[key]
    if not isinstance(weights, Mapping):
        raise DataError(f"checkpoint {path}: {key!r} is a {type(weights).__name__}, not a state dict")
    for name, tensor in weights.items():
        if not isinstance(tensor, Tensor):
            raise DataError(f"checkpoint {path}: {key}[{name!r}] is a {type(tensor).__name__}, not a tensor")
    return weights


def _averaged(tensor: Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def _accumulator(tensor: Tensor) -> Tensor:
    if tensor.is_complex():
        return tensor.to(torch.complex128, copy=True)
    if tensor.is_floating_point():
        return tensor.to(torch.float64, copy=True)
    return tensor
