"""Word alignments from attention, and the Alignment Error Rate (Och & Ney 2003).

Links
    A link is a pair ``(i, j)``: source position ``i`` is aligned to target position ``j``,
    both 0-based. Text files use the Pharaoh/TALP convention of one sentence per line and
    whitespace-separated links: ``i-j`` is a *sure* link and ``ipj`` a *possible* one
    (Lambert et al. 2005). A file with only ``i-j`` links (Moses, fast_align) has only sure
    links.

Alignment Error Rate
    Och & Ney (2003, "A Systematic Comparison of Various Statistical Alignment Models",
    section 5) score a predicted link set ``A`` against gold sure links ``S`` and possible
    links ``P``, where every sure link is also possible (``S ⊆ P``)::

        precision = |A ∩ P| / |A|
        recall    = |A ∩ S| / |S|
        AER       = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

    :func:`aer` adds ``S`` to ``P`` itself, so ``P`` may be given with or without the sure
    links. The counts are summed over the corpus before dividing (corpus-level, as in the
    original definition), not averaged over sentences.

Attention to links
    :func:`hard_alignment` reads links off one attention matrix (target-to-source argmax, or a
    threshold), :func:`merge_subwords` first turns subword attention into word attention, and
    :func:`char_spans_to_token_links` turns the character-span gold alignments of the ``dates``
    dataset (see :mod:`seqattn.data.builtin.dates`) into token-level gold links.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqattn.data.text import iter_lines
from seqattn.data.tokenizer import BOS, EOS, PAD
from seqattn.errors import DataError

__all__ = [
    "AERResult",
    "Link",
    "aer",
    "char_spans_to_token_links",
    "format_links",
    "hard_alignment",
    "merge_subwords",
    "parse_links",
    "read_alignment_file",
    "token_offsets",
]

Link = tuple[int, int]
"""``(source position, target position)``, 0-based."""

_LINK = re.compile(r"([0-9]+)([-p])([0-9]+)")
_WORD_START = "\u2581"  # SentencePiece's word-boundary mark "▁"


# -- reading and writing links -----------------------------------------------------------------


def parse_links(line: str, *, one_based: bool = False) -> tuple[set[Link], set[Link]]:
    """Parse one line of ``i-j`` (sure) and ``ipj`` (possible) links into ``(sure, possible)``.

    ``possible`` holds the links marked only possible: a link written both ways (``0-1 0p1``)
    is sure. ``one_based=True`` reads 1-based indices (as in some gold sets) and shifts them to
    0-based. An empty line is a sentence without links. A malformed token raises
    :class:`ValueError` naming it (:func:`read_alignment_file` turns it into a
    :class:`~seqattn.errors.DataError` with the file and line).
    """
    sure: set[Link] = set()
    possible: set[Link] = set()
    offset = 1 if one_based else 0
    for token in line.split():
        match = _LINK.fullmatch(token)
        if match is None:
            raise ValueError(f"malformed link {token!r} (expected i-j for sure or ipj for possible)")
        i, j = int(match.group(1)) - offset, int(match.group(3)) - offset
        if i < 0 or j < 0:
            raise ValueError(f"link {token!r} has index 0, but indices are 1-based")
        (sure if match.group(2) == "-" else possible).add((i, j))
    return sure, possible - sure


def read_alignment_file(
    path: str | os.PathLike[str], *, one_based: bool = False
) -> list[tuple[set[Link], set[Link]]]:
    """Read a Pharaoh/TALP alignment file: one ``(sure, possible)`` pair per line.

    See :func:`parse_links`. A malformed token raises :class:`~seqattn.errors.DataError` naming
    the file and line; gzip files and the usual line ends are accepted
    (:func:`seqattn.data.text.iter_lines`).
    """
    result = []
    for number, line in enumerate(iter_lines(path), start=1):
        try:
            result.append(parse_links(line, one_based=one_based))
        except ValueError as error:
            raise DataError(f"{path}:{number}: {error}") from None
    return result


def format_links(links: Iterable[Link], *, possible: Iterable[Link] = ()) -> str:
    """Write links as one sorted line: ``i-j`` for ``links``, ``ipj`` for ``possible``.

    Links in both sets are written once, as sure; :func:`parse_links` reads the line back.
    """
    sure = set(links)
    tokens = [(i, j, "-") for i, j in sure] + [(i, j, "p") for i, j in set(possible) - sure]
    return " ".join(f"{i}{mark}{j}" for i, j, mark in sorted(tokens))


# -- Alignment Error Rate ----------------------------------------------------------------------


@dataclass(frozen=True)
class AERResult:
    """Corpus-level precision, recall and AER, as fractions in [0, 1], with their counts."""

    precision: float
    """``|A ∩ P| / |A|``; 1 when nothing is predicted (no predicted link is wrong)."""
    recall: float
    """``|A ∩ S| / |S|``; 1 when there are no sure links (none can be missed)."""
    aer: float
    """``1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)``; 0 when both ``A`` and ``S`` are empty."""
    predicted: int
    """``|A|``, summed over sentences."""
    sure: int
    """``|S|``, summed over sentences."""
    sure_hits: int
    """``|A ∩ S|``, summed over sentences."""
    possible_hits: int
    """``|A ∩ P|`` (with ``S ⊆ P``), summed over sentences."""

    def __str__(self) -> str:
        return f"AER = {100 * self.aer:.2f} (precision {100 * self.precision:.2f}, recall {100 * self.recall:.2f})"


def aer(
    predicted: Sequence[Collection[Link]],
    sure: Sequence[Collection[Link]],
    possible: Sequence[Collection[Link]] | None = None,
) -> AERResult:
    """Alignment Error Rate of ``predicted`` links against gold ``sure``/``possible`` links.

    Each argument has one link set per sentence, in the same order. ``possible`` may be
    omitted (gold with sure links only, where AER = 1 - F1) and may or may not include the
    sure links: ``P`` is taken as ``possible | sure``. Counts are summed over the corpus::

        precision = Σ|A ∩ P| / Σ|A|
        recall    = Σ|A ∩ S| / Σ|S|
        AER       = 1 - (Σ|A ∩ S| + Σ|A ∩ P|) / (Σ|A| + Σ|S|)

    (Och & Ney 2003, section 5). Empty sets never divide by zero: with no predicted links the
    precision is 1 and, if there are sure links, the AER is 1; with no sure links the recall
    is 1 and AER = 1 - precision; with neither, the AER is 0.
    """
    if possible is None:
        possible = [()] * len(sure)
    if not len(predicted) == len(sure) == len(possible):
        raise ValueError(
            f"got {len(predicted)} predicted, {len(sure)} sure and {len(possible)} possible "
            "link sets; expected one of each per sentence"
        )
    n_pred = n_sure = sure_hits = possible_hits = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        a, s = set(a), set(s)
        p = set(p) | s
        n_pred += len(a)
        n_sure += len(s)
        sure_hits += len(a & s)
        possible_hits += len(a & p)
    precision = possible_hits / n_pred if n_pred else 1.0
    recall = sure_hits / n_sure if n_sure else 1.0
    error = 1.0 - (sure_hits + possible_hits) / (n_pred + n_sure) if n_pred + n_sure else 0.0
    return AERResult(
        precision=precision,
        recall=recall,
        aer=error,
        predicted=n_pred,
        sure=n_sure,
        sure_hits=sure_hits,
        possible_hits=possible_hits,
    )


# -- attention to links ------------------------------------------------------------------------


def _as_matrix(attention: Any) -> np.ndarray:
    """A 2-D floating numpy array, keeping the precision of float32/float64 input."""
    if isinstance(attention, torch.Tensor):
        attention = attention.detach().cpu()
        if attention.dtype not in (torch.float32, torch.float64):
            attention = attention.float()  # half, bfloat16 and integer tensors
        attention = attention.numpy()
    matrix = np.asarray(attention)
    if matrix.dtype not in (np.float32, np.float64):
        matrix = matrix.astype(np.float64)
    if matrix.ndim != 2:
        raise ValueError(
            f"expected a 2-D (target x source) attention matrix, got shape {tuple(matrix.shape)}"
        )
    return matrix


def hard_alignment(
    attention: np.ndarray | torch.Tensor,
    *,
    method: str = "argmax",
    threshold: float | None = None,
    drop_last_row: bool = False,
) -> set[Link]:
    """Links ``(src, tgt)`` read off a ``(T_tgt, S_src)`` attention matrix.

    ``method="argmax"`` aligns each target position ``t`` to its most attended source
    position, ``argmax_s a[t, s]`` (the usual way to extract alignments from attention, e.g.
    Luong et al. 2015, Garg et al. 2019); ties go to the first source position, and a row
    without positive weight (e.g. padding) yields no link. ``method="threshold"`` links every
    pair with ``a[t, s] >= threshold`` (compared in the matrix's own float precision), so a
    target position may get zero or several links.

    ``drop_last_row=True`` ignores the last target row, the prediction of the end-of-sentence
    token, which has no target word to align. Tensors may be on any device.
    """
    matrix = _as_matrix(attention)
    if drop_last_row:
        matrix = matrix[:-1]
    if method == "argmax":
        if threshold is not None:
            raise ValueError("threshold applies only to method='threshold'")
        if matrix.size == 0:
            return set()
        best = np.argmax(matrix, axis=1)
        return {(int(s), t) for t, s in enumerate(best) if matrix[t, s] > 0}
    if method == "threshold":
        if threshold is None:
            raise ValueError("method='threshold' needs a threshold")
        # Compare in the matrix's precision: a float32 weight 0.45 meets threshold 0.45.
        rows, cols = np.nonzero(matrix >= matrix.dtype.type(threshold))
        return {(int(s), int(t)) for t, s in zip(rows, cols, strict=True)}
    raise ValueError(f"unknown method {method!r}; expected 'argmax' or 'threshold'")


def _word_groups(pieces: Sequence[str], specials: Collection[str]) -> list[list[int]]:
    groups: list[list[int]] = []
    for k, piece in enumerate(pieces):
        starts = not groups or piece.startswith(_WORD_START) or piece in specials or pieces[k - 1] in specials
        if starts:
            groups.append([k])
        else:
            groups[-1].append(k)
    return groups


def merge_subwords(
    attention: np.ndarray | torch.Tensor,
    src_pieces: Sequence[str],
    tgt_pieces: Sequence[str],
    *,
    specials: Collection[str] = (BOS, EOS, PAD),
) -> tuple[np.ndarray, list[str], list[str]]:
    """Merge a ``(len(tgt_pieces), len(src_pieces))`` attention matrix into word attention.

    Words follow SentencePiece's convention: a piece starting with ``▁`` starts a new word and
    other pieces continue the current one (the first piece always starts a word). Pieces in
    ``specials`` (by default the toolkit's ``<s>``, ``</s>`` and ``<pad>``) are words of their
    own, so an end-of-sentence row or column is kept apart rather than glued to the last word.

    For target word ``T`` and source word ``S`` (sets of piece positions)::

        w[T, S] = 1/|T| * Σ_{t ∈ T} Σ_{s ∈ S} a[t, s]

    i.e. attention is *summed* over the pieces of a source word (it is a distribution over
    source positions, so the mass of a word is the total mass of its pieces) and *averaged*
    over the pieces of a target word (each target piece is one distribution), so rows that sum
    to 1 still sum to 1. This is the standard convention for word-level attention over subword
    models (stated e.g. by Clark et al. 2019, "What Does BERT Look At?": attention *to* a split
    word is summed, attention *from* a split word is averaged). Word alignments
    are then read off the merged matrix with :func:`hard_alignment`; Zenkel et al. (2019,
    "Adding Interpretable Attention to Neural Translation Models Improves Word Alignment")
    instead align at the subword level and link two words when any of their pieces are linked.

    Returns the word matrix (a float64 numpy array), the source words and the target words
    (pieces joined, ``▁`` removed).
    """
    matrix = _as_matrix(attention).astype(np.float64)
    if matrix.shape != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(
            f"attention has shape {tuple(matrix.shape)} but there are {len(tgt_pieces)} target "
            f"and {len(src_pieces)} source pieces (expected target x source)"
        )
    src_groups = _word_groups(src_pieces, specials)
    tgt_groups = _word_groups(tgt_pieces, specials)
    # merged = average(T_words x T_pieces) @ attention @ membership(S_pieces x S_words)
    membership = np.zeros((len(src_pieces), len(src_groups)))
    for word, group in enumerate(src_groups):
        membership[group, word] = 1.0
    average = np.zeros((len(tgt_groups), len(tgt_pieces)))
    for word, group in enumerate(tgt_groups):
        average[word, group] = 1.0 / len(group)
    merged = average @ matrix @ membership

    def words(pieces: Sequence[str], groups: list[list[int]]) -> list[str]:
        return ["".join(pieces[k] for k in g).replace(_WORD_START, "") for g in groups]

    return merged, words(src_pieces, src_groups), words(tgt_pieces, tgt_groups)


# -- character-span gold alignments ------------------------------------------------------------


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets ``[start, end)`` of ``tokens`` found left to right in ``text``.

    Works for whitespace tokens and for SentencePiece pieces (their ``▁`` mark is dropped; a
    piece that is only ``▁`` gets an empty span at the current position), provided the pieces
    spell the text without normalisation changes. A token that cannot be found raises
    :class:`ValueError`.
    """
    offsets = []
    position = 0
    for token in tokens:
        surface = token.replace(_WORD_START, "")
        start = text.find(surface, position)
        if start < 0:
            raise ValueError(f"token {token!r} not found in {text!r} after character {position}")
        if text[position:start].strip():
            raise ValueError(f"token {token!r} skips text {text[position:start]!r} in {text!r}")
        position = start + len(surface)
        offsets.append((start, position))
    return offsets


def _span(value: Any, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) for v in value)
        or not 0 <= value[0] <= value[1]
    ):
        raise ValueError(f"{what} span must be [start, end) with 0 <= start <= end, got {value!r}")
    return value[0], value[1]


def _overlapping(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    start, end = span
    return [k for k, (a, b) in enumerate(offsets) if a < end and start < b]


def char_spans_to_token_links(
    fields: Iterable[Mapping[str, Any]],
    src_offsets: Sequence[tuple[int, int]],
    tgt_offsets: Sequence[tuple[int, int]],
) -> set[Link]:
    """Token-level gold links ``(src token, tgt token)`` from character-span field alignments.

    ``fields`` is the ``"fields"`` list of one line of a ``dates`` ``{split}.align.jsonl``
    file: mappings with ``"src"`` and ``"tgt"`` spans ``[start, end)`` (or ``None``).
    ``src_offsets``/``tgt_offsets`` give the ``[start, end)`` character span of each source and
    target token (see :func:`token_offsets`). A source token and a target token are linked when
    they overlap (share at least one character with) the source and target span of the same
    field. Fields without a target span (the weekday) and tokens outside every field (spaces,
    punctuation, the target hyphens) produce no links.

    The gold spans are exact by construction, so these are *sure* links: score them with
    ``aer(predicted, sure=gold)``. A token that overlaps two fields (a subword covering the end
    of the day and the start of the month, say) is linked to the target tokens of both.
    """
    links: set[Link] = set()
    for number, entry in enumerate(fields):
        src = _span(entry.get("src"), f"field {number} source")
        tgt = _span(entry.get("tgt"), f"field {number} target")
        if src is None or tgt is None:
            continue
        for i in _overlapping(src_offsets, src):
            for j in _overlapping(tgt_offsets, tgt):
                links.add((i, j))
    return links
