"""SentencePiece training, the fixed special ids, encode/decode, save/load and config checks."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqattn.data.text import read_lines
from seqattn.data.tokenizer import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    UNK,
    UNK_ID,
    Tokenizer,
    TokenizerConfig,
    sample_sentences,
)
from seqattn.errors import ConfigError, DataError

MULTI30K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"


def _synthetic_corpus(count: int = 1500, seed: int = 0) -> list[str]:
    """Sentences over a fixed made-up vocabulary, with accents, digits and punctuation."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mé", "ri", "tün", "sa", "ße", "vo", "ñi", "pa", "dé", "gu", "zo", "ça"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    words += ["Der", "Hund", "läuft", "42", "1999", "über", "naïve"]
    sentences = []
    for _ in range(count):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        sentences.append(sentence.capitalize() + rng.choice([".", "!", "?", ",", ";", ""]))
    return sentences


def _normalise_space(text: str) -> str:
    """Collapse runs of whitespace to one space and strip, as SentencePiece does."""
    return " ".join(text.split())


CORPUS = _synthetic_corpus()
SMALL = TokenizerConfig(vocab_size=200)


@pytest.fixture(scope="module")
def unigram() -> Tokenizer:
    return Tokenizer.train(CORPUS, config=SMALL)


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return Tokenizer.train(CORPUS, config=TokenizerConfig(vocab_size=200, model_type="bpe"))


@pytest.fixture(scope="module")
def byte_model() -> Tokenizer:
    """Identity normalisation and byte fallback: any text round-trips (up to spaces)."""
    config = TokenizerConfig(vocab_size=400, normalization="identity", byte_fallback=True)
    return Tokenizer.train(CORPUS, config=config)


@pytest.fixture(params=["unigram", "bpe"])
def model(request: pytest.FixtureRequest, unigram: Tokenizer, bpe: Tokenizer) -> Tokenizer:
    return unigram if request.param == "unigram" else bpe


# -- training and special ids -----------------------------------------------------------------


def test_vocab_size_as_asked(model: Tokenizer) -> None:
    assert len(model) == model.vocab_size == 200


def test_special_ids_and_pieces(model: Tokenizer) -> None:
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [model.id_to_piece(i) for i in range(4)] == [PAD, UNK, BOS, EOS]
    assert [model.piece_to_id(p) for p in (PAD, UNK, BOS, EOS)] == [0, 1, 2, 3]
    assert (PAD, UNK, BOS, EOS) == ("<pad>", "<unk>", "<s>", "</s>")


def test_model_types_differ() -> None:
    """``model_type`` reaches SentencePiece (the two models are not the same)."""
    a = Tokenizer.train(CORPUS, config=SMALL)
    b = Tokenizer.train(CORPUS, config=TokenizerConfig(vocab_size=200, model_type="bpe"))
    assert a.model_proto != b.model_proto


def test_training_twice_gives_the_same_bytes() -> None:
    for model_type in ("unigram", "bpe"):
        config = TokenizerConfig(vocab_size=150, model_type=model_type)
        assert Tokenizer.train(CORPUS, config=config).model_proto == (
            Tokenizer.train(CORPUS, config=config).model_proto
        )


def test_train_files_reads_gzip_and_plain_alike(tmp_path: Path) -> None:
    text = "\n".join(CORPUS[:600]) + "\n"
    plain = tmp_path / "corpus.txt"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "corpus.gz"
    packed.write_bytes(gzip.compress(("\ufeff" + text.replace("\n", "\r\n")).encode()))
    config = TokenizerConfig(vocab_size=150)
    from_plain = Tokenizer.train_files([plain], config=config)
    assert from_plain.model_proto == Tokenizer.train_files([packed], config=config).model_proto
    assert from_plain.model_proto == Tokenizer.train(CORPUS[:600], config=config).model_proto


def test_train_files_joins_several_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(CORPUS[:400]), encoding="utf-8")
    second.write_text("\n".join(CORPUS[400:800]), encoding="utf-8")
    config = TokenizerConfig(vocab_size=150)
    joint = Tokenizer.train_files([first, second], config=config)
    assert joint.model_proto == Tokenizer.train(CORPUS[:800], config=config).model_proto


def test_train_files_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        Tokenizer.train_files([tmp_path / "missing.txt"], config=SMALL)


# -- sampling -----------------------------------------------------------------------------------


def test_sample_sentences_keeps_everything_under_the_limit() -> None:
    sentences = ["a", "", "b", "  ", "c"]
    assert sample_sentences(sentences, limit=10, seed=1) == ["a", "b", "c"]
    assert sample_sentences(sentences, limit=3, seed=1) == ["a", "b", "c"]


def test_sample_sentences_is_a_seeded_subset_in_input_order() -> None:
    sentences = [f"s{i}" for i in range(1000)]
    sample = sample_sentences(sentences, limit=50, seed=7)
    assert len(sample) == len(set(sample)) == 50
    assert set(sample) <= set(sentences)
    assert sample == sorted(sample, key=sentences.index)
    assert sample == sample_sentences(iter(sentences), limit=50, seed=7)
    assert sample != sample_sentences(sentences, limit=50, seed=8)
    # Not simply the head of the input.
    assert sample != sentences[:50]


def test_sampled_training_is_deterministic_and_seed_dependent() -> None:
    def train(seed: int) -> bytes:
        config = TokenizerConfig(vocab_size=150, max_sentences=200, seed=seed)
        return Tokenizer.train(CORPUS, config=config).model_proto

    assert train(1) == train(1)
    assert train(1) != train(2)
    # Sampling happens: without it the model is another one.
    assert train(1) != Tokenizer.train(CORPUS, config=TokenizerConfig(vocab_size=150)).model_proto


# -- encoding and decoding ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Der Hund läuft über 42 Steine.", "kaloméri tünsa, ßevo!", "1999"])
def test_roundtrip_on_ordinary_text(model: Tokenizer, text: str) -> None:
    ids = model.encode(text)
    assert ids and all(isinstance(i, int) for i in ids)
    assert all(i not in (PAD_ID, BOS_ID, EOS_ID) for i in ids)
    assert model.decode(ids) == text


def test_roundtrip_on_training_sentences(model: Tokenizer) -> None:
    for sentence in CORPUS[:200]:
        assert model.decode(model.encode(sentence)) == sentence


def test_roundtrip_on_multi30k_validation() -> None:
    if not MULTI30K.is_dir():
        pytest.skip(f"Multi30k not found at {MULTI30K}")
    for language in ("en", "de"):
        lines = read_lines(MULTI30K / f"val.{language}.gz")
        tokenizer = Tokenizer.train(lines, config=TokenizerConfig(vocab_size=300))
        decoded = [tokenizer.decode(ids) for ids in tokenizer.encode_batch(lines)]
        assert decoded == [_normalise_space(line) for line in lines]


def test_encode_with_bos_and_eos(model: Tokenizer) -> None:
    text = "Der Hund läuft."
    plain = model.encode(text)
    assert model.encode(text, bos=True) == [BOS_ID, *plain]
    assert model.encode(text, eos=True) == [*plain, EOS_ID]
    assert model.encode(text, bos=True, eos=True) == [BOS_ID, *plain, EOS_ID]


def test_decode_drops_special_ids(model: Tokenizer) -> None:
    text = "Der Hund läuft."
    ids = model.encode(text)
    assert model.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == text
    assert model.decode([PAD_ID, BOS_ID, EOS_ID]) == ""
    # Tensor-like integers are accepted too.
    assert model.decode(torch.tensor([BOS_ID, *ids, EOS_ID])) == text


def test_unknown_characters_become_unk(unigram: Tokenizer) -> None:
    ids = unigram.encode("Hund 日本")
    assert UNK_ID in ids
    assert "⁇" in unigram.decode(ids)
    assert unigram.decode(ids).startswith("Hund")


def test_encode_batch_matches_encode(model: Tokenizer) -> None:
    texts = [*CORPUS[:50], ""]
    assert model.encode_batch(texts) == [model.encode(t) for t in texts]
    assert model.encode_batch(texts, bos=True, eos=True) == [
        model.encode(t, bos=True, eos=True) for t in texts
    ]
    assert model.encode("") == []


def test_pieces(model: Tokenizer) -> None:
    text = "Der Hund läuft über 42 Steine."
    pieces = model.encode_pieces(text)
    assert [model.piece_to_id(p) for p in pieces] == model.encode(text)
    assert [model.id_to_piece(i) for i in model.encode(text)] == pieces
    assert "".join(pieces).replace("\u2581", " ").strip() == text
    assert model.decode_pieces(pieces) == text


# -- byte fallback: any text round-trips ------------------------------------------------------------

_CHARACTERS = st.one_of(
    st.characters(categories=("L", "N", "P"), max_codepoint=0x4FF),
    st.characters(categories=("L",), min_codepoint=0x4E00, max_codepoint=0x4E40),  # unseen CJK
    st.just(" "),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=_CHARACTERS, max_size=60))
def test_byte_fallback_roundtrips_arbitrary_text(byte_model: Tokenizer, text: str) -> None:
    ids = byte_model.encode(text)
    assert UNK_ID not in ids
    assert byte_model.decode(ids) == _normalise_space(text)
    assert byte_model.decode(byte_model.encode(text, bos=True, eos=True)) == _normalise_space(text)


def test_byte_fallback_has_byte_pieces(byte_model: Tokenizer) -> None:
    assert byte_model.id_to_piece(4) == "<0x00>"
    assert byte_model.decode(byte_model.encode("日本")) == "日本"


# -- save / load ------------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path: Path, unigram: Tokenizer) -> None:
    path = tmp_path / "nested" / "dir" / "spm.model"
    unigram.save(path)
    assert path.read_bytes() == unigram.model_proto
    loaded = Tokenizer.load(path)
    assert loaded.model_proto == unigram.model_proto
    for sentence in CORPUS[:20]:
        assert loaded.encode(sentence) == unigram.encode(sentence)
    # Saving leaves no temporary files behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["spm.model"]


def test_save_overwrites(tmp_path: Path, unigram: Tokenizer, bpe: Tokenizer) -> None:
    path = tmp_path / "spm.model"
    unigram.save(path)
    bpe.save(path)
    assert Tokenizer.load(path).model_proto == bpe.model_proto


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.model"
    with pytest.raises(DataError) as error:
        Tokenizer.load(path)
    assert str(path) in str(error.value)


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        Tokenizer.load(tmp_path)
    assert str(tmp_path) in str(error.value)
    assert "directory" in str(error.value)


@pytest.mark.parametrize("content", [b"this is not a sentencepiece model\n", bytes(range(256)) * 4])
def test_load_non_model_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.model"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        Tokenizer.load(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_load_empty_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.model"
    path.write_bytes(b"")
    with pytest.raises(DataError):
        Tokenizer.load(path)


def _foreign_model() -> bytes:
    """A model trained with SentencePiece's default ids (unk=0, bos=1, eos=2, no pad)."""
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=proto, vocab_size=150, minloglevel=2, num_threads=1
    )
    return proto.getvalue()


def test_model_with_wrong_special_ids_rejected() -> None:
    with pytest.raises(DataError) as error:
        Tokenizer(_foreign_model())
    assert "special ids" in str(error.value)
    assert "seqattn tokenizer adopt" in str(error.value)


def test_loading_model_with_wrong_special_ids_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.model"
    path.write_bytes(_foreign_model())
    with pytest.raises(DataError) as error:
        Tokenizer.load(path)
    assert str(path) in str(error.value)


# -- configuration and failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"vocab_size": 7}, "vocab_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"model_type": "word"}, "model_type"),
        ({"model_type": "char"}, "model_type"),
        ({"character_coverage": 0.0}, "character_coverage"),
        ({"character_coverage": 1.5}, "character_coverage"),
        ({"max_sentences": 0}, "max_sentences"),
        ({"max_sentence_length": -1}, "max_sentence_length"),
    ],
)
def test_config_validation(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        TokenizerConfig(**changes)  # type: ignore[arg-type]
    assert key in str(error.value)


def test_config_accepts_valid_values() -> None:
    config = TokenizerConfig(vocab_size=8, model_type="bpe", character_coverage=0.9995, max_sentences=1)
    assert (config.vocab_size, config.model_type) == (8, "bpe")


def test_too_large_vocab_is_a_data_error_with_a_hint() -> None:
    with pytest.raises(DataError) as error:
        Tokenizer.train(["a b c", "c d e"], config=TokenizerConfig(vocab_size=5000))
    message = str(error.value)
    assert "\n" not in message
    assert "5000" in message
    assert "--vocab-size" in message


@pytest.mark.parametrize("sentences", [[], ["", "   ", "\t"]])
def test_empty_input_is_a_data_error(sentences: list[str]) -> None:
    with pytest.raises(DataError, match="empty"):
        Tokenizer.train(sentences, config=SMALL)


def test_case_folding_normalization_from_the_config_section() -> None:
    from seqattn.config import TokenizerSection

    texts = ["Good film", "good FILM", "a Bad plot", "bad plot", "The actors were great", "THE END"] * 20
    folded = Tokenizer.train(
        texts, config=TokenizerSection(vocab_size=24, normalization="nmt_nfkc_cf").settings()
    )
    assert folded.encode("Good FILM") == folded.encode("good film")
    cased = Tokenizer.train(texts, config=TokenizerSection(vocab_size=36).settings())
    assert cased.encode("Good FILM") != cased.encode("good film")
