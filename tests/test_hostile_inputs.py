"""Hostile configs and options for every command that reads or writes files.

One table: each row is a command line that must fail cleanly, with the word its one-line error
must contain (the config key, the option or the path at fault). Every row must exit non-zero,
print exactly one line (no traceback) and leave no file behind: no model directory, no output
file, no temporary file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqattn.cli import main


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    """The command line; ``{name}`` fields are filled in from :func:`places`."""
    names: tuple[str, ...]
    """What the error line must name: the key, option or path at fault (fields filled in)."""


def places(tmp: Path, translator_dir: Path, classifier_dir: Path) -> dict[str, str]:
    """Create the files the table refers to; the values of its ``{name}`` fields."""
    (tmp / "lines.txt").write_text("w1 w2 w3\nw4 w5\n")
    (tmp / "refs.txt").write_text("w3 w2 w1\nw5 w4\n")
    (tmp / "labels.txt").write_text("pos\nneg\n")
    (tmp / "folder").mkdir()
    (tmp / "folder.png").mkdir()
    (tmp / "a_file").write_text("not a directory\n")
    corpus = f"src: {tmp}/lines.txt, tgt: {tmp}/refs.txt"
    model = (
        "{arch: transformer, d_model: 16, num_heads: 2, ffn_dim: 16, encoder_layers: 1, decoder_layers: 1}"
    )
    good = f"task: translation\nmodel: {model}\ndata:\n  train: {{{corpus}}}\n  valid: {{{corpus}}}\n"
    (tmp / "good.yaml").write_text(good)
    (tmp / "extra_key.yaml").write_text(good + "colour: blue\n")
    (tmp / "no_data.yaml").write_text(good.replace(f"{tmp}/lines.txt", f"{tmp}/gone.src", 1))
    (tmp / "dir_data.yaml").write_text(good.replace(f"{tmp}/refs.txt", f"{tmp}/folder", 1))
    (tmp / "bad_model").mkdir()  # a translator whose config.yaml has an unknown key
    for source in translator_dir.iterdir():
        if source.is_file():
            (tmp / "bad_model" / source.name).write_bytes(source.read_bytes())
    with open(tmp / "bad_model" / "config.yaml", "a", encoding="utf-8") as config:
        config.write("shiny: true\n")
    for name in ("no_shortlist", "bad_shortlist"):  # a translator without / with a damaged shortlist
        (tmp / name).mkdir()
        for source in translator_dir.iterdir():
            if source.is_file() and source.name != "shortlist.pt":
                (tmp / name / source.name).write_bytes(source.read_bytes())
    (tmp / "bad_shortlist" / "shortlist.pt").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp / "blank.txt").write_text("\n  \n")
    (tmp / "three.txt").write_text("w1\nw2\nw3\n")
    return {"tmp": str(tmp), "T": str(translator_dir), "C": str(classifier_dir)}


TRAIN = ("train", "{tmp}/good.yaml", "-o", "{tmp}/run")
TRANSLATE = ("translate", "-m", "{T}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/out.txt")
CLASSIFY = ("classify", "-m", "{C}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/out.txt")
EVAL_T = ("evaluate", "-m", "{T}", "--src", "{tmp}/lines.txt", "--ref", "{tmp}/refs.txt")
EVAL_C = ("evaluate", "-m", "{C}", "--text", "{tmp}/lines.txt", "--labels", "{tmp}/labels.txt")
PLOT = ("plot", "-m", "{T}", "--text", "w1 w2", "-o", "{tmp}/plot.png")
ALIGN = ("align", "-m", "{T}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/refs.txt", "-o", "{tmp}/out.talp")

CASES: dict[str, Case] = {
    # seqattn train: the config file and its keys, --set, the output directory.
    "train-unknown-key-in-file": Case(("train", "{tmp}/extra_key.yaml", "-o", "{tmp}/run"), ("colour",)),
    "train-unknown-key-set": Case((*TRAIN, "--set", "model.colour=red"), ("model.colour",)),
    "train-unknown-section-key": Case((*TRAIN, "--set", "train.learning_rate=0.1"), ("train.learning_rate",)),
    "train-wrong-type": Case((*TRAIN, "--set", "train.lr=fast"), ("train.lr",)),
    "train-wrong-type-bool": Case((*TRAIN, "--set", "model.pre_norm=maybe"), ("model.pre_norm",)),
    "train-negative-size": Case((*TRAIN, "--set", "model.d_model=-16"), ("model.d_model",)),
    "train-zero-size": Case((*TRAIN, "--set", "train.max_tokens=0"), ("train.max_tokens",)),
    "train-zero-vocabulary": Case((*TRAIN, "--set", "tokenizer.vocab_size=0"), ("tokenizer.vocab_size",)),
    "train-zero-layers": Case((*TRAIN, "--set", "model.encoder_layers=0"), ("model.encoder_layers",)),
    "train-vocabulary-too-large-for-the-data": Case(
        (*TRAIN, "--set", "tokenizer.vocab_size=4000"), ("tokenizer.vocab_size",)
    ),
    "train-beam-0": Case((*TRAIN, "--set", "train.beam=0"), ("train.beam",)),
    "train-test-beam-0": Case((*TRAIN, "--set", "train.test_beam=0"), ("train.test_beam",)),
    "train-set-without-value": Case((*TRAIN, "--set", "train.lr"), ("train.lr",)),
    "train-missing-config": Case(("train", "{tmp}/nope.yaml", "-o", "{tmp}/run"), ("{tmp}/nope.yaml",)),
    "train-config-is-directory": Case(("train", "{tmp}/folder", "-o", "{tmp}/run"), ("{tmp}/folder",)),
    "train-missing-data-file": Case(
        ("train", "{tmp}/no_data.yaml", "-o", "{tmp}/run"), ("data.train", "{tmp}/gone.src")
    ),
    "train-data-is-directory": Case(
        ("train", "{tmp}/dir_data.yaml", "-o", "{tmp}/run"), ("data.train", "{tmp}/folder")
    ),
    "train-output-is-a-file": Case(("train", "{tmp}/good.yaml", "-o", "{tmp}/a_file"), ("--output-dir",)),
    "train-output-under-a-file": Case(
        ("train", "{tmp}/good.yaml", "-o", "{tmp}/a_file/run"), ("--output-dir",)
    ),
    "train-bad-device": Case((*TRAIN, "--device", "tpu"), ("--device",)),
    "train-unknown-option": Case((*TRAIN, "--epochs", "3"), ("--epochs",)),
    # seqattn translate
    "translate-beam-0": Case((*TRANSLATE, "--beam", "0"), ("--beam",)),
    "translate-beam-not-a-number": Case((*TRANSLATE, "--beam", "five"), ("--beam",)),
    "translate-n-best-0": Case((*TRANSLATE, "--n-best", "0"), ("--n-best",)),
    "translate-n-best-over-beam": Case((*TRANSLATE, "--beam", "2", "--n-best", "3"), ("--n-best",)),
    "translate-negative-batch": Case((*TRANSLATE, "--batch-tokens", "-5"), ("--batch-tokens",)),
    "translate-zero-max-chars": Case((*TRANSLATE, "--max-chars", "0"), ("--max-chars",)),
    "translate-missing-model": Case(
        ("translate", "-m", "{tmp}/nomodel", "-i", "{tmp}/lines.txt"), ("{tmp}/nomodel",)
    ),
    "translate-model-is-a-file": Case(
        ("translate", "-m", "{tmp}/a_file", "-i", "{tmp}/lines.txt"), ("{tmp}/a_file",)
    ),
    "translate-model-config-unknown-key": Case(
        ("translate", "-m", "{tmp}/bad_model", "-i", "{tmp}/lines.txt", "-o", "{tmp}/out.txt"),
        ("shiny", "config.yaml"),
    ),
    "translate-classifier-model": Case(("translate", "-m", "{C}", "-i", "{tmp}/lines.txt"), ("--model",)),
    "translate-missing-input": Case(
        ("translate", "-m", "{T}", "-i", "{tmp}/nope.txt", "-o", "{tmp}/out.txt"), ("{tmp}/nope.txt",)
    ),
    "translate-input-is-directory": Case(("translate", "-m", "{T}", "-i", "{tmp}/folder"), ("--input",)),
    "translate-output-dir-missing": Case(
        ("translate", "-m", "{T}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/no/out.txt"), ("--output",)
    ),
    "translate-output-is-directory": Case(
        ("translate", "-m", "{T}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/folder"), ("--output",)
    ),
    "translate-bad-device": Case((*TRANSLATE, "--device", "tpu"), ("--device",)),
    "translate-unknown-option": Case((*TRANSLATE, "--colour"), ("--colour",)),
    # seqattn classify
    "classify-zero-batch": Case((*CLASSIFY, "--batch-tokens", "0"), ("--batch-tokens",)),
    "classify-negative-max-chars": Case((*CLASSIFY, "--max-chars", "-1"), ("--max-chars",)),
    "classify-translator-model": Case(("classify", "-m", "{T}", "-i", "{tmp}/lines.txt"), ("--model",)),
    "classify-missing-model": Case(
        ("classify", "-m", "{tmp}/nomodel", "-i", "{tmp}/lines.txt"), ("{tmp}/nomodel",)
    ),
    "classify-missing-input": Case(
        ("classify", "-m", "{C}", "-i", "{tmp}/nope.txt", "-o", "{tmp}/out.txt"), ("{tmp}/nope.txt",)
    ),
    "classify-input-is-directory": Case(
        ("classify", "-m", "{C}", "-i", "{tmp}/folder", "-o", "{tmp}/out.txt"), ("--input",)
    ),
    "classify-output-dir-missing": Case(
        ("classify", "-m", "{C}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/no/out.txt"), ("--output",)
    ),
    "classify-output-is-directory": Case(
        ("classify", "-m", "{C}", "-i", "{tmp}/lines.txt", "-o", "{tmp}/folder"), ("--output",)
    ),
    # seqattn evaluate (prints scores; writes nothing)
    "evaluate-beam-0": Case((*EVAL_T, "--beam", "0"), ("--beam",)),
    "evaluate-zero-batch": Case((*EVAL_C, "--batch-tokens", "0"), ("--batch-tokens",)),
    "evaluate-missing-src": Case(
        ("evaluate", "-m", "{T}", "--src", "{tmp}/nope.txt", "--ref", "{tmp}/refs.txt"), ("{tmp}/nope.txt",)
    ),
    "evaluate-ref-is-directory": Case(
        ("evaluate", "-m", "{T}", "--src", "{tmp}/lines.txt", "--ref", "{tmp}/folder"), ("--ref",)
    ),
    "evaluate-missing-labels": Case(
        ("evaluate", "-m", "{C}", "--text", "{tmp}/lines.txt", "--labels", "{tmp}/nope.txt"),
        ("{tmp}/nope.txt",),
    ),
    "evaluate-text-is-directory": Case(
        ("evaluate", "-m", "{C}", "--text", "{tmp}/folder", "--labels", "{tmp}/labels.txt"), ("--text",)
    ),
    "evaluate-missing-model": Case(
        ("evaluate", "-m", "{tmp}/nomodel", "--src", "{tmp}/lines.txt", "--ref", "{tmp}/refs.txt"),
        ("{tmp}/nomodel",),
    ),
    "evaluate-no-references": Case(("evaluate", "-m", "{T}", "--src", "{tmp}/lines.txt"), ("--ref",)),
    "evaluate-classifier-shortlist": Case((*EVAL_C, "--shortlist"), ("{C}", "classifier")),
    # --shortlist and seqattn shortlist
    "translate-shortlist-missing": Case(
        ("translate", "-m", "{tmp}/no_shortlist", "-i", "{tmp}/lines.txt", "--shortlist"),
        ("{tmp}/no_shortlist/shortlist.pt",),
    ),
    "translate-shortlist-damaged": Case(
        ("translate", "-m", "{tmp}/bad_shortlist", "-i", "{tmp}/lines.txt", "--shortlist"),
        ("{tmp}/bad_shortlist/shortlist.pt",),
    ),
    "shortlist-missing-src": Case(
        ("shortlist", "-m", "{T}", "--src", "{tmp}/nope.txt", "--tgt", "{tmp}/refs.txt"), ("{tmp}/nope.txt",)
    ),
    "shortlist-lengths-differ": Case(
        ("shortlist", "-m", "{T}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/three.txt"),
        ("{tmp}/lines.txt", "{tmp}/three.txt"),
    ),
    "shortlist-no-pairs": Case(
        ("shortlist", "-m", "{T}", "--src", "{tmp}/blank.txt", "--tgt", "{tmp}/blank.txt"), ("--src",)
    ),
    "shortlist-top-0": Case(
        ("shortlist", "-m", "{T}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/refs.txt", "--top", "0"),
        ("--top",),
    ),
    "shortlist-classifier-model": Case(
        ("shortlist", "-m", "{C}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/refs.txt"), ("--model",)
    ),
    # seqattn plot
    "plot-beam-0": Case((*PLOT, "--beam", "0"), ("--beam",)),
    "plot-output-dir-missing": Case(
        ("plot", "-m", "{T}", "--text", "w1", "-o", "{tmp}/no/plot.png"), ("{tmp}/no",)
    ),
    "plot-output-is-directory": Case(
        ("plot", "-m", "{T}", "--text", "w1", "-o", "{tmp}/folder.png"), ("{tmp}/folder.png",)
    ),
    "plot-output-format": Case(
        ("plot", "-m", "{T}", "--text", "w1", "-o", "{tmp}/plot.jpg"), ("{tmp}/plot.jpg",)
    ),
    "plot-missing-model": Case(
        ("plot", "-m", "{tmp}/nomodel", "--text", "w1", "-o", "{tmp}/plot.png"), ("{tmp}/nomodel",)
    ),
    "plot-missing-text": Case(("plot", "-m", "{T}", "-o", "{tmp}/plot.png"), ("--text",)),
    # seqattn align
    "align-missing-src": Case(
        ("align", "-m", "{T}", "--src", "{tmp}/nope.txt", "--tgt", "{tmp}/refs.txt", "-o", "{tmp}/out.talp"),
        ("{tmp}/nope.txt",),
    ),
    "align-tgt-is-directory": Case(
        ("align", "-m", "{T}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/folder", "-o", "{tmp}/out.talp"),
        ("--tgt",),
    ),
    "align-output-dir-missing": Case(
        (
            "align",
            "-m",
            "{T}",
            "--src",
            "{tmp}/lines.txt",
            "--tgt",
            "{tmp}/refs.txt",
            "-o",
            "{tmp}/no/out.talp",
        ),
        ("--output",),
    ),
    "align-output-is-directory": Case(
        ("align", "-m", "{T}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/refs.txt", "-o", "{tmp}/folder"),
        ("--output",),
    ),
    "align-classifier-model": Case(
        ("align", "-m", "{C}", "--src", "{tmp}/lines.txt", "--tgt", "{tmp}/refs.txt"), ("--model",)
    ),
    "align-unknown-option": Case((*ALIGN, "--heads"), ("--heads",)),
}


def tree(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_fails_in_one_line_and_writes_nothing(
    name: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    translator_dir: Path,
    classifier_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    assert isinstance(case.names, tuple) and case.names
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path_factory.mktemp("cache")))  # outside tmp_path
    fields = places(tmp_path, translator_dir, classifier_dir)
    before = tree(tmp_path)
    args = [arg.format(**fields) for arg in case.args]
    result = CliRunner().invoke(main, args, input=b"w1 w2\n")

    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in case.names:
        assert needle.format(**fields) in lines[0], lines[0]
    assert tree(tmp_path) == before  # nothing created: no model directory, output or temporary
