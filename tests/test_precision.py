"""bf16 autocast on CPU: the switch itself, training under it, and inference through the API/CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import seqattn
from seqattn.cli import main
from seqattn.config import TrainConfig
from seqattn.precision import autocast, native_bf16
from seqattn.training.trainer import Trainer
from tests.training.test_trainer import ReverseTask, config, make_model

CPU = torch.device("cpu")


def test_autocast_switches_linear_layers_to_bf16_only_when_asked() -> None:
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast(CPU, bf16=True):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, bf16=False):
        assert layer(x).dtype == torch.float32
    with autocast(torch.device("meta"), bf16=True):  # no autocast for other device types
        assert layer(x).dtype == torch.float32


def test_native_bf16_answers_for_every_device() -> None:
    assert isinstance(native_bf16(CPU), bool)
    assert native_bf16(torch.device("meta")) is False


def test_train_config_keeps_cpu_autocast_off_by_default() -> None:
    config = TrainConfig()
    assert config.bf16 is True and config.bf16_cpu is False


@pytest.mark.parametrize("bf16_cpu", [False, True])
def test_trainer_runs_cpu_autocast_only_on_request(bf16_cpu: bool, tmp_path: Path) -> None:
    """Under ``bf16_cpu`` the forward runs in bf16; weights, gradients and the loss stay fp32."""
    seen: set[torch.dtype] = set()
    model = make_model(dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    task = ReverseTask()
    trainer = Trainer(
        model, task, config=config(bf16_cpu=bf16_cpu), output_dir=tmp_path / "run", device="cpu"
    )
    nll, tokens = trainer.update([task.plan(0)[0]])
    assert tokens > 0 and torch.isfinite(torch.tensor(nll))
    assert seen == {torch.bfloat16 if bf16_cpu else torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_bf16_translation_matches_fp32_and_returns_float32(translator_dir: Path) -> None:
    sentences = ["w1 w2 w3", "w4 w5", "w9 w8 w7 w6", ""]
    fp32 = seqattn.load(translator_dir)
    bf16 = seqattn.load(translator_dir, bf16=True)
    assert bf16.bf16 and not fp32.bf16
    # A converged toy task: bf16 rounding must not change the answers.
    assert bf16.translate(sentences, beam=3) == fp32.translate(sentences, beam=3)
    assert bf16.translate(sentences, beam=1) == fp32.translate(sentences, beam=1)
    result = bf16.attention("w1 w2 w3", beam=3)
    assert result.attention.dtype == torch.float32
    torch.testing.assert_close(
        result.attention, fp32.attention("w1 w2 w3", beam=3).attention, atol=0.05, rtol=0
    )


def test_bf16_classifier_weights_are_float32(classifier_dir: Path) -> None:
    model = seqattn.load(classifier_dir, bf16=True)
    explained = model.explain(["the film was good"])
    assert explained[0]["label"] == "pos"
    assert [p for p, _ in model.predict(["a very bad plot"])] == ["neg"]


def test_cli_bf16_flag(translator_dir: Path, classifier_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["translate", "-m", str(translator_dir), "--bf16"], input=b"w1 w2 w3\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == seqattn.load(translator_dir).translate(["w1 w2 w3"])
    result = runner.invoke(
        main, ["classify", "-m", str(classifier_dir), "--bf16"], input=b"the film was good\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\t")[0] == "pos"
    result = runner.invoke(main, ["evaluate", "--help"])
    assert "--bf16" in result.output
