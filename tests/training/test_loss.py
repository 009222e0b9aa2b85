"""Label-smoothed cross-entropy against F.cross_entropy and a float64 reference written by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from seqattn.data.tokenizer import PAD_ID
from seqattn.errors import ConfigError
from seqattn.training.loss import LossOutput, label_smoothed_cross_entropy

VOCAB = 7


def _batch(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 5, V) logits and (2, 5) targets with padding at the end of each row."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, VOCAB, generator=generator, dtype=dtype) * 3
    target = torch.randint(1, VOCAB, (2, 5), generator=generator)
    target[0, 3:] = PAD_ID
    target[1, 4:] = PAD_ID
    return logits, target


def _smoothed_targets(target: torch.Tensor, vocab: int, smoothing: float, ignore_index: int) -> torch.Tensor:
    """q for every kept token, built one entry at a time: 1-ε on the target, ε/K elsewhere, 0 on pad."""
    pad_is_class = 0 <= ignore_index < vocab
    spread = vocab - 2 if pad_is_class else vocab - 1
    rows = []
    for y in target.reshape(-1).tolist():
        if y == ignore_index:
            continue
        q = [0.0] * vocab
        for v in range(vocab):
            if v == y:
                q[v] = 1.0 - smoothing
            elif v == ignore_index:
                q[v] = 0.0
            else:
                q[v] = smoothing / spread
        rows.append(q)
    return torch.tensor(rows, dtype=torch.float64)


def _reference(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float, ignore_index: int = PAD_ID
) -> tuple[float, float]:
    """(Σ H(q, p), Σ -log p(y)) over kept tokens, in float64 with an explicit log-sum-exp."""
    vocab = logits.size(-1)
    keep = target.reshape(-1) != ignore_index
    rows = logits.double().reshape(-1, vocab)[keep]
    log_z = rows.max(-1, keepdim=True).values
    log_z = log_z + (rows - log_z).exp().sum(-1, keepdim=True).log()
    log_p = rows - log_z
    q = _smoothed_targets(target, vocab, smoothing, ignore_index)
    kept_targets = target.reshape(-1)[keep]
    nll = -log_p[torch.arange(len(kept_targets)), kept_targets].sum()
    return float(-(q * log_p).sum()), float(nll)


def test_no_smoothing_equals_cross_entropy() -> None:
    logits, target = _batch()
    out = label_smoothed_cross_entropy(logits, target)
    expected = F.cross_entropy(
        logits.reshape(-1, VOCAB), target.reshape(-1), reduction="sum", ignore_index=PAD_ID
    )
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.nll, expected)
    assert out.tokens == 7


@pytest.mark.parametrize("smoothing", [0.1, 0.3, 0.9])
def test_smoothing_matches_float64_reference(smoothing: float) -> None:
    logits, target = _batch(seed=1)
    out = label_smoothed_cross_entropy(logits.double(), target, smoothing=smoothing)
    loss, nll = _reference(logits, target, smoothing)
    assert out.loss.dtype == torch.float64
    assert out.loss.item() == pytest.approx(loss, rel=1e-12)
    assert out.nll.item() == pytest.approx(nll, rel=1e-12)
    float32 = label_smoothed_cross_entropy(logits, target, smoothing=smoothing)
    assert float32.loss.item() == pytest.approx(loss, rel=1e-5)


def test_ignore_index_outside_the_vocabulary_spreads_over_all_other_classes() -> None:
    logits, target = _batch(seed=2)
    target = target.masked_fill(target == PAD_ID, -100)
    out = label_smoothed_cross_entropy(logits.double(), target, smoothing=0.2, ignore_index=-100)
    loss, nll = _reference(logits, target, 0.2, ignore_index=-100)
    assert out.loss.item() == pytest.approx(loss, rel=1e-12)
    assert out.nll.item() == pytest.approx(nll, rel=1e-12)
    assert out.tokens == 7


def test_gradient_is_softmax_minus_smoothed_target() -> None:
    """∂H(q, p)/∂logits = p - q per token: pins the whole target distribution, pad included."""
    logits, target = _batch(seed=3, dtype=torch.float64)
    logits.requires_grad_(True)
    label_smoothed_cross_entropy(logits, target, smoothing=0.25).loss.backward()
    keep = target.reshape(-1) != PAD_ID
    p = logits.detach().reshape(-1, VOCAB)[keep].softmax(-1)
    q = _smoothed_targets(target, VOCAB, 0.25, PAD_ID)
    assert q[:, PAD_ID].eq(0).all()
    torch.testing.assert_close(logits.grad.reshape(-1, VOCAB)[keep], p - q)


def test_ignored_positions_cost_nothing_and_get_zero_gradient() -> None:
    logits, target = _batch(seed=4)
    changed = logits.clone()
    changed[target == PAD_ID] = torch.randn(3, VOCAB) * 100  # rewrite the padded positions only
    for smoothing in (0.0, 0.1):
        a = label_smoothed_cross_entropy(logits, target, smoothing=smoothing)
        b = label_smoothed_cross_entropy(changed, target, smoothing=smoothing)
        assert a.loss.item() == b.loss.item()
    changed.requires_grad_(True)
    label_smoothed_cross_entropy(changed, target, smoothing=0.1).loss.backward()
    assert changed.grad[target == PAD_ID].eq(0).all()
    assert changed.grad[target != PAD_ID].abs().sum() > 0


def test_all_padding_gives_zero_loss_and_zero_tokens() -> None:
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    target = torch.full((2, 3), PAD_ID)
    out = label_smoothed_cross_entropy(logits, target, smoothing=0.1)
    assert out.tokens == 0
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert logits.grad.eq(0).all()


def test_output_fields() -> None:
    logits, target = _batch()
    out = label_smoothed_cross_entropy(logits.requires_grad_(True), target, smoothing=0.1)
    assert isinstance(out, LossOutput)
    assert out.loss.requires_grad and out.loss.ndim == 0
    assert not out.nll.requires_grad and out.nll.ndim == 0
    assert isinstance(out.tokens, int) and out.tokens == int((target != PAD_ID).sum())
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.tokens = 0  # type: ignore[misc]


def test_bfloat16_logits_are_upcast() -> None:
    logits, target = _batch(seed=5)
    low = logits.bfloat16().requires_grad_(True)
    out = label_smoothed_cross_entropy(low, target, smoothing=0.1)
    assert out.loss.dtype == torch.float32 and out.nll.dtype == torch.float32
    expected, _ = _reference(low.detach().float(), target, 0.1)  # same (rounded) logits, in float64
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert low.grad is not None and low.grad.dtype == torch.bfloat16


def test_large_logits_stay_finite() -> None:
    logits, target = _batch(seed=6)
    out = label_smoothed_cross_entropy(logits * 1e4, target, smoothing=0.1)
    assert torch.isfinite(out.loss) and torch.isfinite(out.nll)


def test_gradcheck() -> None:
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1, 2, 0, 0], [4, 3, 2, 0], [0, 1, 1, 4]])
    for smoothing in (0.0, 0.15):

        def loss(x: torch.Tensor, smoothing: float = smoothing) -> torch.Tensor:
            return label_smoothed_cross_entropy(x, target, smoothing=smoothing).loss

        assert torch.autograd.gradcheck(loss, (logits,))
    # The backward is written by hand for speed and is not itself differentiable: asking for a
    # second derivative fails instead of returning a wrong one.
    (grad,) = torch.autograd.grad(loss(logits), logits, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(grad.sum(), logits)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_smoothing_out_of_range_is_a_config_error(smoothing: float) -> None:
    logits, target = _batch()
    with pytest.raises(ConfigError, match="label smoothing must be in"):
        label_smoothed_cross_entropy(logits, target, smoothing=smoothing)


def test_smoothing_needs_a_class_to_spread_over() -> None:
    logits = torch.randn(4, 2)
    target = torch.tensor([1, 1, 0, 1])
    assert label_smoothed_cross_entropy(logits, target).tokens == 3
    with pytest.raises(ConfigError, match="vocabulary has only 2"):
        label_smoothed_cross_entropy(logits, target, smoothing=0.1)


def test_shape_and_dtype_mistakes_are_bugs() -> None:
    logits, target = _batch()
    with pytest.raises(ValueError, match="do not match"):
        label_smoothed_cross_entropy(logits, target[:, :4])
    with pytest.raises(TypeError, match="integer ids"):
        label_smoothed_cross_entropy(logits, target.float())


def _projected(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states and an output weight (both leaves requiring grad), and targets of ``shape``
    without padding, in float64."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*shape, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(VOCAB, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, VOCAB, shape, generator=generator)
    return hidden, weight, target


@pytest.mark.parametrize("shape", [(9,), (3, 4)], ids=["rows", "batch-by-time view"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_overwriting_the_logits_changes_no_result(shape: tuple[int, ...], smoothing: float) -> None:
    """With ``overwrite_logits`` the logits (an output projection, 2-D or reshaped from 3-D)
    hold the log-probabilities after the forward pass, and loss, nll and every gradient are the
    same as without."""
    results = []
    for overwrite in (False, True):
        hidden, weight, target = _projected(11, shape)
        logits = hidden @ weight.t()  # (..., V), not a leaf
        before = logits.detach().clone()
        out = label_smoothed_cross_entropy(logits, target, smoothing=smoothing, overwrite_logits=overwrite)
        if overwrite:
            torch.testing.assert_close(logits.detach(), before.log_softmax(-1), rtol=0, atol=1e-12)
        else:
            assert torch.equal(logits.detach(), before)
        out.loss.backward()
        results.append((out.loss.detach(), out.nll, hidden.grad, weight.grad))
    for kept, overwritten in zip(*results, strict=True):
        torch.testing.assert_close(overwritten, kept, rtol=0, atol=1e-12)


def test_the_callers_logits_are_only_overwritten_on_request() -> None:
    """Without ``overwrite_logits`` the caller's logits survive every path: all kept, some
    dropped (the loss's own copy), upcast from bfloat16 (a copy), and a leaf with overwriting
    requested (a leaf that requires grad cannot be written in place)."""
    logits, target = _batch(seed=12)
    full = torch.randint(1, VOCAB, target.shape)
    cases = [(logits, full, False), (logits, target, False), (logits.bfloat16(), full, False)]
    cases.append((logits.clone().requires_grad_(True), full, True))
    for given, targets, overwrite in cases:
        before = given.detach().clone()
        out = label_smoothed_cross_entropy(given, targets, smoothing=0.1, overwrite_logits=overwrite)
        if given.requires_grad:
            out.loss.backward()
        assert torch.equal(given.detach(), before)


def test_a_second_backward_is_refused_only_after_overwriting() -> None:
    """With ``overwrite_logits`` the backward pass turns the saved log-probabilities into the
    gradient in place, so a second pass over a retained graph must fail loudly instead of
    using the gradient; without it, the second pass gives the same gradient again."""
    for overwrite in (False, True):
        hidden, weight, target = _projected(13, (5,))
        out = label_smoothed_cross_entropy(
            hidden @ weight.t(), target, smoothing=0.1, overwrite_logits=overwrite
        )
        out.loss.backward(retain_graph=True)
        first = hidden.grad.clone()
        if overwrite:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                out.loss.backward()
        else:
            out.loss.backward()
            torch.testing.assert_close(hidden.grad, 2 * first)
