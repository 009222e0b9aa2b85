"""The CPU dropout: nn.Dropout's distribution and scaling, its gradient, eval = identity.

Every test runs twice: with the compiled kernels switched on (where they build; see
tests/test_native_dropout.py for the kernel's own tests) and off (the bit mask of the eager path).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from seqattn import native
from seqattn.dropout import Dropout, keep_mask, quantized_probability, relu_dropout


@pytest.fixture(autouse=True, params=[True, False], ids=["kernels-on", "kernels-off"])
def kernels_switch(request: pytest.FixtureRequest) -> Iterator[None]:
    with native.use_native(request.param):
        yield


def test_keeps_the_right_fraction_and_scales_kept_values() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    layer = Dropout(0.3).train()
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 10 standard deviations
    keep = 1 - quantized_probability(0.3)
    assert abs(keep - 0.7) < 2**-16
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / keep))
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


def test_quantized_probability_is_within_half_a_step() -> None:
    for p in (0.0, 1e-6, 0.1, 0.3, 0.5, 0.9, 1.0):
        q = quantized_probability(p)
        assert abs(q - p) <= 2**-16
        assert (q * 2**15).is_integer()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_elements_are_independent_with_the_quantized_rate(p: float) -> None:
    """Two mask elements come from each 32-bit draw: both halves (even and odd positions) must
    keep at the same rate, and neighbours must not be correlated."""
    torch.manual_seed(1)
    n = 4_000_000
    kept = keep_mask(torch.empty(n), p).float().view(-1, 2)  # columns: the two halves of a draw
    rate = 1 - quantized_probability(p)
    tolerance = 6 * (rate * (1 - rate) / (n // 2)) ** 0.5  # six standard deviations
    for half in (kept[:, 0], kept[:, 1]):
        assert abs(half.mean().item() - rate) < tolerance
    # Correlation of the two halves of one draw, and of consecutive draws.
    for a, b in ((kept[:, 0], kept[:, 1]), (kept[:-1, 1], kept[1:, 0])):
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 6 / (n // 2) ** 0.5


def test_mask_shapes_odd_sizes_and_strided_inputs() -> None:
    torch.manual_seed(2)
    for shape in [(0,), (1,), (3,), (7, 5), (2, 3, 5)]:
        x = torch.ones(shape)
        mask = keep_mask(x, 0.5)
        assert mask.shape == x.shape and mask.dtype == torch.bool
    x = torch.randn(6, 9).t()  # not contiguous
    y = Dropout(0.5).train()(x)
    assert y.shape == x.shape
    assert set(torch.unique((y / x).round(decimals=5)).tolist()) <= {
        0.0,
        1 / (1 - quantized_probability(0.5)),
    }


def test_tiny_probability_uses_the_exact_kernel() -> None:
    torch.manual_seed(3)
    x = torch.ones(1000)
    # 1e-7 rounds to zero steps of 2**-15: the exact F.dropout runs (and keeps almost everything).
    assert Dropout(1e-7).train()(x).ne(0).sum() >= 999


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_dropout_equals_relu_then_dropout(p: float, dtype: torch.dtype) -> None:
    """One mask for both: the same values and gradients as the two in sequence, from the same
    random numbers (zeros and exact ties at 0 included)."""
    x0 = torch.randn(37, 29, dtype=dtype)
    x0[0, :5] = 0.0
    grad = torch.randn(37, 29, dtype=dtype)
    results = []
    for fused in (False, True):
        x = x0.clone().requires_grad_()
        torch.manual_seed(7)
        y = relu_dropout(x, p) if fused else Dropout(p)(torch.relu(x))
        y.backward(grad)
        results.append((y.detach(), x.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert (results[1][0] > 0).any() and (results[1][1] == 0).any()


def test_relu_dropout_zero_probability_and_other_devices_fall_back() -> None:
    x = torch.randn(8, 8)
    assert torch.equal(relu_dropout(x, 0.0), torch.relu(x))
    assert torch.equal(relu_dropout(x, 1.0), torch.zeros_like(x))
    torch.manual_seed(0)  # quantized to 0: the exact kernel, which drops nothing of 64 here
    torch.testing.assert_close(relu_dropout(x, 2**-20), torch.relu(x) / (1 - 2**-20))


def test_feed_forward_trains_through_relu_dropout_and_keeps_its_state_dict() -> None:
    from seqattn.models.transformer import FeedForward

    torch.manual_seed(0)
    block = FeedForward(6, 12, 0.3)
    assert list(block.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    x = torch.randn(4, 6)
    torch.manual_seed(1)
    got = block(x)
    torch.manual_seed(1)
    expected = block[3](block[2](block[1](block[0](x))))  # the modules in sequence, training mode
    assert torch.equal(got, expected)
    block.eval()
    assert torch.equal(block(x), block[3](torch.relu(block[0](x))))
