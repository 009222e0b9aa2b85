"""Adopting SentencePiece models trained with other special-id layouts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.cli import main
from seqattn.data.spm_adopt import adopt_model
from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, TokenizerConfig
from seqattn.errors import DataError

TEXT = [
    "Ein Mann mit einem orangefarbenen Hut starrt auf etwas.",
    "A man in an orange hat starring at something.",
    "Zwei Hunde spielen im Schnee, während ein Kind lacht.",
    "Two dogs play in the snow while a child laughs.",
] * 30

LAYOUTS = {
    # SentencePiece's default: no pad piece.
    "default": {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1},
    # fairseq's dictionary order.
    "fairseq": {"bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3},
    # No sentence markers at all, unknown piece with its own string.
    "bare": {"unk_id": 0, "bos_id": -1, "eos_id": -1, "pad_id": -1, "unk_piece": "[UNK]"},
}


def foreign_model(layout: str) -> bytes:
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_writer=proto, vocab_size=50, minloglevel=2, **LAYOUTS[layout]
    )
    return proto.getvalue()


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def models(request: pytest.FixtureRequest) -> tuple[spm.SentencePieceProcessor, Tokenizer, list[int]]:
    proto = foreign_model(request.param)
    adopted = adopt_model(proto)
    return spm.SentencePieceProcessor(model_proto=proto), Tokenizer(adopted.proto), adopted.old_to_new


def test_specials_move_to_seqattn_ids(models) -> None:
    old, new, old_to_new = models
    processor = spm.SentencePieceProcessor(model_proto=new.model_proto)
    assert [processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()] == [
        PAD_ID,
        UNK_ID,
        BOS_ID,
        EOS_ID,
    ]
    assert processor.id_to_piece(UNK_ID) == old.id_to_piece(old.unk_id())
    # Old ids map one-to-one into the new vocabulary; the ids left over are the added specials.
    assert len(set(old_to_new)) == len(old_to_new) == old.get_piece_size()
    spare = sorted(set(range(new.vocab_size)) - set(old_to_new))
    assert all(i < 4 for i in spare) and new.vocab_size == old.get_piece_size() + len(spare)
    for old_id, new_id in enumerate(old_to_new):
        assert new.id_to_piece(new_id) == old.id_to_piece(old_id)
        assert processor.get_score(new_id) == old.get_score(old_id)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="EinMaSchneZwHudpl .,öäüß漢字\t", max_size=60))
def test_segmentation_is_unchanged(models, text: str) -> None:
    old, new, old_to_new = models
    assert new.encode_pieces(text) == old.encode(text, out_type=str)
    assert new.encode(text) == [old_to_new[i] for i in old.encode(text)]
    assert new.decode(new.encode(text)) == old.decode(old.encode(text))


def test_added_pieces_are_reported() -> None:
    assert adopt_model(foreign_model("default")).added == ["<pad>"]
    assert adopt_model(foreign_model("fairseq")).added == []
    assert adopt_model(foreign_model("bare")).added == ["<pad>", "<s>", "</s>"]


def test_a_seqattn_model_is_left_as_it_is() -> None:
    model = Tokenizer.train(TEXT, config=TokenizerConfig(vocab_size=50))
    adopted = adopt_model(model.model_proto)
    assert adopted.old_to_new == list(range(model.vocab_size)) and adopted.added == []
    again = Tokenizer(adopted.proto)
    assert again.encode(TEXT[0]) == model.encode(TEXT[0])


def test_load_points_to_adopt_and_adopt_reads_files(tmp_path: Path) -> None:
    path = tmp_path / "foreign.model"
    path.write_bytes(foreign_model("default"))
    with pytest.raises(DataError, match="seqattn tokenizer adopt"):
        Tokenizer.load(path)
    assert Tokenizer.adopt(path).vocab_size == 51
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\xff\xff\xff\xff not a model")
    with pytest.raises(DataError, match=r"garbage\.model: not a SentencePiece model"):
        Tokenizer.adopt(garbage)
    with pytest.raises(DataError, match="no such SentencePiece model"):
        Tokenizer.adopt(tmp_path / "missing.model")


def test_cli_adopt(tmp_path: Path) -> None:
    source = tmp_path / "foreign.model"
    source.write_bytes(foreign_model("fairseq"))
    result = CliRunner().invoke(main, ["tokenizer", "adopt", str(source), str(tmp_path / "ours.model")])
    assert result.exit_code == 0, result.output
    assert Tokenizer.load(tmp_path / "ours.model").vocab_size == 50
    same = CliRunner().invoke(main, ["tokenizer", "adopt", str(source), str(source)])
    assert same.exit_code == 2 and "new file" in same.stderr
    assert source.read_bytes() == foreign_model("fairseq")  # nothing overwritten
