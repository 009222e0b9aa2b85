"""The CPU dropout: nn.Dropout's distribution and scaling, its gradient, eval = identity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqattn.models.dropout import Dropout


def test_keeps_the_right_fraction_and_scales_kept_values() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    layer = Dropout(0.3).train()
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 10 standard deviations
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    # The gradient flows through kept elements only, scaled like the values.
    torch.testing.assert_close(x.grad, y.detach())


def test_eval_and_zero_probability_are_the_identity() -> None:
    x = torch.randn(4, 5)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_seeded_and_drop_in_for_nn_dropout() -> None:
    x = torch.randn(3, 7)
    torch.manual_seed(5)
    first = Dropout(0.5).train()(x)
    torch.manual_seed(5)
    assert torch.equal(first, Dropout(0.5).train()(x))
    assert Dropout(0.25).state_dict() == nn.Dropout(0.25).state_dict() == {}
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_float64_and_other_dtypes() -> None:
    x = torch.randn(1000, dtype=torch.float64)
    y = Dropout(0.5).train()(x)
    assert y.dtype == torch.float64
    assert set(torch.unique((y / x).round(decimals=6)).tolist()) <= {0.0, 2.0}
