"""seqattn shortlist, and translate / evaluate --shortlist, on the tiny trained translator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import seqattn
from seqattn.cli import main
from seqattn.decoding.shortlist import LexicalShortlist

LINES = ["w1 w2 w3", "", "w4 w5", "w9 w8 w7 w6", "w0 w3"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def model_copy(translator_dir: Path, tmp_path: Path) -> Path:
    """The shared translator copied, so a shortlist written into it stays in this test."""
    return Path(shutil.copytree(translator_dir, tmp_path / "model"))


def build(model: Path, *options: str) -> str:
    result = run("shortlist", "-m", str(model), *options)
    assert result.exit_code == 0, result.output
    return result.output


def corpus(translator_dir: Path) -> tuple[str, str]:
    return str(translator_dir.parent / "train.src"), str(translator_dir.parent / "train.tgt")


def test_training_builds_the_shortlist(translator_dir: Path) -> None:
    """``seqattn train`` leaves the shortlist of its training pairs in the model directory."""
    lexical = LexicalShortlist.load(translator_dir / "shortlist.pt")
    results = json.loads((translator_dir / "results.json").read_text())
    assert (
        results["shortlist"]["pairs"] == lexical.pairs == 300 and lexical.top == results["shortlist"]["top"]
    )
    assert seqattn.load(translator_dir, shortlist=True).translate(["w1 w2"], beam=2)[0] is not None


def test_build_writes_the_shortlist_and_reports_coverage(model_copy: Path, translator_dir: Path) -> None:
    src, tgt = corpus(translator_dir)
    output = build(model_copy, "--src", src, "--tgt", tgt, "--top", "2", "--frequent", "1")
    assert "300" in output and "reference pieces covered" in output
    lexical = LexicalShortlist.load(model_copy / "shortlist.pt")
    assert lexical.top == 2 and lexical.pairs == 300 and lexical.frequent.numel() == 1
    assert not [p for p in model_copy.iterdir() if p.name.endswith(".tmp")]


def test_translate_with_shortlist_equals_the_api(
    model_copy: Path, translator_dir: Path, tmp_path: Path
) -> None:
    src, tgt = corpus(translator_dir)
    build(model_copy, "--src", src, "--tgt", tgt, "--top", "2", "--frequent", "1")
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "out.txt"
    result = run(
        "translate", "-m", str(model_copy), "-i", str(source), "-o", str(out), "--beam", "3", "--shortlist"
    )
    assert result.exit_code == 0, result.output
    translator = seqattn.load(model_copy, shortlist=True)
    assert translator.shortlist is not None
    assert out.read_text().split("\n")[:-1] == translator.translate(LINES, beam=3)
    # Only shortlisted pieces appear: each output piece is allowed for its own source.
    for line in LINES:
        if not line:
            continue
        best = translator.attention(line, beam=3)
        ids = [translator.target.piece_to_id(p) for p in best.target_pieces]
        allowed = set(translator.shortlist.table[translator.source.encode(line, eos=True)].flatten().tolist())
        allowed |= set(translator.shortlist.frequent.tolist()) | {0, 1, 2, 3}
        assert set(ids) <= allowed, (line, best.target_pieces)


def test_a_shortlist_of_everything_changes_nothing(model_copy: Path, translator_dir: Path) -> None:
    src, tgt = corpus(translator_dir)
    full = seqattn.load(model_copy)
    build(model_copy, "--src", src, "--tgt", tgt, "--top", str(full.target.vocab_size))
    listed = seqattn.load(model_copy, shortlist=True)
    for beam in (1, 3):
        assert listed.translate(LINES, beam=beam, n_best=min(beam, 2)) == full.translate(
            LINES, beam=beam, n_best=min(beam, 2)
        )


def test_evaluate_reports_the_shortlist(model_copy: Path, translator_dir: Path, tmp_path: Path) -> None:
    src, tgt = corpus(translator_dir)
    build(model_copy, "--src", src, "--tgt", tgt)
    (tmp_path / "s.txt").write_text("w1 w2\nw3 w4 w5\n")
    (tmp_path / "r.txt").write_text("w2 w1\nw5 w4 w3\n")
    args = [
        "evaluate",
        "-m",
        str(model_copy),
        "--src",
        str(tmp_path / "s.txt"),
        "--ref",
        str(tmp_path / "r.txt"),
    ]
    result = run(*args, "--json", "--shortlist")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["shortlist"] is True and scores["sentences"] == 2
    assert json.loads(run(*args, "--json").stdout)["shortlist"] is False
