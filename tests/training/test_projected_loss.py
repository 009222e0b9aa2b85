"""The fused output projection + label-smoothed loss against the two computed separately."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.data.tokenizer import PAD_ID
from seqattn.errors import ConfigError
from seqattn.models.rnn import RNNSeq2Seq
from seqattn.models.transformer import TransformerSeq2Seq
from seqattn.training import translation as translation_module
from seqattn.training.loss import label_smoothed_cross_entropy
from seqattn.training.projected_loss import VOCAB_MULTIPLE, projected_cross_entropy
from seqattn.training.translation import TranslationTask, collate_pairs

Grads = tuple[torch.Tensor | None, ...]


def _inputs(
    rows: int, dim: int, vocab: int, *, bias: bool, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(rows, D) states, (V, D) weight, (V,) bias, (rows,) targets with a few pads."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=generator, dtype=dtype)
    weight = torch.randn(vocab, dim, generator=generator, dtype=dtype)
    b = torch.randn(vocab, generator=generator, dtype=dtype) if bias else None
    target = torch.randint(0, vocab, (rows,), generator=generator)
    target[::3] = PAD_ID
    return hidden, weight, b, target


def _run(
    fused: bool, hidden, weight, bias, target, **options
) -> tuple[torch.Tensor, torch.Tensor, int, Grads]:
    """Loss, nll, tokens and the gradients of the states, weight and bias (3 x the loss)."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (hidden, weight, bias)]
    h, w, b = leaves
    if fused:
        out = projected_cross_entropy(h, w, target, bias=b, **options)
    else:
        block = options.pop("block_bytes", None)
        assert block is None or block > 0
        out = label_smoothed_cross_entropy(F.linear(h, w, b), target, **options)
    (3.0 * out.loss).backward()  # the backward pass scales by the incoming gradient
    return out.loss.detach(), out.nll, out.tokens, tuple(None if t is None else t.grad for t in leaves)


def _assert_same(a, b, *, atol: float = 1e-10, rtol: float = 1e-10) -> None:
    torch.testing.assert_close(a[0], b[0], atol=atol, rtol=rtol)
    torch.testing.assert_close(a[1], b[1], atol=atol, rtol=rtol)
    assert a[2] == b[2]
    for x, y in zip(a[3], b[3], strict=True):
        if x is None:
            assert y is None
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


@pytest.mark.parametrize("vocab", [3, 7, VOCAB_MULTIPLE - 1, VOCAB_MULTIPLE, VOCAB_MULTIPLE + 1, 200])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("block_bytes", [1, 3 * 8 * 256, 1 << 30])  # one row, a few, all at once
def test_equals_projection_then_loss(vocab: int, bias: bool, smoothing: float, block_bytes: int) -> None:
    inputs = _inputs(10, 6, vocab, bias=bias)
    expected = _run(False, *inputs, smoothing=smoothing)
    _assert_same(_run(True, *inputs, smoothing=smoothing, block_bytes=block_bytes), expected)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 25),
    dim=st.integers(1, 9),
    vocab=st.integers(3, 140),
    bias=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.05, 0.3]),
    ignore_index=st.sampled_from([PAD_ID, 2, -100]),
    block_rows=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_equals_projection_then_loss_for_any_shape(
    rows: int,
    dim: int,
    vocab: int,
    bias: bool,
    smoothing: float,
    ignore_index: int,
    block_rows: int,
    seed: int,
) -> None:
    inputs = _inputs(rows, dim, vocab, bias=bias, seed=seed)
    padded = -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    options = {"smoothing": smoothing, "ignore_index": ignore_index}
    expected = _run(False, *inputs, **options)
    _assert_same(_run(True, *inputs, **options, block_bytes=block_rows * padded * 8), expected)


def test_float32_matches_within_rounding() -> None:
    inputs = _inputs(300, 32, 1000, bias=True, dtype=torch.float32)
    expected = _run(False, *inputs, smoothing=0.1)
    _assert_same(
        _run(True, *inputs, smoothing=0.1, block_bytes=100 * 1024 * 4), expected, atol=1e-4, rtol=1e-4
    )


def test_batch_shape_and_dropped_positions() -> None:
    """(B, T, D) states with padded targets: dropped positions cost nothing, get zero gradient."""
    hidden, weight, _, target = _inputs(12, 5, 9, bias=False)
    hidden, target = hidden.reshape(3, 4, 5), target.reshape(3, 4)
    got = _run(True, hidden, weight, None, target, smoothing=0.1)
    grad_h = got[3][0]
    assert got[2] == int((target != PAD_ID).sum()) and grad_h.shape == (3, 4, 5)
    assert torch.all(grad_h[target == PAD_ID] == 0) and torch.all(grad_h[target != PAD_ID].abs().sum(-1) > 0)
    _assert_same(got, _run(False, hidden, weight, None, target, smoothing=0.1))


def test_all_padding_gives_zero_loss() -> None:
    hidden, weight, _, _ = _inputs(4, 3, 5, bias=False)
    loss, nll, tokens, (grad_h, grad_w, _) = _run(True, hidden, weight, None, torch.full((4,), PAD_ID))
    assert tokens == 0 and float(loss) == 0.0 and float(nll) == 0.0
    assert torch.all(grad_h == 0) and torch.all(grad_w == 0)


def test_tied_weight_gets_both_gradients() -> None:
    """A weight shared with an embedding (as in tied models) accumulates both paths' gradients."""
    vocab, dim = 11, 4
    generator = torch.Generator().manual_seed(3)
    weight0 = torch.randn(vocab, dim, generator=generator, dtype=torch.float64)
    ids = torch.randint(1, vocab, (6,), generator=generator)
    target = torch.randint(1, vocab, (6,), generator=generator)
    grads = []
    for fused in (False, True):
        weight = weight0.clone().requires_grad_()
        hidden = torch.tanh(F.embedding(ids, weight) * 2)  # (6, D) from the same weight
        if fused:
            out = projected_cross_entropy(hidden, weight, target, smoothing=0.1)
        else:
            out = label_smoothed_cross_entropy(F.linear(hidden, weight), target, smoothing=0.1)
        out.loss.backward()
        grads.append(weight.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-12, rtol=1e-10)


def test_only_what_requires_grad_gets_a_gradient() -> None:
    hidden, weight, bias, target = _inputs(5, 3, 8, bias=True)
    h = hidden.clone().requires_grad_()
    out = projected_cross_entropy(h, weight, target, bias=bias, smoothing=0.1)  # frozen projection
    out.loss.backward()
    expected = _run(False, hidden, weight, bias, target, smoothing=0.1)[3][0]
    torch.testing.assert_close(3.0 * h.grad, expected)


def test_no_grad_gives_the_same_values_and_no_graph() -> None:
    inputs = _inputs(8, 4, 20, bias=True)
    expected = _run(False, *inputs, smoothing=0.1)
    leaves = [t.clone().requires_grad_() for t in inputs[:3]]
    with torch.no_grad():
        out = projected_cross_entropy(leaves[0], leaves[1], inputs[3], bias=leaves[2], smoothing=0.1)
    assert not out.loss.requires_grad
    torch.testing.assert_close(out.loss, expected[0])
    torch.testing.assert_close(out.nll, expected[1])


def test_a_second_backward_is_refused() -> None:
    hidden, weight, _, target = _inputs(5, 3, 8, bias=False)
    h = hidden.clone().requires_grad_()
    out = projected_cross_entropy(h, weight, target)
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        out.loss.backward()


def test_bf16_autocast_is_close_and_keeps_float32_gradients() -> None:
    hidden, weight, _, target = _inputs(64, 32, 300, bias=False, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _run(False, hidden, weight, None, target, smoothing=0.1)
        got = _run(True, hidden, weight, None, target, smoothing=0.1, block_bytes=16 * 320 * 4)
    assert got[3][0].dtype == torch.float32 and got[3][1].dtype == torch.float32
    torch.testing.assert_close(got[0], expected[0], rtol=2e-3, atol=0)
    for x, y in zip(got[3][:2], expected[3][:2], strict=True):
        assert float((x - y).norm() / y.norm()) < 2e-2


def test_mistakes() -> None:
    hidden, weight, bias, target = _inputs(4, 3, 6, bias=True, dtype=torch.float32)
    with pytest.raises(ValueError, match="do not match"):
        projected_cross_entropy(hidden, weight, target[:3])
    with pytest.raises(ValueError, match="does not take"):
        projected_cross_entropy(hidden, weight[:, :2], target)
    with pytest.raises(ValueError, match="bias"):
        projected_cross_entropy(hidden, weight, target, bias=bias[:5])
    with pytest.raises(TypeError, match="integer"):
        projected_cross_entropy(hidden, weight, target.float())
    with pytest.raises(ValueError, match="block_bytes"):
        projected_cross_entropy(hidden, weight, target, block_bytes=0)
    with pytest.raises(ConfigError, match="smoothing"):
        projected_cross_entropy(hidden, weight, target, smoothing=1.0)


def _task() -> TranslationTask:
    generator = torch.Generator().manual_seed(5)
    pairs = [
        (
            torch.randint(4, 30, (n,), generator=generator).tolist(),
            torch.randint(4, 30, (m,), generator=generator).tolist(),
        )
        for n, m in [(3, 4), (5, 2), (4, 6), (2, 3)]
    ]
    sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return TranslationTask(
        train_src=sources,
        train_tgt=targets,
        valid_src=sources,
        valid_tgt=targets,
        valid_references=["" for _ in sources],
        target_tokenizer=None,  # type: ignore[arg-type]  # the loss does not detokenize
        max_tokens=64,
        max_len=20,
        seed=0,
        label_smoothing=0.1,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransformerSeq2Seq(
            30, 30, d_model=8, num_heads=2, ffn_dim=16, encoder_layers=1, decoder_layers=1, dropout=0.0
        ),
        lambda: RNNSeq2Seq(
            30, 30, embed_dim=8, hidden_size=8, decoder_size=16, style="luong", score="general", dropout=0.0
        ),
    ],
    ids=["transformer", "rnn"],
)
def test_translation_task_trains_through_the_fused_loss(make, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's loss and gradients equal projecting every real position and scoring the logits."""
    monkeypatch.setattr(translation_module, "FUSED_LOSS_MIN_VOCAB", 30)  # this model's vocabulary
    calls = []
    monkeypatch.setattr(
        translation_module,
        "projected_cross_entropy",
        lambda *args, **kw: calls.append(1) or projected_cross_entropy(*args, **kw),
    )
    task = _task()
    torch.manual_seed(0)
    model = make().double()
    batch = [0, 1, 2, 3]
    out = task.loss(model, batch)
    out.loss.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    pairs = collate_pairs([task.train_src[i] for i in batch], [task.train_tgt[i] for i in batch])
    real = pairs.tgt_out.ne(PAD_ID)
    logits, _ = model(pairs.src, pairs.src_lengths, pairs.tgt_in, need_attention=False, positions=real)
    expected = label_smoothed_cross_entropy(logits, pairs.tgt_out[real], smoothing=0.1)
    expected.loss.backward()
    torch.testing.assert_close(out.loss, expected.loss.detach())
    assert out.tokens == expected.tokens and calls == [1]
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused[name], p.grad, msg=name)


def test_small_vocabularies_keep_the_separate_projection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below FUSED_LOSS_MIN_VOCAB classes the task projects, then scores the logits."""
    monkeypatch.setattr(translation_module, "FUSED_LOSS_MIN_VOCAB", 31)
    monkeypatch.setattr(translation_module, "projected_cross_entropy", None)  # fails if called
    torch.manual_seed(0)
    model = TransformerSeq2Seq(30, 30, d_model=8, num_heads=2, ffn_dim=16, encoder_layers=1, decoder_layers=1)
    out = _task().loss(model, [0, 1, 2, 3])
    out.loss.backward()
    assert out.tokens == 4 + 2 + 6 + 3 + 4 and model.output.weight.grad is not None
