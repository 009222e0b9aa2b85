"""The command line over the text pipeline: version, tokenizer training, errors and --debug."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from seqattn import __version__
from seqattn.cli import main
from seqattn.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from seqattn.errors import DataError

REPO = Path(__file__).resolve().parents[2]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"

SENTENCES = [
    f"{subject} {verb} {place}."
    for subject in ("A dog", "Two cats", "The child", "Eine Frau", "Der Mann")
    for verb in ("runs", "sleeps", "läuft", "spielt", "sits")
    for place in ("in the park", "on the grass", "über die Straße", "near a tree", "at home")
]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _assert_one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"seqattn, version {__version__}"
    assert _run("-V").output == result.output


def test_help_lists_commands() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    assert "tokenizer" in result.output
    assert "data" in result.output


def test_tokenizer_train_writes_model_and_info(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    result = _run("tokenizer", "train", "-i", str(corpus), "-v", "45", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "spm.model").is_file()
    model = Tokenizer.load(out / "spm.model")
    assert len(model) == 45
    assert [model.id_to_piece(i) for i in range(4)] == [PAD, UNK, BOS, EOS]
    assert model.decode(model.encode(SENTENCES[0])) == SENTENCES[0]
    info = json.loads((out / "spm.json").read_text(encoding="utf-8"))
    assert info["vocab_size"] == 45
    assert info["config"]["vocab_size"] == 45
    assert info["config"]["model_type"] == "unigram"
    assert info["inputs"][0]["path"] == str(corpus)
    assert len(info["inputs"][0]["sha256"]) == 64
    assert "pieces per word" in result.stdout  # the summary table goes to stdout


def test_tokenizer_train_options(corpus: Path, tmp_path: Path) -> None:
    packed = tmp_path / "more.gz"
    packed.write_bytes(gzip.compress("\n".join(reversed(SENTENCES)).encode()))
    out = tmp_path / "tok"
    result = _run(
        "tokenizer",
        "train",
        "-i",
        str(corpus),
        "--input",
        str(packed),
        "--vocab-size",
        "300",
        "--model-type",
        "bpe",
        "--byte-fallback",
        "--seed",
        "3",
        "--max-sentences",
        "100",
        "--name",
        "joint",
        "--output-dir",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["joint.json", "joint.model"]
    info = json.loads((out / "joint.json").read_text(encoding="utf-8"))
    assert info["config"]["model_type"] == "bpe"
    assert info["config"]["byte_fallback"] is True
    assert info["config"]["max_sentences"] == 100
    assert info["config"]["seed"] == 3
    assert [entry["path"] for entry in info["inputs"]] == [str(corpus), str(packed)]
    model = Tokenizer.load(out / "joint.model")
    assert model.id_to_piece(4) == "<0x00>"  # byte fallback reached SentencePiece


def test_tokenizer_train_is_deterministic(corpus: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = _run("tokenizer", "train", "-i", str(corpus), "-v", "45", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "spm.model").read_bytes() == (tmp_path / "b" / "spm.model").read_bytes()


def test_tokenizer_train_on_multi30k_validation(tmp_path: Path) -> None:
    if not MULTI30K.is_dir():
        pytest.skip(f"Multi30k not found at {MULTI30K}")
    out = tmp_path / "tok"
    result = _run("tokenizer", "train", "-i", str(MULTI30K / "val.en.gz"), "-v", "300", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert len(Tokenizer.load(out / "spm.model")) == 300


def test_missing_input_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = _run("tokenizer", "train", "-i", str(missing), "-v", "45", "-o", str(tmp_path / "tok"))
    assert result.exit_code == 1
    line = _assert_one_line_error(result)
    assert str(missing) in line
    assert not (tmp_path / "tok" / "spm.model").exists()


def test_invalid_utf8_input_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nstill fine\nbro\xffken\n")
    result = _run("tokenizer", "train", "-i", str(bad), "-v", "45", "-o", str(tmp_path / "tok"))
    line = _assert_one_line_error(result)
    assert f"{bad}:3:" in line


def test_too_large_vocab_is_a_one_line_error_with_hint(corpus: Path, tmp_path: Path) -> None:
    result = _run("tokenizer", "train", "-i", str(corpus), "-v", "5000", "-o", str(tmp_path / "tok"))
    line = _assert_one_line_error(result)
    assert "--vocab-size" in line


def test_output_dir_is_a_file(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = _run("tokenizer", "train", "-i", str(corpus), "-v", "45", "-o", str(blocker))
    assert result.exit_code == 2
    assert "--output-dir" in result.stderr
    assert "Traceback" not in result.output
    assert blocker.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-v", "45"], "--output-dir"),
        (["-v", "4", "-o", "OUT"], "--vocab-size"),
        (["-v", "45", "-o", "OUT", "--model-type", "word"], "--model-type"),
        (["-v", "45", "-o", "OUT", "--character-coverage", "0"], "--character-coverage"),
    ],
)
def test_bad_options_are_usage_errors(corpus: Path, tmp_path: Path, args: list[str], option: str) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = _run("tokenizer", "train", "-i", str(corpus), *args)
    assert result.exit_code == 2
    assert option in result.stderr
    assert "Traceback" not in result.output


def test_data_prepare_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("data", "prepare", "no-such-dataset", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no-such-dataset" in result.stderr
    assert "dates" in result.stderr  # the choices are listed
    assert not (tmp_path / "out").exists()


def test_debug_lets_the_exception_propagate(tmp_path: Path) -> None:
    args = ["tokenizer", "train", "-i", str(tmp_path / "missing.txt"), "-v", "45", "-o", str(tmp_path)]
    plain = _run(*args)
    assert isinstance(plain.exception, SystemExit)
    debug = _run("--debug", *args)
    assert isinstance(debug.exception, DataError)
    assert "missing.txt" in str(debug.exception)
    assert debug.exit_code != 0


def test_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "SEQATTN_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env["HF_DATASETS_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    missing = tmp_path / "missing.txt"
    command = [sys.executable, "-m", "seqattn", "tokenizer", "train", "-i", str(missing), "-v", "45"]
    completed = subprocess.run(
        [*command, "-o", str(tmp_path / "tok")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ")
    assert str(missing) in lines[0]
    assert completed.stdout == ""
