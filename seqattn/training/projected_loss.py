"""The output projection and the label-smoothed cross-entropy as one operation, a block of
target positions at a time, over a vocabulary padded to a multiple of 64.

A translation model's last layer maps each target position's ``D``-dimensional state to ``V``
logits, and the loss reads them once. Computed separately, the ``(N, V)`` logits are the largest
tensor of a training step (131 MB for 4,096 target tokens and 8,001 pieces) and live from the
projection to the backward pass. :func:`projected_cross_entropy` never holds more than a block of
rows of them: for each block it multiplies, normalises (in place), adds the block's loss, turns
the probabilities into the gradient ``p - q`` (in place; see :mod:`seqattn.training.loss`) and
multiplies that back into the gradients of the states, the weight and the bias. The backward
pass then only scales those by the incoming gradient. Blocks are sized to stay under
``block_bytes`` (24 MB: below glibc's 32 MB mmap ceiling, so on a CPU they come from the heap
that :func:`seqattn.allocator.keep_freed_memory` keeps, without page faults).

**Padding the vocabulary.** Matrix multiplies whose output rows are 8,001 floats wide ran slower
than at 8,064 on the 2-core CPUs of the benchmarks (EPYC, 4,095 x 256 x V, fresh output each
time: 172 -> 136 ms forward; gradients 110 -> 92 ms and 114 -> 89 ms). The weight is copied into
a ``(V', D)`` buffer with zero rows up to ``V' = 64 ceil(V / 64)``; the extra columns get ``-inf``
logits, so they have no probability, no loss and no gradient, and the model keeps its ``V``
classes. Projection and loss, forward and backward, 4,000 x 256 -> 8,001 (EPYC, medians of 8):
about 400 ms separately (with the in-place loss), 300 ms as one operation, 340 ms as one
operation without the padding.

Where the gain comes from the padding and the page faults, it shrinks or turns with the shapes
(the same measurement, medians of 30, one run): 500 x 8,001 41 ms against 49 separately, 4,000 x
4,000 148-154 against 168-170, 1,500 x 4,000 even; but 4,000 x 2,000 85 against 80-81, 1,500 x
300 5.0 against 4.6, and 1,000 x 16,000 (already a multiple of 64; 393-row blocks) 183-193
against 179. The translation task uses it from 4,096 target pieces up
(:data:`seqattn.training.translation.FUSED_LOSS_MIN_VOCAB`; with 600 pieces the dates recipe's
Bahdanau model trained about 4% slower through it), where it also never holds the ``(N, V)``
logits (537 MB for 4,096 positions over 32k pieces).

The result is the same loss as ``label_smoothed_cross_entropy(F.linear(hidden, weight, bias),
target, ...)`` up to the order of floating-point sums (tests/training/test_projected_loss.py).
Under autocast the products run in the autocast dtype and the normalisation in float32, like
autocast's ``linear`` followed by that loss. Differentiable once: the gradients are computed in
the forward pass whenever an input requires them, so do not call this where they are not wanted
(in ``torch.no_grad()`` or on detached inputs nothing extra is done).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqattn.data.tokenizer import PAD_ID
from seqattn.training.loss import LossOutput, smoothed_gradient_, smoothed_terms, smoothing_classes

__all__ = ["VOCAB_MULTIPLE", "projected_cross_entropy"]

VOCAB_MULTIPLE = 64
"""The padded vocabulary is a multiple of this (16 was as fast on the benchmark CPU, 1 slower)."""
BLOCK_BYTES = 24 << 20


def projected_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    smoothing: float = 0.0,
    ignore_index: int = PAD_ID,
    block_bytes: int = BLOCK_BYTES,
) -> LossOutput:
    """Summed label-smoothed cross-entropy of ``target`` under ``hidden @ weight.T + bias``.

    Args:
        hidden: ``(..., D)`` states that the output projection takes.
        weight: ``(V, D)`` projection weight (an ``nn.Linear``'s, possibly tied to an embedding).
        target: ``(...)`` integer ids in ``[0, V)`` or ``ignore_index``.
        bias: ``(V,)`` or ``None``.
        smoothing: ``ε`` in ``[0, 1)``, as in :func:`~seqattn.training.loss.label_smoothed_cross_entropy`
            (the pad class gets no mass when ``ignore_index`` is a class id).
        ignore_index: target id whose positions are skipped.
        block_bytes: the largest block of logits computed at once (at least one row).
    Returns:
        A :class:`~seqattn.training.loss.LossOutput` (float32, or float64 for float64 states).
    Raises:
        ConfigError: bad ``smoothing`` (see :func:`~seqattn.training.loss.smoothing_classes`).
    """
    if hidden.shape[:-1] != target.shape:
        raise ValueError(f"states {tuple(hidden.shape)} do not match target {tuple(target.shape)}")
    if weight.dim() != 2 or weight.size(1) != hidden.size(-1):
        raise ValueError(f"weight {tuple(weight.shape)} does not take states of size {hidden.size(-1)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer ids, got {target.dtype}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    spread, pad = smoothing_classes(weight.size(0), smoothing=smoothing, ignore_index=ignore_index)
    keep = target != ignore_index  # (...)
    tokens = int(keep.sum())
    hidden = hidden.reshape(-1, hidden.size(-1))  # (N, D)
    target = target.reshape(-1)  # (N,)
    if tokens != keep.numel():
        keep = keep.reshape(-1)
        hidden, target = hidden[keep], target[keep]  # dropped rows get zero gradient
    loss, nll = _ProjectedCrossEntropy.apply(
        hidden, weight, bias, target, smoothing, spread, pad, block_bytes, torch.is_grad_enabled()
    )
    return LossOutput(loss=loss, nll=nll, tokens=tokens)


class _ProjectedCrossEntropy(torch.autograd.Function):
    """``(N, D)`` states, ``(V, D)`` weight, ``(V,)`` bias or ``None``, ``(N,)`` targets ->
    summed loss, summed nll (not differentiable). Gradients are made in the forward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        smoothing: float,
        spread: int,
        pad: int | None,
        block_bytes: int,
        grad_enabled: bool,
    ) -> tuple[Tensor, Tensor]:
        device = hidden.device.type
        # needs_input_grad says which inputs require grad, even under torch.no_grad()
        wanted = [grad_enabled and needed for needed in ctx.needs_input_grad[:3]]
        lowered = torch.is_autocast_enabled(device)
        product = torch.get_autocast_dtype(device) if lowered else hidden.dtype  # the matmuls' dtype
        dtype = torch.promote_types(hidden.dtype, torch.float32)  # normalisation and loss
        with torch.autocast(device, enabled=False):
            vocab, dim = weight.shape
            padded = -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
            w = weight.new_zeros(padded, dim, dtype=product)  # (V', D), zero rows past V
            w[:vocab] = weight
            b = weight.new_full((padded,), float("-inf"), dtype=product)  # (V',) -inf past V
            b[:vocab] = 0.0 if bias is None else bias
            h = hidden.to(product)
            n = h.size(0)
            rows = max(1, min(n, block_bytes // (padded * torch.finfo(dtype).bits // 8)))
            block = torch.empty(rows, padded, dtype=dtype, device=hidden.device)  # (R, V')
            loss = torch.zeros((), dtype=dtype, device=hidden.device)
            nll = torch.zeros((), dtype=dtype, device=hidden.device)
            grad_h = torch.empty_like(hidden) if wanted[0] else None  # (N, D)
            grad_w = torch.zeros(padded, dim, dtype=dtype, device=hidden.device) if wanted[1] else None
            grad_b = torch.zeros(padded, dtype=dtype, device=hidden.device) if wanted[2] else None
            for start in range(0, n, rows):
                end = min(n, start + rows)
                logits = block[: end - start]  # (r, V')
                if product == dtype:
                    torch.addmm(b, h[start:end], w.t(), out=logits)
                else:
                    logits.copy_(torch.addmm(b, h[start:end], w.t()))
                torch.log_softmax(logits, dim=-1, out=logits)  # -inf past V: no mass there
                terms = smoothed_terms(
                    logits[:, :vocab], target[start:end], smoothing=smoothing, spread=spread, pad=pad
                )
                loss += terms[0]
                nll += terms[1]
                if not any(wanted):
                    continue
                probs = logits.exp_()  # (r, V'), zero past V
                smoothed_gradient_(
                    probs[:, :vocab], target[start:end], smoothing=smoothing, spread=spread, pad=pad
                )
                grad = probs.to(product)  # (r, V') d loss / d logits
                if grad_h is not None:
                    if grad_h.dtype == product:
                        torch.mm(grad, w, out=grad_h[start:end])
                    else:
                        grad_h[start:end] = grad @ w
                if grad_w is not None:
                    if product == dtype:
                        grad_w.addmm_(grad.t(), h[start:end])
                    else:
                        grad_w += grad.t() @ h[start:end]
                if grad_b is not None:
                    grad_b += probs.sum(dim=0)
        ctx.grads = (
            grad_h,
            None if grad_w is None else grad_w[:vocab].to(weight.dtype),
            None if grad_b is None or bias is None else grad_b[:vocab].to(bias.dtype),
        )
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor | None, _grad_nll: Tensor | None) -> tuple[Tensor | None, ...]:
        grads, ctx.grads = ctx.grads, None  # used once: the buffers become the gradients
        if grads is None:
            raise RuntimeError("projected_cross_entropy backpropagates once: its gradients were already used")
        if grad_loss is None:
            return (None,) * 9
        return (*(None if g is None else g.mul_(grad_loss) for g in grads), *(None,) * 6)
