"""Every layer's and head's attention (models, forced decoding, API), per-head plots and the
terminal grid, down to the CLI's ``plot --heads/--terminal``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console

import seqattn
from seqattn.cli import main
from seqattn.decoding import force_decode
from seqattn.errors import ConfigError
from seqattn.plots import plot_heads
from seqattn.terminal import alignment_grid, print_alignment
from tests.models.test_decoding_real_models import NAMES
from tests.models.test_seq2seq_models import MODELS, batch


@pytest.mark.parametrize("name", NAMES)
def test_attention_heads_contain_the_reported_attention(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    src, src_lengths = batch([6, 3, 5])
    tgt_in, _ = batch([4, 4, 4])
    with torch.no_grad():
        _, reported = model(src, src_lengths, tgt_in)
        every = model.attention_heads(src, src_lengths, tgt_in)
    batch_size, target_len = tgt_in.shape
    assert every.shape[0] == batch_size and every.shape[-2:] == (target_len, src.size(1))
    if name.startswith("rnn"):
        assert every.shape[1:3] == (1, 1)
        torch.testing.assert_close(every[:, 0, 0], reported)
    else:
        assert every.shape[1:3] == (len(model.decoder), model.decoder[0].cross_attn.num_heads)
        torch.testing.assert_close(every[:, model.alignment_layer].mean(1), reported)
        model.alignment_layer, model.alignment_heads = 0, [1, 3]
        with torch.no_grad():
            _, chosen = model(src, src_lengths, tgt_in)
        torch.testing.assert_close(every[:, 0, [1, 3]].mean(1), chosen)
    # Each head is a distribution over the real source positions, zero on padding.
    torch.testing.assert_close(every.sum(-1), torch.ones(every.shape[:-1]))
    assert every[2, ..., 5:].abs().max() == 0 and every[1, ..., 3:].abs().max() == 0


def test_force_decode_heads_trims_each_sentence() -> None:
    torch.manual_seed(0)
    model = MODELS["transformer-pre-sinusoidal"]().eval()
    src, src_lengths = batch([6, 3])
    tgt, _ = batch([4, 2])
    plain = force_decode(model, src, src_lengths, tgt)
    every = force_decode(model, src, src_lengths, tgt, heads=True)
    for matrix, heads, (t, s) in zip(plain, every, [(4, 6), (2, 3)], strict=True):
        assert matrix.shape == (t + 1, s) and heads.shape[-2:] == (t + 1, s)
        torch.testing.assert_close(heads[model.alignment_layer].mean(0), matrix)


def test_translation_and_alignment_carry_every_head(translator_dir: Path) -> None:
    model = seqattn.load(translator_dir)
    shown = model.attention("w1 w2 w3", beam=3)
    layers, heads = len(model.model.decoder), model.model.decoder[0].cross_attn.num_heads
    assert shown.heads.shape == (layers, heads, *shown.attention.shape)
    # The incremental search and the teacher-forced heads agree on the reported attention.
    torch.testing.assert_close(
        shown.heads[model.model.alignment_layer].mean(0), shown.attention, atol=1e-5, rtol=1e-4
    )
    aligned = model.align(["w1 w2"], ["w2 w1"], heads=True)[0]
    assert aligned.heads is not None and aligned.heads.shape[:2] == (layers, heads)
    assert model.align(["w1 w2"], ["w2 w1"])[0].heads is None


def test_plot_heads_png_and_svg_and_its_errors(translator_dir: Path, tmp_path: Path) -> None:
    model = seqattn.load(translator_dir)
    shown = model.attention("w1 w2 w3 w4", beam=2)
    assert seqattn.plot_heads is plot_heads  # the top-level name is the same function
    assert plot_heads(shown, tmp_path / "all.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in plot_heads(shown, tmp_path / "top.svg", layers=[-1]).read_bytes()[:3000]
    with pytest.raises(ConfigError, match="layer 5 does not exist"):
        plot_heads(shown, tmp_path / "x.png", layers=[5])
    with pytest.raises(ConfigError, match="no per-head attention"):
        plot_heads(model.align(["w1"], ["w1"])[0], tmp_path / "y.png")


def test_terminal_grid_shows_tokens_and_weights(translator_dir: Path) -> None:
    model = seqattn.load(translator_dir)
    aligned = model.align(["w1 w2 w3"], ["w3 w2 w1"])[0]
    console = Console(width=200, record=True, color_system=None)
    console.print(alignment_grid(aligned))
    text = console.export_text()
    for piece in aligned.source_pieces:
        assert f"={piece.replace('▁', ' ').strip()}" in text
    lines = text.splitlines()
    assert lines[1].split() == ["target", *map(str, range(len(aligned.source_pieces)))]
    rows = lines[2:-1]  # legend, header, one line per target piece, caption
    assert len(rows) == len(aligned.target_pieces)
    for line, weights in zip(rows, aligned.attention, strict=True):
        cells = line.split()[1:]
        expected = [
            "·" if w < 0.05 else "#" if w >= 0.95 else str(min(round(10 * float(w)), 9)) for w in weights
        ]
        assert cells == expected


def test_print_alignment_never_squeezes_a_wide_grid() -> None:
    from seqattn.api import Alignment

    n = 40
    pieces = [f"▁s{j}" for j in range(n - 1)] + ["</s>"]
    targets = [f"▁t{i}" for i in range(n - 1)] + ["</s>"]
    alignment = Alignment(pieces, targets, torch.eye(n), [], [], None, set())  # type: ignore[arg-type]
    console = Console(width=80, record=True, color_system=None)
    print_alignment(alignment, console=console)
    lines = [
        line
        for line in console.export_text().splitlines()
        if line.split() and line.split()[0][:1] == "t" and line.split()[0] != "target"
    ]
    assert len(lines) == n - 1  # one line per row: nothing wrapped
    assert all(line.split()[1 + i] == "#" for i, line in enumerate(lines))


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_plot_heads_layers_and_terminal(
    translator_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    heads = run(
        "plot",
        "-m",
        str(translator_dir),
        "--text",
        "w1 w2",
        "--heads",
        "--layer",
        "2",
        "-o",
        str(tmp_path / "h.png"),
    )
    assert heads.exit_code == 0, heads.output
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    terminal = run("plot", "-m", str(translator_dir), "--text", "w1 w2", "--reference", "w2 w1", "--terminal")
    assert terminal.exit_code == 0, terminal.output
    assert "source:" in terminal.stdout and "</s>" in terminal.stdout
    assert not list(tmp_path.glob("*.svg"))
    classified = run("plot", "-m", str(classifier_dir), "--text", "the film was good", "--terminal")
    assert classified.exit_code == 0 and "->" in classified.stderr
    for args, hint in [
        (("--text", "w1"), "--output"),
        (("--text", "w1", "--layer", "1", "-o", str(tmp_path / "a.png")), "--layer"),
        (("--text", "w1", "--heads", "--layer", "0", "-o", str(tmp_path / "a.png")), "--layer"),
        (("--text", "w1", "--heads", "--layer", "3", "-o", str(tmp_path / "a.png")), "--layer"),
        (
            ("--text", "w1", "--reference", "w1", "--heads", "--words", "-o", str(tmp_path / "a.png")),
            "--words",
        ),
    ]:
        result = run("plot", "-m", str(translator_dir), *args)
        assert result.exit_code == 2, (args, result.output)
        assert hint in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    assert not (tmp_path / "a.png").exists()
