"""run_lstm: the by-length training path against packing (states, final states, gradients),
which path runs when, and the classifier's BiLSTM on it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from seqattn.models import lstm as lstm_module
from seqattn.models.classifier import SequenceEncoder
from seqattn.models.lstm import run_lstm


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Deterministic float rounding on one intra-op thread."""


@pytest.fixture
def by_length_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each call of the by-length path (which still runs)."""
    calls: list[int] = []
    real = lstm_module._by_length

    def spy(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lstm_module, "_by_length", spy)
    return calls


def _outputs_and_grads(
    module: nn.Module, x: torch.Tensor, lengths: torch.Tensor, *, packed: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    module.zero_grad()
    x = x.detach().requires_grad_(True)
    if packed:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(lstm_module, "fp32_cpu_training", lambda module, x: False)
            states, (h, c) = run_lstm(module, x, lengths)
    else:
        states, (h, c) = lstm_module._by_length(module, x, lengths)
    weights = torch.linspace(-1, 1, states.size(-1))
    (states.mul(weights).square().sum() + h.sum() - 2 * c.sum()).backward()
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    return [states.detach(), h.detach(), c.detach()], grads


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
)
def test_by_length_matches_packing(lengths: list[int], layers: int, bidirectional: bool) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 4, num_layers=layers, batch_first=True, bidirectional=bidirectional).train()
    x = torch.randn(len(lengths), max(lengths) + 1, 5)  # one position of padding past the longest
    length_tensor = torch.tensor(lengths)
    got, got_grads = _outputs_and_grads(lstm, x, length_tensor, packed=False)
    want, want_grads = _outputs_and_grads(lstm, x, length_tensor, packed=True)
    for row, length in enumerate(lengths):
        assert got[0][row, length:].eq(0).all()
        assert got_grads[0][row, length:].eq(0).all()  # padding does not reach the LSTM
    assert got[0].shape == (len(lengths), max(lengths) + 1, 4 * (1 + bidirectional))
    assert got[1].shape == got[2].shape == (layers * (1 + bidirectional), len(lengths), 4)
    for a, b in zip(got + got_grads, want + want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("training", "grad", "lengths", "by_length"),
    [
        (True, True, [3, 1, 3], True),
        (False, True, [3, 1, 3], False),  # evaluation
        (True, False, [3, 1, 3], False),  # no_grad
        (True, True, [3, 0, 3], False),  # an empty sequence: the packed call decides
        (True, True, list(range(1, 21)), False),  # 20 groups of one: packing is faster
    ],
)
def test_by_length_path_runs_in_fp32_cpu_training_only(
    training: bool, grad: bool, lengths: list[int], by_length: bool, by_length_calls: list[int]
) -> None:
    lstm = nn.LSTM(3, 2, batch_first=True).train(training)
    x = torch.randn(len(lengths), max(lengths), 3)
    with torch.set_grad_enabled(grad):
        try:
            run_lstm(lstm, x, torch.tensor(lengths))
        except RuntimeError:
            assert 0 in lengths  # pack_padded_sequence refuses empty sequences
    assert bool(by_length_calls) == by_length


@pytest.mark.parametrize(
    ("distinct", "rows", "pays"),
    [
        ([5, 7], 2, True),  # few groups: few time steps by length
        ([17, 18, 19, 20], 8, True),  # 74 steps by length against 4 x 20
        (list(range(1, 41)), 40, False),  # 40 groups of one sequence
        (list(range(1, 41)), 320, True),  # 8 rows per group over 40 positions: 320
        (list(range(21, 61)), 128, False),  # a hierarchical word encoder's batch
    ],
)
def test_by_length_pays_for_few_or_large_groups(distinct: list[int], rows: int, pays: bool) -> None:
    assert lstm_module.by_length_pays(torch.tensor(distinct), rows=rows) is pays


def test_classifier_bilstm_trains_by_length_with_packed_results(by_length_calls: list[int]) -> None:
    """The classifier's BiLSTM takes the by-length path in training: same states and gradients."""
    torch.manual_seed(0)
    encoder = SequenceEncoder(6, kind="bilstm", hidden_size=5, num_layers=2, num_heads=1, dropout=0.0).train()
    lengths = torch.tensor([4, 7, 2, 7, 4, 1])
    x = torch.randn(len(lengths), 7, 6)

    def run(*, packed: bool) -> list[torch.Tensor]:
        encoder.zero_grad()
        with pytest.MonkeyPatch.context() as patch:
            if packed:
                patch.setattr(lstm_module, "fp32_cpu_training", lambda module, x: False)
            states = encoder(x, lengths)
        states.square().sum().backward()
        return [states.detach()] + [p.grad.clone() for p in encoder.parameters()]

    by_length = run(packed=False)
    assert by_length_calls == [1]
    for got, want in zip(by_length, run(packed=True), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
