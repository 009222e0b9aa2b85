"""int8 inference (seqattn.quantization): the arithmetic, the LSTM, whole models and the API/CLI.

The quantized layers are checked against exact integer arithmetic (what they compute), against
the float layers (how close that is), and for the equivalences the float models have: a row's
output does not depend on the rows beside it, step-by-step decoding equals teacher forcing,
beam 1 equals greedy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import seqattn
from seqattn.cli import main
from seqattn.decoding import beam_search, greedy_search
from seqattn.quantization import Int8Linear, Int8LSTM, linear_rows, native_int8, quantize_int8, quantize_rows
from tests.models.test_seq2seq_models import MODELS, alone_and_together, batch, teacher_forced_and_stepped


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


# -- rows and linear layers ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 40),
    magnitude=st.sampled_from([1e-6, 1e-2, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_quantize_rows_rounds_each_row_to_its_own_scale(
    rows: int, cols: int, magnitude: float, seed: int
) -> None:
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * magnitude
    x[0] = 0.0  # an all-zero row
    q, scale = quantize_rows(x)
    assert q.dtype == torch.int8 and scale.shape == (rows, 1)
    assert torch.all(q[0] == 0) and torch.isfinite(scale).all()
    # Every element is within half a step of its row's grid, and each non-zero row uses the full range.
    assert torch.all((q.float() * scale - x).abs() <= scale / 2 * (1 + 1e-5) + 1e-30)
    for row in range(1, rows):
        if x[row].abs().max() > 0:
            assert q[row].abs().max() == 127


def test_int8_linear_computes_exact_integer_products_then_rescales() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(48, 40)
    x = torch.randn(3, 5, 48)
    layer = Int8Linear.from_float(linear)
    q_x, s_x = quantize_rows(x.reshape(-1, 48))
    exact = (q_x.double() @ layer.weight_t.double()) * s_x.double() * layer.weight_scale.double()
    exact = (exact + linear.bias.double()).float().view(3, 5, 40)
    torch.testing.assert_close(layer(x), exact, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert relative_error(layer(x), linear(x)) < 0.02
        # The dequantized weight is the float weight to within half a step per row.
        step = layer.weight_scale[:, None]
        assert torch.all((layer.dequantized_weight() - linear.weight).abs() <= step / 2 * (1 + 1e-5))


def test_rows_give_the_same_features_as_the_full_layer() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 48)
    x = torch.randn(4, 16)
    layer = Int8Linear.from_float(linear)
    assert torch.equal(layer.rows(x, 16, 32), layer(x)[:, 16:32])
    assert torch.equal(linear_rows(layer, x, 0, 16), layer(x)[:, :16])
    torch.testing.assert_close(linear_rows(linear, x, 32, 48), linear(x)[:, 32:])
    without_bias = nn.Linear(16, 48, bias=False)
    assert Int8Linear.from_float(without_bias).bias is None
    torch.testing.assert_close(
        Int8Linear.from_float(without_bias)(x), F.linear(x, without_bias.weight), atol=0.05, rtol=0.05
    )


def test_a_row_does_not_depend_on_its_neighbours() -> None:
    """Per-row input scales: each row's output is computed from that row alone, bit for bit."""
    torch.manual_seed(0)
    layer = Int8Linear.from_float(nn.Linear(32, 24))
    x = torch.randn(6, 32)
    x[3] *= 1000.0  # a loud neighbour would change a per-tensor scale
    together = layer(x)
    for row in range(6):
        assert torch.equal(layer(x[row : row + 1]), together[row : row + 1])


def test_int8_linear_rejects_a_float_weight() -> None:
    with pytest.raises(ValueError, match="int8"):
        Int8Linear(torch.zeros(4, 4), torch.ones(4), None)


# -- the LSTM ----------------------------------------------------------------------------------------


def test_int8_lstm_follows_the_float_lstm_and_steps_equal_the_sequence() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(24, 32, num_layers=2).eval()
    quantized = Int8LSTM.from_float(lstm)
    x = torch.randn(6, 3, 24)
    hidden = (torch.randn(2, 3, 32) * 0.5, torch.randn(2, 3, 32) * 0.5)
    with torch.no_grad():
        want, (want_h, want_c) = lstm(x, hidden)
        got, (got_h, got_c) = quantized(x, hidden)
    assert got.shape == want.shape and got_h.shape == want_h.shape
    assert (got - want).abs().max() < 0.02 and (got_c - want_c).abs().max() < 0.03
    # One step at a time gives the same numbers as the whole sequence.
    state = hidden
    steps = []
    for t in range(6):
        out, state = quantized(x[t : t + 1], state)
        steps.append(out)
    assert torch.equal(torch.cat(steps), got) and torch.equal(state[1], got_c)


def test_int8_lstm_refuses_what_it_cannot_convert() -> None:
    with pytest.raises(ValueError, match="unidirectional"):
        Int8LSTM.from_float(nn.LSTM(4, 4, bidirectional=True))


# -- whole models --------------------------------------------------------------------------------


@pytest.fixture(params=sorted(MODELS))
def pair(request: pytest.FixtureRequest) -> tuple[nn.Module, nn.Module]:
    """A seeded tiny model and its int8 copy."""
    torch.manual_seed(0)
    float_model = MODELS[request.param]().eval()
    torch.manual_seed(0)
    return float_model, quantize_int8(MODELS[request.param]())


def test_models_convert_and_stay_close_to_float(pair: tuple[nn.Module, nn.Module]) -> None:
    float_model, model = pair
    assert not model.training
    assert any(isinstance(m, Int8Linear) for m in model.modules())
    assert not any(type(m) is nn.Linear for m in model.modules() if not _exempt(model, m))
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([6, 6, 6], seed=1)
    with torch.no_grad():
        want, want_attention = float_model(src, lengths, tgt)
        got, got_attention = model(src, lengths, tgt)
    assert relative_error(got, want) < 0.05
    assert (got_attention - want_attention).abs().max() < 0.05


def _exempt(model: nn.Module, module: nn.Module) -> bool:
    """Whether ``module`` is a child its parent keeps float (``int8_exempt``)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is module:
                return name in getattr(parent, "int8_exempt", ())
    return False


def test_int8_step_by_step_equals_teacher_forcing(pair: tuple[nn.Module, nn.Module]) -> None:
    _, model = pair
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([6, 6, 6], seed=1)
    with torch.no_grad():
        (logits, attention), (stepped_logits, stepped_attention) = teacher_forced_and_stepped(
            model, src, lengths, tgt
        )
    # Float rounding differs between the two paths by ~1e-6, which can move an activation
    # across a rounding boundary of the int8 grid: a tolerance of a few steps.
    torch.testing.assert_close(stepped_logits, logits, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(stepped_attention, attention, atol=2e-3, rtol=2e-3)


def test_int8_outputs_do_not_depend_on_batch_companions(pair: tuple[nn.Module, nn.Module]) -> None:
    _, model = pair
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([5, 5, 5], seed=1)
    with torch.no_grad():
        for alone, within in alone_and_together(model, src, lengths, tgt):
            torch.testing.assert_close(alone, within, atol=2e-3, rtol=2e-3)


def test_int8_beam_one_equals_greedy(pair: tuple[nn.Module, nn.Module]) -> None:
    _, model = pair
    src, lengths = batch([7, 5, 2, 6])
    greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=4)
    beam = beam_search(model, src, lengths, beam_size=1, max_len_a=1.0, max_len_b=4, length_penalty=0.0)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]


def test_min_weights_leaves_smaller_layers_float() -> None:
    torch.manual_seed(0)
    model = quantize_int8(MODELS["transformer-pre-sinusoidal"](), min_weights=16 * 32)
    kinds = {name: type(m) for name, m in model.named_modules()}
    assert kinds["decoder.0.ffn.0"] is Int8Linear  # 16 x 32 weights
    assert kinds["decoder.0.self_attn.out_proj"] is nn.Linear  # 16 x 16


# -- through the API and the CLI on trained models --------------------------------------------------


LINES = ["w1 w2 w3", "w4 w5", "w9 w8 w7 w6", "w0 w3 w5 w7 w2"]


def test_int8_translator_translates_as_the_float_one(translator_dir: Path) -> None:
    fp32 = seqattn.load(translator_dir)
    int8 = seqattn.load(translator_dir, int8=True)
    assert any(isinstance(m, Int8Linear) for m in int8.model.modules())
    assert int8.translate(LINES, beam=3) == fp32.translate(LINES, beam=3)
    result = CliRunner().invoke(
        main, ["translate", "-m", str(translator_dir), "--int8"], input="\n".join(LINES)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == fp32.translate(LINES, beam=5)


def test_int8_classifier_predicts_as_the_float_one(classifier_dir: Path) -> None:
    texts = ["the film was good", "a very bad plot", "good good plot", "bad"]
    fp32 = seqattn.load(classifier_dir)
    int8 = seqattn.load(classifier_dir, int8=True)
    assert any(isinstance(m, Int8Linear) for m in int8.model.modules())
    assert [p[0] for p in int8.predict(texts)] == [p[0] for p in fp32.predict(texts)]


def test_int8_option_errors_are_one_line(translator_dir: Path) -> None:
    for args in (["--int8", "--bf16"], ["--int8", "--device", "meta"]):
        result = CliRunner().invoke(main, ["translate", "-m", str(translator_dir), *args], input="w1\n")
        assert result.exit_code != 0, args
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "int8" in lines[0], result.stderr


def test_int8_warns_on_a_cpu_without_int8_instructions(
    translator_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("seqattn.cli.infer.native_int8", lambda: False)
    result = CliRunner().invoke(main, ["translate", "-m", str(translator_dir), "--int8"], input="w1 w2\n")
    assert result.exit_code == 0, result.output
    assert "VNNI" in result.stderr and len(result.stdout.splitlines()) == 1


def test_native_int8_answers() -> None:
    assert isinstance(native_int8(), bool)


def test_int8_lstm_starts_from_zeros_like_nn_lstm() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 12).eval()
    x = torch.randn(4, 2, 8)
    with torch.no_grad():
        want, _ = lstm(x)
    got, (h, c) = Int8LSTM.from_float(lstm)(x)
    assert (got - want).abs().max() < 0.02 and h.shape == c.shape == (1, 2, 12)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([4, 3]))
    with pytest.raises(TypeError, match="packed"):
        Int8LSTM.from_float(lstm)(packed)
