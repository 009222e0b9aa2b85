"""Adopt a SentencePiece model trained elsewhere: move its special pieces to seqattn's ids.

seqattn reserves ids 0-3 for ``<pad>``, ``<unk>``, ``<s>``, ``</s>`` (:mod:`.tokenizer`). Models
trained by other toolkits use other layouts -- SentencePiece's default is unk/bos/eos = 0/1/2
with no pad piece; fairseq-style models put bos/pad/eos/unk at 0-3. :func:`adopt_model` rewrites
the serialized ``ModelProto`` so that the four specials come first, in seqattn's order (adding
whichever is missing as a control piece), followed by every other piece in its original order.
Piece strings, scores and types are untouched, so text segments into exactly the same pieces;
only the ids change (a fixed permutation, :attr:`Adopted.old_to_new`).

The proto is edited at the wire-format level (varints and length-delimited fields, as
https://protobuf.dev/programming-guides/encoding/ describes), so no protobuf package is needed.
Field numbers, from SentencePiece's ``sentencepiece_model.proto``: ``ModelProto.pieces = 1``,
``ModelProto.trainer_spec = 2``; ``SentencePiece.piece = 1``, ``score = 2``, ``type = 3``
(``NORMAL = 1``, ``UNKNOWN = 2``, ``CONTROL = 3``); ``TrainerSpec.unk_id = 40``, ``bos_id = 41``,
``eos_id = 42``, ``pad_id = 43``, ``unk_piece = 45``, ``bos_piece = 46``, ``eos_piece = 47``,
``pad_piece = 48``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from seqattn.errors import DataError

__all__ = ["Adopted", "adopt_model"]

NORMAL, UNKNOWN, CONTROL = 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")  # seqattn's ids 0, 1, 2, 3
_TRAINER_IDS = {40: 1, 41: 2, 42: 3, 43: 0}  # unk_id, bos_id, eos_id, pad_id -> seqattn's ids
_TRAINER_PIECES = {45: "<unk>", 46: "<s>", 47: "</s>", 48: "<pad>"}


@dataclass(frozen=True)
class Adopted:
    proto: bytes
    """The rewritten serialized ModelProto."""
    old_to_new: list[int]
    """``old_to_new[i]`` is the new id of the piece that had id ``i``."""
    added: list[str]
    """Special pieces the model did not have."""


# -- wire format -----------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """``(field number, wire type, value)`` in order; LEN values are the raw payload bytes and
    fixed-width values their raw bytes; varints are ints."""
    fields: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            fields.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            fields.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise ValueError("truncated field")
            fields.append((number, wire, data[pos : pos + width]))
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _serialize(fields: list[tuple[int, int, bytes | int]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _encode_varint(number << 3 | wire)
        if wire == 0:
            assert isinstance(value, int)
            out += _encode_varint(value)
        elif wire == 2:
            assert isinstance(value, bytes)
            out += _encode_varint(len(value)) + value
        else:
            assert isinstance(value, bytes)
            out += value
    return bytes(out)


def _piece(text: str, piece_type: int) -> bytes:
    return _serialize([(1, 2, text.encode("utf-8")), (2, 5, struct.pack("<f", 0.0)), (3, 0, piece_type)])


def _piece_info(payload: bytes) -> tuple[str, int]:
    text, piece_type = "", NORMAL
    for number, _, value in _fields(payload):
        if number == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
        elif number == 3 and isinstance(value, int):
            piece_type = value
    return text, piece_type


# -- adoption --------------------------------------------------------------------------------------


def adopt_model(proto: bytes, *, source: str = "model") -> Adopted:
    """Rewrite a serialized SentencePiece ``ModelProto`` to seqattn's special-id layout.

    ``source`` names the model in error messages. The unknown piece is found by its type (it
    keeps its own string, e.g. ``<unk>``); ``<s>``, ``</s>`` and ``<pad>`` by their strings,
    which must be control pieces if present.
    """
    try:
        fields = _fields(proto)
        pieces = [(i, value) for i, (number, wire, value) in enumerate(fields) if number == 1 and wire == 2]
        infos = [_piece_info(value) for _, value in pieces]  # type: ignore[arg-type]
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{source}: not a SentencePiece model ({error})") from None
    if not pieces:
        raise DataError(f"{source}: not a SentencePiece model (no pieces)")
    unknown = [i for i, (_, kind) in enumerate(infos) if kind == UNKNOWN]
    if len(unknown) != 1:
        raise DataError(f"{source}: expected exactly one unknown piece, found {len(unknown)}")
    special_old: list[int | None] = []
    for name in SPECIALS:
        if name == "<unk>":
            special_old.append(unknown[0])
            continue
        found = [i for i, (text, _) in enumerate(infos) if text == name]
        if found and infos[found[0]][1] != CONTROL:
            raise DataError(
                f"{source}: piece {name} is an ordinary piece; seqattn needs it as a control symbol"
            )
        special_old.append(found[0] if found else None)
    payloads: list[bytes] = []
    added: list[str] = []
    for name, old in zip(SPECIALS, special_old, strict=True):
        if old is None:
            payloads.append(_piece(name, CONTROL))
            added.append(name)
        else:
            payloads.append(pieces[old][1])  # type: ignore[arg-type]
    taken = {old for old in special_old if old is not None}
    rest = [i for i in range(len(pieces)) if i not in taken]
    payloads += [pieces[i][1] for i in rest]  # type: ignore[misc]
    old_to_new = [0] * len(pieces)
    for new, old in enumerate(special_old):
        if old is not None:
            old_to_new[old] = new
    for offset, old in enumerate(rest):
        old_to_new[old] = len(SPECIALS) + offset
    # Reassemble: the new piece list where the old one started, every other field as it was,
    # the trainer spec's special ids and piece strings set to seqattn's.
    first = pieces[0][0]
    kept = [f for f in fields if f[0] != 1 or f[1] != 2]
    before = [f for i, f in enumerate(fields) if i < first and not (f[0] == 1 and f[1] == 2)]
    after = kept[len(before) :]
    unk_text = infos[unknown[0]][0]
    rebuilt = (
        before + [(1, 2, p) for p in payloads] + [_trainer(f, unk_text) if f[0] == 2 else f for f in after]
    )
    return Adopted(proto=_serialize(rebuilt), old_to_new=old_to_new, added=added)


def _trainer(field: tuple[int, int, bytes | int], unk_text: str) -> tuple[int, int, bytes | int]:
    """The TrainerSpec with seqattn's special ids and piece strings (the unknown piece keeps its
    own string)."""
    number, wire, value = field
    if wire != 2 or not isinstance(value, bytes):
        return field
    pieces = _TRAINER_PIECES | {45: unk_text}
    spec = [f for f in _fields(value) if f[0] not in _TRAINER_IDS and f[0] not in pieces]
    spec += [(n, 0, v) for n, v in sorted(_TRAINER_IDS.items())]
    spec += [(n, 2, text.encode("utf-8")) for n, text in sorted(pieces.items())]
    return number, wire, _serialize(spec)
