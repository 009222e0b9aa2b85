"""SentencePiece tokenization with one set of special ids used everywhere.

Every tokenizer seqattn trains reserves the same ids (see :data:`PAD_ID` ...): models, batching,
decoding and loss all rely on them, so they are fixed constants rather than per-model settings.

Training is deterministic for the same inputs and settings: large inputs are sampled by a
seeded reservoir here (SentencePiece's own shuffling is switched off), and the model is trained
from an in-memory sentence iterator and written atomically. A trained model is one ``.model``
file, stored inside the model directory that uses it.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from seqattn.data.spm_adopt import adopt_model
from seqattn.data.text import iter_lines
from seqattn.errors import ConfigError, DataError
from seqattn.io import atomic_open

__all__ = [
    "BOS",
    "BOS_ID",
    "EOS",
    "EOS_ID",
    "PAD",
    "PAD_ID",
    "UNK",
    "UNK_ID",
    "Tokenizer",
    "TokenizerConfig",
    "sample_sentences",
]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
MODEL_TYPES = ("unigram", "bpe")


@dataclass(frozen=True)
class TokenizerConfig:
    """How to train a SentencePiece model."""

    vocab_size: int = 8000
    """Number of pieces, the four special tokens included."""
    model_type: str = "unigram"
    """``unigram`` (Kudo 2018) or ``bpe`` (Sennrich et al. 2016)."""
    character_coverage: float = 1.0
    """Share of characters covered by the vocabulary; 0.9995 suits large scripts (zh, ja)."""
    max_sentences: int = 1_000_000
    """Inputs longer than this are sampled down (seeded reservoir) before training."""
    max_sentence_length: int = 8192
    """Longer training sentences (in bytes) are skipped by SentencePiece."""
    byte_fallback: bool = False
    """Encode unknown characters as UTF-8 bytes instead of ``<unk>``."""
    normalization: str = "nmt_nfkc"
    """SentencePiece normalisation rule (``nmt_nfkc``, ``nfkc``, ``identity``, ...)."""
    seed: int = 1
    """Seed of the input sampling."""

    def __post_init__(self) -> None:
        if self.vocab_size < 8:
            raise ConfigError(f"tokenizer vocab_size must be at least 8, got {self.vocab_size}")
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(
                f"tokenizer model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}"
            )
        if not 0.0 < self.character_coverage <= 1.0:
            raise ConfigError(
                f"tokenizer character_coverage must be in (0, 1], got {self.character_coverage}"
            )
        if self.max_sentences <= 0 or self.max_sentence_length <= 0:
            raise ConfigError("tokenizer max_sentences and max_sentence_length must be positive")


def sample_sentences(sentences: Iterable[str], *, limit: int, seed: int) -> list[str]:
    """Uniform sample of at most ``limit`` non-empty sentences (reservoir sampling), in input order."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    for index, sentence in enumerate(s for s in sentences if s.strip()):
        if len(reservoir) < limit:
            reservoir.append((index, sentence))
        else:
            slot = rng.randrange(index + 1)
            if slot < limit:
                reservoir[slot] = (index, sentence)
    reservoir.sort()
    return [sentence for _, sentence in reservoir]


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such SentencePiece model") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a SentencePiece .model file") from None


class Tokenizer:
    """A trained SentencePiece model: text <-> pieces <-> ids."""

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        specials = [self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id()]
        if specials != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
            raise DataError(
                f"SentencePiece model uses special ids pad/unk/bos/eos={specials}; seqattn needs "
                f"{[PAD_ID, UNK_ID, BOS_ID, EOS_ID]} (convert it with `seqattn tokenizer adopt`)"
            )

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def train(cls, sentences: Iterable[str], *, config: TokenizerConfig = TokenizerConfig()) -> Tokenizer:
        """Train on an iterable of sentences (sampled down to ``config.max_sentences``)."""
        sample = sample_sentences(sentences, limit=config.max_sentences, seed=config.seed)
        if not sample:
            raise DataError("cannot train a tokenizer on empty input")
        proto = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sample),
                model_writer=proto,
                model_type=config.model_type,
                vocab_size=config.vocab_size,
                character_coverage=config.character_coverage,
                max_sentence_length=config.max_sentence_length,
                byte_fallback=config.byte_fallback,
                normalization_rule_name=config.normalization,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                pad_piece=PAD,
                unk_piece=UNK,
                bos_piece=BOS,
                eos_piece=EOS,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as error:
            message = str(error).strip().splitlines()[-1] if str(error).strip() else "failed"
            if "Vocabulary size" in message or "vocab_size" in message:
                message += (
                    " (lower the vocabulary size, --vocab-size or tokenizer.vocab_size, or give more text)"
                )
            raise DataError(f"SentencePiece training failed: {message}") from None
        return cls(proto.getvalue())

    @classmethod
    def train_files(
        cls, paths: Sequence[str | os.PathLike[str]], *, config: TokenizerConfig = TokenizerConfig()
    ) -> Tokenizer:
        """Train on the lines of text files (gzip and BOM/CRLF handled; see :mod:`.text`)."""

        def lines() -> Iterator[str]:
            for path in paths:
                yield from iter_lines(path)

        return cls.train(lines(), config=config)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        path = Path(path)
        return cls._from_proto(path, _read_model(path))

    @classmethod
    def adopt(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load a SentencePiece model trained elsewhere, with its special pieces moved to
        seqattn's ids 0-3 (and ``<pad>`` added if it has none); text segments into the same
        pieces as with the original model (:mod:`.spm_adopt`)."""
        path = Path(path)
        return cls._from_proto(path, adopt_model(_read_model(path), source=str(path)).proto)

    @classmethod
    def _from_proto(cls, path: Path, proto: bytes) -> Tokenizer:
        try:
            return cls(proto)
        except RuntimeError:
            raise DataError(f"{path}: not a valid SentencePiece model") from None
        except DataError as error:
            raise DataError(f"{path}: {error}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically."""
        with atomic_open(path, "wb") as handle:
            handle.write(self.model_proto)

    # -- vocabulary --------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def id_to_piece(self, index: int) -> str:
        return self._sp.id_to_piece(index)

    def piece_to_id(self, piece: str) -> int:
        return self._sp.piece_to_id(piece)

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids, optionally with ``<s>``/``</s>``."""
        return self._sp.encode(text, add_bos=bos, add_eos=eos)

    def encode_batch(self, texts: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[list[int]]:
        """Many texts -> ids (SentencePiece's multi-threaded batch encoder)."""
        return self._sp.encode(list(texts), add_bos=bos, add_eos=eos, num_threads=min(4, os.cpu_count() or 1))

    def encode_pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; special ids (pad, bos, eos) are dropped, ``<unk>`` renders as ``⁇``."""
        return self._sp.decode([int(i) for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

    def decode_pieces(self, pieces: Sequence[str]) -> str:
        return self._sp.decode_pieces(list(pieces))
