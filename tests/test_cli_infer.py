"""seqattn translate / classify / evaluate through click's runner on tiny trained models."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import seqattn
from seqattn.cli import main

LINES = ["w1 w2 w3", "", "w4 w5", "   ", "w9 w8 w7 w6"]


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def test_translate_file_equals_the_python_api(translator_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "out.txt"
    result = run("translate", "-m", str(translator_dir), "-i", str(source), "-o", str(out), "--beam", "3")
    assert result.exit_code == 0, result.output
    lines = out.read_text().split("\n")[:-1]
    assert lines == seqattn.load(translator_dir).translate(LINES, beam=3)
    assert lines[1] == "" and lines[3] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]  # no temporary left


def test_translate_streams_stdin_with_n_best(translator_dir: Path) -> None:
    result = run(
        "translate", "-m", str(translator_dir), "--beam", "3", "--n-best", "2", input=b"w1 w2\nw3 w4\n"
    )
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 2 and all(len(row) == 4 for row in rows)
    assert float(rows[0][1]) >= float(rows[0][3])


def test_invalid_utf8_long_lines_and_strict(translator_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"w1 w2\n\xff\xfe w3\n" + b"w4 " * 50 + b"\n")
    result = run(
        "translate", "-m", str(translator_dir), "-i", str(source), "--beam", "1", "--max-chars", "20"
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert "1 line(s) had invalid UTF-8" in result.stderr and "1 line(s) longer than 20" in result.stderr
    strict = run("translate", "-m", str(translator_dir), "-i", str(source), "--strict")
    assert strict.exit_code == 1 and f"{source}:2: invalid UTF-8" in strict.stderr
    assert "Traceback" not in strict.output


def test_bad_options_are_one_line(translator_dir: Path, classifier_dir: Path, tmp_path: Path) -> None:
    cases = [
        ("translate", "-m", str(translator_dir), "--beam", "2", "--n-best", "3"),
        ("translate", "-m", str(tmp_path / "missing")),
        ("translate", "-m", str(classifier_dir)),
        ("translate", "-m", str(translator_dir), "-o", str(tmp_path / "no" / "such" / "out.txt")),
        ("translate", "-m", str(translator_dir), "-o", str(tmp_path)),
        ("evaluate", "-m", str(translator_dir)),
        ("classify", "-m", str(translator_dir)),
    ]
    for args in cases:
        result = run(*args, input=b"w1\n")
        assert result.exit_code != 0, args
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)
        assert "Traceback" not in result.output


def test_classify_and_explain(classifier_dir: Path) -> None:
    result = run(
        "classify", "-m", str(classifier_dir), "--explain", input=b"the film was good\n\na very bad plot\n"
    )
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows[::2]] == ["pos", "neg"] and len(rows) == 3
    assert "-> pos" in result.stderr


def test_evaluate_both_kinds(translator_dir: Path, classifier_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("w1 w2 w3\nw4 w5\n")
    (tmp_path / "ref.txt").write_text("w3 w2 w1\nw5 w4\n")
    result = run(
        "evaluate",
        "-m",
        str(translator_dir),
        "--src",
        str(tmp_path / "src.txt"),
        "--ref",
        str(tmp_path / "ref.txt"),
        "--json",
        "--beam",
        "2",
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert {"bleu", "chrf", "exact_match", "bleu_signature"} <= set(scores) and scores["sentences"] == 2

    (tmp_path / "text.txt").write_text("the film was good\na very bad plot\n")
    (tmp_path / "labels.txt").write_text("pos\nneg\n")
    result = run(
        "evaluate",
        "-m",
        str(classifier_dir),
        "--text",
        str(tmp_path / "text.txt"),
        "--labels",
        str(tmp_path / "labels.txt"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == 100.0

    (tmp_path / "labels.txt").write_text("pos\nmixed\n")
    result = run(
        "evaluate",
        "-m",
        str(classifier_dir),
        "--text",
        str(tmp_path / "text.txt"),
        "--labels",
        str(tmp_path / "labels.txt"),
    )
    assert result.exit_code == 1 and f"{tmp_path / 'labels.txt'}:2: label 'mixed'" in result.stderr


def test_align_writes_one_line_of_links_per_pair(translator_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("w1 w2 w3\nw4 w5\n")
    (tmp_path / "tgt.txt").write_text("w3 w2 w1\nw5 w4\n")
    out = tmp_path / "pred.talp"
    result = run(
        "align",
        "-m",
        str(translator_dir),
        "--src",
        str(tmp_path / "src.txt"),
        "--tgt",
        str(tmp_path / "tgt.txt"),
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    links = [{tuple(map(int, link.split("-"))) for link in line.split()} for line in lines]
    assert {j for _, j in links[0]} == {0, 1, 2} and {j for _, j in links[1]} == {0, 1}  # every target word
    alignment = seqattn.load(translator_dir).align(["w1 w2 w3"], ["w3 w2 w1"])[0]
    assert alignment.links == links[0]
    assert alignment.word_attention.shape == (len(alignment.target_words), len(alignment.source_words))
    assert alignment.source_words[-1] == alignment.target_words[-1] == "</s>"


def test_aer_against_hand_computed_values(tmp_path: Path) -> None:
    (tmp_path / "gold.talp").write_text("0-0 1p1\n0-0\n1-0 2-0\n")
    (tmp_path / "pred.talp").write_text("0-0\n0-0\n1-0\n")
    result = run(
        "aer", "--gold", str(tmp_path / "gold.talp"), "--pred", str(tmp_path / "pred.talp"), "--json"
    )
    assert result.exit_code == 0, result.output
    # |A| = 3, |S| = 4, |A & S| = 3, |A & P| = 3: AER = 1 - 6/7, precision 3/3, recall 3/4.
    assert json.loads(result.stdout) == {"precision": 100.0, "recall": 75.0, "aer": 14.29, "sentences": 3}
    (tmp_path / "pred.talp").write_text("0-0\n")
    result = run("aer", "--gold", str(tmp_path / "gold.talp"), "--pred", str(tmp_path / "pred.talp"))
    assert result.exit_code == 2 and "has 3 lines" in result.stderr


def test_plot_translation_alignment_and_token_weights(
    translator_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    for args in (
        ("-m", str(translator_dir), "--text", "w1 w2 w3", "-o", str(tmp_path / "a.png")),
        (
            "-m",
            str(translator_dir),
            "--text",
            "w1 w2",
            "--reference",
            "w2 w1",
            "--words",
            "-o",
            str(tmp_path / "b.svg"),
        ),
        ("-m", str(classifier_dir), "--text", "the film was good", "-o", str(tmp_path / "c.png")),
    ):
        result = run("plot", *args)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "b.svg").read_bytes()[:2000]
    assert (tmp_path / "c.png").stat().st_size > 1000
    bad = run("plot", "-m", str(translator_dir), "--text", "w1", "-o", str(tmp_path / "x.jpg"))
    assert bad.exit_code == 1 and "png or .svg" in bad.stderr
