"""Dropout in the compiled CPU kernel (:mod:`seqattn.native`, used by :mod:`seqattn.dropout`).

The mask must be the documented counter-based stream (checked against a Python SplitMix64),
keep at the quantized rate without correlation between neighbours, not depend on the thread
count, and be the same mask in the backward pass; ``dropout_add`` and ``relu_dropout`` must give
the values and gradients of their definitions in float32 and bfloat16; the public functions must
use the kernel where it applies and the eager path where it does not.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn import dropout as dropout_module
from seqattn import native
from seqattn.dropout import Dropout, dropout, dropout_add, quantized_probability, relu_dropout

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None,
    reason="no C++ compiler or ninja: the kernels cannot be built",
)

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64_levels(seed: int, n: int) -> list[int]:
    """The 15-bit levels of elements 0 .. n-1 as documented in dropout.cpp."""
    levels = []
    k = 0
    while len(levels) < n:
        z = (seed + (k + 1) * GOLDEN) & MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        levels.extend(((z >> (16 * half)) & 0xFFFF) & 0x7FFF for half in range(4))
        k += 1
    return levels[:n]


def kernels():
    module = native.module()
    assert module is not None, native.native_status()
    return module


def kernel_factor(n: int, p: float, seed: int) -> torch.Tensor:
    """mask * scale of a call, read off by applying the kernel to ones."""
    levels = round(p * 2**15)
    scale = 1 / (1 - quantized_probability(p))
    return kernels().dropout_apply(torch.ones(n), None, seed, levels, scale, False, False)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 200, 1000])
@pytest.mark.parametrize("seed", [0, 12345, -(2**63), 2**63 - 1])
def test_the_mask_is_the_documented_splitmix64_stream(n: int, seed: int) -> None:
    p = 0.3
    factor = kernel_factor(n, p, seed)
    expected = [level >= round(p * 2**15) for level in splitmix64_levels(seed & MASK64, n)]
    assert (factor != 0).tolist() == expected
    scale = torch.tensor(1 / (1 - quantized_probability(p)), dtype=torch.float32)
    assert set(factor.unique().tolist()) <= {0.0, scale.item()}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keeps_at_the_quantized_rate_without_correlation(p: float) -> None:
    n = 4_000_000
    kept = (kernel_factor(n, p, 99) != 0).float()
    rate = 1 - quantized_probability(p)
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(kept.mean().item() - rate) < 6 * sigma
    # Neighbours share a 64-bit hash (four halves) or sit at a block boundary: neither may correlate.
    for lag in (1, 2, 3, 4, 64):
        a, b = kept[:-lag], kept[lag:]
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 6 / n**0.5
    # Every position within a hash and within a block keeps at the same rate.
    for period in (4, 64):
        per_position = kept[: n - n % period].view(-1, period).mean(0)
        assert (per_position - rate).abs().max().item() < 6 * (rate * (1 - rate) / (n // period)) ** 0.5


def test_the_mask_does_not_depend_on_the_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel_factor(300_001, 0.2, 7)
        torch.set_num_threads(2)
        two = kernel_factor(300_001, 0.2, 7)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 70), min_size=1, max_size=3),
    p=st.sampled_from([0.1, 0.25, 0.5]),
    x_bf16=st.booleans(),
    out_bf16=st.booleans(),
    seed=st.integers(0, 2**40),
)
def test_dropout_add_values_and_gradients(
    shape: list[int], p: float, x_bf16: bool, out_bf16: bool, seed: int
) -> None:
    """residual + dropout(x): values and both gradients from the kernel's own mask."""
    if out_bf16 and not x_bf16:
        return  # a bf16 residual with a float32 x sums to float32: the eager path's case
    x_dtype = torch.bfloat16 if x_bf16 else torch.float32
    out_dtype = torch.bfloat16 if out_bf16 else torch.float32
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator).to(x_dtype).requires_grad_()
    residual = torch.randn(shape, generator=generator).to(out_dtype).requires_grad_()
    grad = torch.randn(shape, generator=generator).to(out_dtype)
    torch.manual_seed(seed)
    y = dropout_add(x, residual, p)
    y.backward(grad)
    assert y.dtype == out_dtype and x.grad.dtype == x_dtype and residual.grad.dtype == out_dtype
    torch.manual_seed(seed)
    factor = dropout(torch.ones(shape), p)  # the same seed draw: the same mask
    expected = (residual.detach().float() + x.detach().float() * factor).to(out_dtype)
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if out_bf16 or x_bf16 else {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(y.detach(), expected, **tolerance)
    torch.testing.assert_close(x.grad, (grad.float() * factor).to(x_dtype), **tolerance)
    assert torch.equal(residual.grad, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_dropout_values_and_gradient(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x0 = torch.randn(37, 129).to(dtype)
    x0[0, :5] = 0.0
    grad = torch.randn(37, 129).to(dtype)
    x = x0.clone().requires_grad_()
    torch.manual_seed(3)
    y = relu_dropout(x, 0.25)
    y.backward(grad)
    torch.manual_seed(3)
    factor = dropout(torch.ones(37, 129), 0.25)
    expected = (torch.relu(x0.float()) * factor).to(dtype)
    torch.testing.assert_close(
        y.detach(), expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-6
    )
    assert y.dtype == dtype and x.grad.dtype == dtype
    expected_grad = (grad.float() * factor * (x0.float() > 0)).to(dtype)
    torch.testing.assert_close(
        x.grad, expected_grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-6
    )
    assert (y == 0).any() and (y > 0).any()


def test_nan_and_infinity_propagate_like_the_eager_dropout() -> None:
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0] * 64)
    torch.manual_seed(0)
    y = dropout(x, 0.5)
    assert y[0::4].isnan().all()  # NaN stays NaN, kept or dropped (x * 0)
    assert (y[1::4].isinf() | y[1::4].isnan()).all()
    relu = relu_dropout(x, 0.5)
    assert relu[0::4].isnan().all()  # torch.relu(NaN) is NaN
    assert (relu[2::4] == 0).all()


def test_seeded_runs_repeat_and_calls_draw_new_masks() -> None:
    x = torch.ones(10_000)
    torch.manual_seed(11)
    first, second = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(11)
    assert torch.equal(first, dropout(x, 0.5))
    assert not torch.equal(first, second)


def test_strided_inputs_and_shapes_are_kept() -> None:
    x = torch.randn(40, 70).t()  # not contiguous
    residual = torch.randn(70, 40)
    torch.manual_seed(1)
    y = dropout_add(x, residual, 0.5)
    assert y.shape == (70, 40)
    torch.manual_seed(1)
    factor = dropout(torch.ones(70, 40), 0.5)
    torch.testing.assert_close(y, residual + x * factor, rtol=1e-6, atol=1e-6)


def test_the_kernel_serves_where_it_applies_and_the_eager_path_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    original = dropout_module._KernelDropout.apply

    def spy(*args):
        calls.append(args[0].dtype)
        return original(*args)

    monkeypatch.setattr(dropout_module._KernelDropout, "apply", spy)
    x = torch.randn(8, 64)
    dropout(x, 0.1)
    dropout(x.bfloat16(), 0.1)
    relu_dropout(x, 0.1)
    dropout_add(x.bfloat16(), x, 0.1)
    assert calls == [torch.float32, torch.bfloat16, torch.float32, torch.bfloat16]
    dropout(x.double(), 0.1)  # float64: the bit mask
    dropout(x, 2**-20)  # quantizes to nothing: F.dropout
    assert len(calls) == 4
    # Sums to float32, not the residual's dtype: the sum in eager, the dropout of x in the kernel.
    dropout_add(x, x.bfloat16(), 0.1)
    assert calls[4:] == [torch.float32]
    with native.use_native(False):
        dropout(x, 0.1)
        relu_dropout(x, 0.1)
        y = dropout_add(x, x, 0.1)
    assert len(calls) == 5
    kept = (y - x) != 0
    torch.testing.assert_close((y - x)[kept], x[kept] / (1 - quantized_probability(0.1)))
    assert 0 < kept.sum() < x.numel()


def test_module_add_is_the_residual_sum_and_the_identity_in_eval() -> None:
    layer = Dropout(0.3)
    x, residual = torch.randn(5, 64), torch.randn(5, 64)
    torch.manual_seed(4)
    got = layer.add(residual, x)
    torch.manual_seed(4)
    torch.testing.assert_close(got, residual + layer(x), rtol=1e-6, atol=1e-6)
    layer.eval()
    assert torch.equal(layer.add(residual, x), residual + x)


@pytest.mark.parametrize("on", [True, False])
def test_a_transformer_trains_on_either_path(on: bool) -> None:
    """A few updates of a tiny Transformer lower the loss with the kernel and without it."""
    from seqattn.models.transformer import TransformerSeq2Seq

    torch.manual_seed(0)
    model = TransformerSeq2Seq(
        20, 20, d_model=32, num_heads=2, ffn_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.2
    )
    src = torch.randint(4, 20, (8, 9))
    lengths = torch.full((8,), 9)
    tgt = torch.cat([torch.full((8, 1), 2), src], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with native.use_native(on):
        for _ in range(40):
            logits, _ = model(src, lengths, tgt[:, :-1], need_attention=False)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]  # about 0.3 on both paths


def test_only_the_inputs_that_need_a_gradient_get_one() -> None:
    x, residual = torch.randn(4, 64), torch.randn(4, 64, requires_grad=True)
    y = dropout_add(x, residual, 0.3)
    y.backward(torch.ones(4, 64))
    assert x.grad is None
    assert torch.equal(residual.grad, torch.ones(4, 64))
