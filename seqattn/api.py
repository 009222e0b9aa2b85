"""Use a trained model directory from Python.

>>> import seqattn
>>> model = seqattn.load("runs/dates-transformer")          # doctest: +SKIP
>>> model.translate(["3. März 2021"])                          # doctest: +SKIP
['2021-03-03']

:func:`load` reads only the model directory (``config.yaml``, ``model.pt`` with
``weights_only=True``, the SentencePiece model(s), ``labels.json`` for classifiers) and returns a
:class:`Translator` or a :class:`Classifier`, chosen by the config's task. Anything missing or
inconsistent (a tokenizer whose vocabulary does not match the model's embeddings, a weights file
that does not fit the config) is a one-line :class:`~seqattn.errors.DataError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqattn.allocator import keep_freed_memory
from seqattn.config import ClassifierConfig, ExperimentConfig, from_dict, read_mapping
from seqattn.data.batching import pad_batch
from seqattn.data.labels import LabelVocabulary
from seqattn.data.tokenizer import EOS, EOS_ID, Tokenizer
from seqattn.decoding import Hypothesis, beam_search, force_decode, greedy_search, translate_batches
from seqattn.decoding.shortlist import (
    DEFAULT_FREQUENT,
    DEFAULT_TOP,
    SHORTLIST_FILE,
    LexicalShortlist,
    Shortlisted,
)
from seqattn.errors import ConfigError, DataError
from seqattn.metrics.alignment import merge_subwords
from seqattn.models.build import build_classifier, build_seq2seq
from seqattn.precision import autocast
from seqattn.quantization import quantize_int8
from seqattn.training.checkpoint import load_checkpoint
from seqattn.training.classification import DocumentEncoder, Prediction, predict
from seqattn.training.run import resolve_device

__all__ = ["Alignment", "Classifier", "Translation", "Translator", "load"]


@dataclass(frozen=True)
class Translation:
    """One hypothesis: the detokenized text, its score, pieces and attention."""

    text: str
    score: float
    """Length-normalised log-probability (the beam's ranking score)."""
    source_pieces: list[str]
    target_pieces: list[str]
    """Produced pieces, ending with ``</s>`` when the model produced it."""
    attention: Tensor
    """``(len(target_pieces), len(source_pieces))``: one row per produced piece over the source
    pieces (the last source piece is ``</s>``)."""
    heads: Tensor
    """``(L, H, len(target_pieces), len(source_pieces))``: the same rows for every decoder layer
    and head (``L = H = 1`` for an RNN). For a Transformer, ``attention`` is
    ``heads[model.alignment_layer, model.alignment_heads].mean(0)``."""


@dataclass(frozen=True)
class Alignment:
    """A sentence pair force-decoded by the model: attention over pieces and over words."""

    source_pieces: list[str]
    """Source pieces, ending with ``</s>``."""
    target_pieces: list[str]
    """Target pieces, ending with ``</s>`` (the row that predicted the end)."""
    attention: Tensor
    """``(len(target_pieces), len(source_pieces))`` attention of each predicted piece."""
    source_words: list[str]
    target_words: list[str]
    word_attention: np.ndarray
    """``(len(target_words), len(source_words))``: pieces merged into words (summed over a source
    word's pieces, averaged over a target word's pieces); ``</s>`` stays a word of its own."""
    links: set[tuple[int, int]]
    """Hard word alignment ``(source word, target word)``: every target word is linked to the
    source word it attends to most (``</s>`` left out on both sides)."""
    heads: Tensor | None = None
    """With ``Translator.align(..., heads=True)``: ``(L, H, len(target_pieces),
    len(source_pieces))``, every decoder layer's and head's attention over pieces."""


def _read_config(model_dir: Path) -> ExperimentConfig:
    path = model_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{model_dir}: not a model directory (no config.yaml)")
    try:
        return from_dict(ExperimentConfig, read_mapping(path))
    except ConfigError as error:
        raise DataError(f"{path}: {error}") from None


def _load_weights(model: nn.Module, model_dir: Path) -> None:
    path = model_dir / "model.pt"
    if not path.is_file():
        raise DataError(f"{model_dir}: no model.pt (training did not finish? use checkpoints/last.pt)")
    state = load_checkpoint(path).get("model")
    if not isinstance(state, dict):
        raise DataError(f"{path}: no 'model' weights in the file")
    expected = model.state_dict()
    for name, value in state.items():
        if name in expected and expected[name].shape != value.shape:
            raise DataError(
                f"{path}: {name} has shape {tuple(value.shape)}, the config and tokenizer give {tuple(expected[name].shape)}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        which = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise DataError(f"{path}: weights do not fit config.yaml ({which})")


def _tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise DataError(f"{path.parent}: missing tokenizer {path.name}")
    return Tokenizer.load(path)


def load(
    model_dir: str | Path,
    *,
    device: str = "auto",
    bf16: bool = False,
    int8: bool = False,
    shortlist: bool = False,
) -> Translator | Classifier:
    """Load a trained model directory as a :class:`Translator` or a :class:`Classifier`.

    ``bf16``: run the model under bf16 autocast (:mod:`seqattn.precision`): faster on CUDA and
    on CPUs with AVX512-BF16 or AMX, slower on other CPUs. Scores and attention are float32.
    ``int8``: CPU only (``device="auto"`` then means the CPU); quantize the linear layers and
    decoder LSTMs to int8 with per-row dynamic input scales (:mod:`seqattn.quantization`):
    faster decoding on CPUs with int8 dot-product instructions (VNNI), at a small cost in
    accuracy.
    ``shortlist``: translation models only; decode over the lexical shortlist saved in the
    directory (``shortlist.pt``, :mod:`seqattn.decoding.shortlist`; built by ``seqattn
    shortlist`` or :meth:`Translator.build_shortlist`): each sentence scores only its source
    pieces' likely translations and the most frequent target pieces.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: no such model directory")
    config = _read_config(model_dir)
    keep_freed_memory()  # no page faults for each decoding step's logits (seqattn/allocator.py)
    torch_device = resolve_device("cpu" if int8 and device == "auto" else device)
    if int8 and bf16:
        raise ConfigError("int8 and bf16 exclude each other: choose one")
    if int8 and torch_device.type != "cpu":
        raise ConfigError(f"int8 inference runs on the CPU, not {torch_device}; use bf16 there")
    if isinstance(config.model, ClassifierConfig):
        if shortlist:
            raise ConfigError(f"{model_dir} is a classifier: shortlists are for translation models")
        tokenizer = _tokenizer(model_dir / "spm.model")
        labels_path = model_dir / "labels.json"
        if not labels_path.is_file():
            raise DataError(f"{model_dir}: missing labels.json")
        labels = LabelVocabulary(json.loads(labels_path.read_text(encoding="utf-8")))
        model = build_classifier(config.model, vocab_size=tokenizer.vocab_size, num_classes=len(labels))
        _load_weights(model, model_dir)
        if int8:
            quantize_int8(model)
        return Classifier(model.to(torch_device).eval(), tokenizer, labels, config, torch_device, bf16=bf16)
    joint = config.tokenizer.joint
    source = _tokenizer(model_dir / ("spm.model" if joint else "src.model"))
    target = source if joint else _tokenizer(model_dir / "tgt.model")
    model = build_seq2seq(config.model, src_vocab=source.vocab_size, tgt_vocab=target.vocab_size)
    _load_weights(model, model_dir)
    if int8:
        quantize_int8(model)
    lexical = None
    if shortlist:
        lexical = LexicalShortlist.load(
            model_dir / SHORTLIST_FILE, src_vocab=source.vocab_size, tgt_vocab=target.vocab_size
        )
    return Translator(
        model.to(torch_device).eval(), source, target, config, torch_device, bf16=bf16, shortlist=lexical
    )


def _position_limits(model: nn.Module) -> tuple[int | None, int | None]:
    """(source pieces, output pieces) a model's position tables or location score allow."""
    source_limit = output_limit = None
    embed, target_embed = getattr(model, "src_embed", None), getattr(model, "tgt_embed", None)
    if embed is not None and getattr(embed, "positions", "relative") != "relative":
        source_limit = embed.max_len
        output_limit = target_embed.max_len - 1  # the decoder reads BOS + every produced piece
    score = getattr(model, "score", None)
    if score is not None and hasattr(score, "max_len"):  # location attention: fixed key count
        source_limit = score.max_len
    return source_limit, output_limit


class Translator:
    """A trained translation model with its tokenizers."""

    def __init__(
        self,
        model: nn.Module,
        source: Tokenizer,
        target: Tokenizer,
        config: ExperimentConfig,
        device: torch.device,
        *,
        bf16: bool = False,
        shortlist: LexicalShortlist | None = None,
    ) -> None:
        self.model, self.source, self.target, self.config, self.device = model, source, target, config, device
        self.bf16 = bf16
        """Searches run under bf16 autocast (teacher-forced alignments stay float32)."""
        self.shortlist = shortlist
        """Searches score only this shortlist's pieces (``None``: the whole vocabulary)."""
        self.limits = _position_limits(model)
        """Longest source (pieces with ``</s>``) and output (pieces) the model can handle; ``None``
        where there is no limit (relative positions, RNNs without a location score)."""
        self.clipped_sources = 0
        """Sources cut to ``limits[0]`` pieces so far (each keeps its beginning)."""

    def _search(
        self,
        sentences: list[str],
        *,
        beam: int,
        n_best: int,
        max_len_a: float,
        max_len_b: int,
        batch_tokens: int,
    ) -> tuple[list[list[int]], list[list[Hypothesis]]]:
        if beam < 1 or n_best < 1 or n_best > beam:
            raise ConfigError(f"need 1 <= n_best <= beam, got beam={beam}, n_best={n_best}")
        if batch_tokens < 1:
            raise ConfigError(f"batch_tokens must be positive, got {batch_tokens}")
        source_limit, output_limit = self.limits
        sources = [self.source.encode(s, eos=True) for s in sentences]
        if source_limit is not None:
            # Longer sources keep their first pieces (and </s>); counted in `clipped_sources`.
            long = [i for i, ids in enumerate(sources) if len(ids) > source_limit]
            for i in long:
                sources[i] = [*sources[i][: source_limit - 1], EOS_ID]
            self.clipped_sources += len(long)
        options: dict[str, Any] = {"max_len_a": max_len_a, "max_len_b": max_len_b, "max_len": output_limit}
        if beam == 1:
            search = greedy_search
        else:
            search = beam_search
            options |= {"beam_size": beam, "n_best": n_best}
        with torch.no_grad(), autocast(self.device, bf16=self.bf16):
            model = self.model if self.shortlist is None else Shortlisted(self.model, self.shortlist)
            results = translate_batches(
                model, sources, max_tokens=batch_tokens, search=search, device=self.device, **options
            )
        return sources, results

    def translate(
        self,
        sentences: list[str],
        *,
        beam: int = 5,
        n_best: int = 1,
        max_len_ratio: float = 1.5,
        max_len_extra: int = 5,
        batch_tokens: int = 4096,
    ) -> list[str] | list[list[tuple[str, float]]]:
        """Translate ``sentences`` (order preserved; an empty string gets an empty answer).

        With ``n_best == 1`` returns one string per sentence; otherwise a list of
        ``(text, score)`` per sentence, best first. Outputs stop after ``max_len_ratio *
        source pieces + max_len_extra`` pieces; sentences are batched by ``batch_tokens``
        source pieces, which changes speed, never results.
        """
        _, results = self._search(
            list(sentences),
            beam=beam,
            n_best=n_best,
            max_len_a=max_len_ratio,
            max_len_b=max_len_extra,
            batch_tokens=batch_tokens,
        )
        # An empty (or blank) line gets an empty answer rather than whatever the model invents.
        blank = [not s.strip() for s in sentences]
        if n_best == 1:
            return [
                "" if b or not r else self.target.decode(r[0].tokens)
                for b, r in zip(blank, results, strict=True)
            ]
        return [
            [] if b else [(self.target.decode(h.tokens), h.score) for h in r]
            for b, r in zip(blank, results, strict=True)
        ]

    def build_shortlist(
        self,
        sources: list[str],
        targets: list[str],
        *,
        top: int = DEFAULT_TOP,
        frequent: int = DEFAULT_FREQUENT,
        iterations: int = 5,
        progress: Callable[[int], None] | None = None,
    ) -> LexicalShortlist:
        """A lexical shortlist from parallel training sentences, tokenized as this model reads
        them (:meth:`LexicalShortlist.build`); assign it to :attr:`shortlist` to use it, or
        ``save(model_dir / "shortlist.pt")`` for :func:`load`."""
        if len(sources) != len(targets):
            raise ConfigError(
                f"a shortlist needs as many targets as sources ({len(sources)} != {len(targets)})"
            )
        return LexicalShortlist.build(
            [self.source.encode(s, eos=True) for s in sources],
            [self.target.encode(t) for t in targets],
            src_vocab=self.source.vocab_size,
            tgt_vocab=self.target.vocab_size,
            top=top,
            frequent=frequent,
            iterations=iterations,
            progress=progress,
        )

    def attention(
        self, source: str, *, beam: int = 5, max_len_ratio: float = 1.5, max_len_extra: int = 5
    ) -> Translation:
        """The best translation of ``source`` with its pieces and attention matrix."""
        sources, results = self._search(
            [source],
            beam=beam,
            n_best=1,
            max_len_a=max_len_ratio,
            max_len_b=max_len_extra,
            batch_tokens=1 << 20,
        )
        if not results[0]:
            empty = torch.zeros(0, len(sources[0]))
            return Translation("", float("-inf"), self._pieces(sources[0]), [], empty, empty[None, None])
        best = results[0][0]
        rows = best.attention.size(0)  # one per produced piece: </s> included when it was produced
        produced = [*best.tokens, EOS_ID][:rows]
        # Every layer and head, by teacher-forcing the produced pieces (the same attention the
        # incremental search computed, for all heads at once).
        heads = self._force([sources[0]], [list(best.tokens)], heads=True)[0][..., :rows, :]
        return Translation(
            text=self.target.decode(best.tokens),
            score=best.score,
            source_pieces=self._pieces(sources[0]),
            target_pieces=[self.target.id_to_piece(i) for i in produced],
            attention=best.attention,
            heads=heads,
        )

    def _force(self, src_ids: list[list[int]], tgt_ids: list[list[int]], *, heads: bool) -> list[Tensor]:
        src, src_lengths = pad_batch(src_ids)
        tgt, tgt_lengths = pad_batch(tgt_ids)
        with torch.no_grad():
            return force_decode(
                self.model,
                src.to(self.device),
                src_lengths.to(self.device),
                tgt.to(self.device),
                tgt_lengths=tgt_lengths.to(self.device),
                heads=heads,
            )

    def _pieces(self, ids: list[int]) -> list[str]:
        return [self.source.id_to_piece(i) for i in ids]

    def align(
        self, sources: list[str], targets: list[str], *, batch_sentences: int = 64, heads: bool = False
    ) -> list[Alignment]:
        """Force-decode each (source, target) pair and read its attention as an alignment
        (with ``heads=True`` also every layer's and head's attention, :attr:`Alignment.heads`)."""
        if len(sources) != len(targets):
            raise ConfigError(f"align needs as many targets as sources ({len(sources)} != {len(targets)})")
        results: list[Alignment] = []
        for start in range(0, len(sources), batch_sentences):
            src_ids = [self.source.encode(s, eos=True) for s in sources[start : start + batch_sentences]]
            tgt_ids = [self.target.encode(t) for t in targets[start : start + batch_sentences]]
            source_limit, output_limit = self.limits
            if source_limit is not None and any(len(ids) > source_limit for ids in src_ids):
                raise DataError(f"a source has more than the model's {source_limit} positions")
            if output_limit is not None and any(len(ids) > output_limit for ids in tgt_ids):
                raise DataError(f"a target has more than the model's {output_limit} positions")
            matrices = self._force(src_ids, tgt_ids, heads=False)
            every = self._force(src_ids, tgt_ids, heads=True) if heads else [None] * len(src_ids)
            for s_ids, t_ids, matrix, all_heads in zip(src_ids, tgt_ids, matrices, every, strict=True):
                results.append(self._alignment(s_ids, t_ids, matrix, all_heads))
        return results

    def _alignment(
        self, src_ids: list[int], tgt_ids: list[int], attention: Tensor, heads: Tensor | None
    ) -> Alignment:
        source_pieces = self._pieces(src_ids)
        target_pieces = [self.target.id_to_piece(i) for i in [*tgt_ids, EOS_ID]]
        words, source_words, target_words = merge_subwords(attention, source_pieces, target_pieces)
        # Hard links between real words: argmax over source words other than </s>.
        real_src = [j for j, w in enumerate(source_words) if w != EOS]
        links = set()
        for i, word in enumerate(target_words):
            if word == EOS or not real_src:
                continue
            best = max(real_src, key=lambda j: words[i, j])
            links.add((best, i))
        return Alignment(
            source_pieces, target_pieces, attention, source_words, target_words, words, links, heads
        )


class Classifier:
    """A trained attention-pooling classifier with its tokenizer and labels."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        labels: LabelVocabulary,
        config: ExperimentConfig,
        device: torch.device,
        *,
        bf16: bool = False,
    ) -> None:
        assert isinstance(config.model, ClassifierConfig)
        self.bf16 = bf16
        self.model, self.tokenizer, self.labels, self.config, self.device = (
            model,
            tokenizer,
            labels,
            config,
            device,
        )
        self.encoder = DocumentEncoder(
            tokenizer,
            hierarchical=config.model.hierarchical,
            max_sentences=config.model.max_sentences,
            max_sentence_len=config.model.max_sentence_len,
        )

    def _predict(self, items: list[Any], batch_tokens: int) -> list[Prediction]:
        if batch_tokens < 1:
            raise ConfigError(f"batch_tokens must be positive, got {batch_tokens}")
        with torch.no_grad(), autocast(self.device, bf16=self.bf16):
            return predict(
                self.model,
                items,
                encoder=self.encoder,
                labels=self.labels,
                max_tokens=batch_tokens,
                device=self.device,
            )

    def predict(self, texts: list[str], *, batch_tokens: int = 8192) -> list[tuple[str, float]]:
        """``(label, probability)`` per text, in input order (empty texts are answered too)."""
        return [
            (p.label, p.probability) for p in self._predict(self.encoder.encode(list(texts)), batch_tokens)
        ]

    def explain(self, texts: list[str], *, batch_tokens: int = 8192) -> list[dict[str, Any]]:
        """Per text: label, probability, probabilities by label, and attention weights.

        Flat models give ``tokens`` (pieces) and ``weights`` (one list per pooling query);
        hierarchical models give ``sentences`` (pieces per sentence), ``word_weights`` and
        ``sentence_weights``.
        """
        items = self.encoder.encode(list(texts))
        explained = []
        for item, prediction in zip(items, self._predict(items, batch_tokens), strict=True):
            entry: dict[str, Any] = {
                "label": prediction.label,
                "probability": prediction.probability,
                "probabilities": dict(zip(self.labels.labels, prediction.probabilities, strict=True)),
            }
            if self.encoder.hierarchical:
                entry["sentences"] = [[self.tokenizer.id_to_piece(i) for i in s] for s in item]  # type: ignore[union-attr]
                entry["word_weights"] = [
                    w[: len(s)].tolist() for w, s in zip(prediction.weights, item, strict=False)
                ]  # type: ignore[arg-type]
                entry["sentence_weights"] = (
                    prediction.sentence_weights.tolist() if prediction.sentence_weights is not None else []
                )
            else:
                entry["tokens"] = [self.tokenizer.id_to_piece(i) for i in item]  # type: ignore[arg-type]
                entry["weights"] = [w[: len(item)].tolist() for w in prediction.weights]
            explained.append(entry)
        return explained
