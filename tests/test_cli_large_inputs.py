"""Nothing lost in translation: ``seqattn translate`` and ``seqattn classify`` on large, messy
input files write exactly one output line per input line, in order, count their repairs, refuse
invalid UTF-8 under ``--strict``, and never leave an output file that looks complete when they
are interrupted.

The input mixes short sentences, empty and whitespace-only lines, a few 10,500-character lines
and a few lines with invalid UTF-8. Expected outputs come from the Python API applied to the
*distinct* lines, after the CLI's own repairs (U+FFFD replacement, truncation to --max-chars):
output line ``i`` must be the answer for input line ``i``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import seqattn
from seqattn.cli import main
from seqattn.config import load_config
from seqattn.data.tokenizer import Tokenizer
from seqattn.models.build import build_seq2seq
from seqattn.training.checkpoint import save_checkpoint

LONG_LINES = 3
INVALID_LINES = 5
# The fixture Transformer has 1024 positions and the searches allow 1.5 x source + 5 output
# tokens: 500 characters are at most 500 pieces, so at most 757 positions on either side
# (longer lines crash today; see test_a_line_longer_than_the_model_positions).
MAX_CHARS = 500
# 100,000 lines take about 45 s to translate (slow-marked) but 6 s to classify.
TRANSLATE_SIZES = [10_000, pytest.param(100_000, marks=pytest.mark.slow)]
CLASSIFY_SIZES = [100_000]


@pytest.fixture(scope="module")
def random_translator(translator_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture translator with seeded random weights instead of its trained ones.

    The trained tiny model answers every line with an empty translation, which would make
    line order untestable. Random weights scaled by 3 (at the usual scale the tiny model
    repeats one token) answer different inputs differently.
    """
    directory = tmp_path_factory.mktemp("random-translator")
    for name in ("config.yaml", "spm.model"):
        shutil.copy(translator_dir / name, directory / name)
    config = load_config(directory / "config.yaml")
    vocab = Tokenizer.load(directory / "spm.model").vocab_size
    torch.manual_seed(0)
    model = build_seq2seq(config.model, src_vocab=vocab, tgt_vocab=vocab)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    save_checkpoint(directory / "model.pt", {"model": model.state_dict()})
    return directory


pytestmark = pytest.mark.usefixtures("one_thread")


def messy_lines(count: int, *, seed: int = 0) -> list[bytes]:
    """``count`` raw lines (no line ends): mostly 1-6 words of w0..w9, plus empty and
    whitespace-only lines, ``LONG_LINES`` lines of 10,500 characters and ``INVALID_LINES``
    lines with invalid UTF-8, at random positions."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(10)]
    lines = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.05:
            lines.append(b"")
        elif kind < 0.08:
            lines.append(rng.choice([b" ", b"   ", b"\t", b" \t "]))
        else:
            lines.append(" ".join(rng.choices(words, k=rng.randint(1, 6))).encode())
    special = rng.sample(range(count), LONG_LINES + INVALID_LINES)
    for index in special[:LONG_LINES]:
        lines[index] = (" ".join(rng.choices(words, k=3600)).encode())[:10_500]
    for index in special[LONG_LINES:]:
        lines[index] = b"w1 \xff\xfe w2 \xc3"  # a bad start byte, and a sequence cut short
    return lines


def write_input(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def as_the_cli_reads(lines: list[bytes], max_chars: int) -> list[str]:
    """What the CLI hands to the model: invalid UTF-8 replaced, long lines truncated."""
    return [line.decode("utf-8", errors="replace")[:max_chars] for line in lines]


def output_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") or text == ""
    return text.split("\n")[:-1]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def only_the_output(directory: Path, name: str) -> None:
    """``name`` is there and no temporary file is left beside it."""
    assert sorted(p.name for p in directory.iterdir() if p.name != "in.txt") == [name]


@pytest.mark.parametrize("size", TRANSLATE_SIZES)
def test_translate_keeps_every_line_in_order(random_translator: Path, tmp_path: Path, size: int) -> None:
    lines = messy_lines(size)
    write_input(tmp_path / "in.txt", lines)
    out = tmp_path / "out.txt"
    result = run(
        "translate",
        *("-m", str(random_translator), "-i", str(tmp_path / "in.txt"), "-o", str(out)),
        *("--beam", "1", "--max-chars", str(MAX_CHARS)),
    )
    assert result.exit_code == 0, result.output
    got = output_lines(out)
    assert len(got) == size

    texts = as_the_cli_reads(lines, MAX_CHARS)
    distinct = sorted(set(texts))
    answers = dict(zip(distinct, seqattn.load(random_translator).translate(distinct, beam=1), strict=True))
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    assert len(blank) > size // 20
    assert all(got[i] == "" for i in blank)  # empty in, empty out, at the same line
    assert len(set(got)) > 100  # the model answers the others, each in its own way
    mismatches = [i for i, text in enumerate(texts) if got[i] != answers[text]]
    assert mismatches == [], f"{len(mismatches)} lines differ, first at line {mismatches[0] + 1}"

    assert f"{INVALID_LINES} line(s) had invalid UTF-8, replaced with U+FFFD" in result.stderr
    assert f"{LONG_LINES} line(s) longer than {MAX_CHARS} characters were truncated" in result.stderr
    assert f"translated {size:,} lines" in result.stderr
    only_the_output(tmp_path, "out.txt")


@pytest.mark.parametrize("size", CLASSIFY_SIZES)
def test_classify_keeps_every_line_in_order(classifier_dir: Path, tmp_path: Path, size: int) -> None:
    lines = messy_lines(size, seed=1)
    write_input(tmp_path / "in.txt", lines)
    out = tmp_path / "out.txt"
    result = run("classify", "-m", str(classifier_dir), "-i", str(tmp_path / "in.txt"), "-o", str(out))
    assert result.exit_code == 0, result.output
    got = [line.split("\t") for line in output_lines(out)]
    assert len(got) == size
    assert all(len(row) == 2 and re.fullmatch(r"\d\.\d{4}", row[1]) for row in got)

    texts = as_the_cli_reads(lines, 10_000)  # the default --max-chars
    distinct = sorted(set(texts))
    answers = dict(zip(distinct, seqattn.load(classifier_dir).predict(distinct), strict=True))
    for number, (text, (label, probability)) in enumerate(zip(texts, got, strict=True), start=1):
        expected_label, expected_probability = answers[text]
        assert label == expected_label, number
        assert abs(float(probability) - expected_probability) <= 1e-4, number

    assert f"{INVALID_LINES} line(s) had invalid UTF-8, replaced with U+FFFD" in result.stderr
    assert f"{LONG_LINES} line(s) longer than 10000 characters were truncated" in result.stderr
    only_the_output(tmp_path, "out.txt")


@pytest.mark.parametrize("command", ["translate", "classify"])
def test_strict_refuses_invalid_utf8_and_writes_nothing(
    translator_dir: Path, classifier_dir: Path, tmp_path: Path, command: str
) -> None:
    lines = messy_lines(2000, seed=2)
    write_input(tmp_path / "in.txt", lines)
    first_bad = next(i for i, line in enumerate(lines) if b"\xff" in line) + 1
    model = translator_dir if command == "translate" else classifier_dir
    out = tmp_path / "out.txt"
    result = run(command, "-m", str(model), "-i", str(tmp_path / "in.txt"), "-o", str(out), "--strict")
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"error: {tmp_path / 'in.txt'}:{first_bad}: invalid UTF-8 at byte 4 (0xff)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # no output, no temporary


def test_an_exception_mid_way_leaves_the_old_output_untouched(
    translator_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_input(tmp_path / "in.txt", messy_lines(5000, seed=3))  # three chunks of input
    out = tmp_path / "out.txt"
    out.write_text("the previous, complete output\n")
    calls = []
    translate = seqattn.Translator.translate

    def fail_on_the_second_chunk(self, sentences, **options):
        calls.append(len(sentences))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C would
        return translate(self, sentences, **options)

    monkeypatch.setattr(seqattn.Translator, "translate", fail_on_the_second_chunk)
    result = run(
        "translate",
        *("-m", str(translator_dir), "-i", str(tmp_path / "in.txt"), "-o", str(out)),
        *("--max-chars", str(MAX_CHARS)),
    )
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert len(calls) == 2
    assert out.read_text() == "the previous, complete output\n"
    only_the_output(tmp_path, "out.txt")


def test_a_killed_run_leaves_no_file_at_the_output_path(translator_dir: Path, tmp_path: Path) -> None:
    write_input(tmp_path / "in.txt", messy_lines(30_000, seed=4))
    out = tmp_path / "out.txt"
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "seqattn", "translate", "-m", str(translator_dir)]
    command += ["-i", str(tmp_path / "in.txt"), "-o", str(out), "--beam", "1", "--max-chars", "50"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        temporary: list[Path] = []
        while time.monotonic() < deadline and process.poll() is None:
            temporary = [p for p in tmp_path.glob(".out.txt.*.tmp") if p.stat().st_size > 0]
            if temporary:
                break
            time.sleep(0.01)
        assert temporary, "the output was never started"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()  # only a hidden, clearly temporary file: .out.txt.XXXXXX.tmp
    assert [p.name for p in tmp_path.iterdir() if p.name != "in.txt"] == [temporary[0].name]
    assert re.fullmatch(r"\.out\.txt\.\w+\.tmp", temporary[0].name)


def test_a_line_longer_than_the_model_positions(translator_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("w1 w2\n" + " ".join(["w3"] * 2000) + "\nw4\n")
    result = run("translate", "-m", str(translator_dir), "-i", str(tmp_path / "in.txt"), "--beam", "1")
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert len(result.stdout.splitlines()) == 3
    assert "1 line(s) longer than the model's 1024 source positions" in result.stderr
